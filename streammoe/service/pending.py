"""Events waiting for a delayed label, per partition: bounded by count, by size and by a TTL.

Why in memory with a change log: the daemon looks a pending event up for every label, so
the set lives in memory; Redis gets the *changes* since the last checkpoint inside the same
atomic commit as the model parts and offsets (``RedisStore.commit(pending_put=...,
pending_del=...)``).  After a crash the new owner loads the pending set of the last
checkpoint and replays from that checkpoint's offsets, which re-creates exactly the
changes that were lost - so every labelled event is learned once.

Time is *event time* (the Kafka record timestamps the partition has reached), not the wall
clock: a deadline is ``record time + ttl`` and an event expires when the partition's
stream time passes its deadline.  That keeps expiry, and therefore which labels still find
their event, a pure function of the records - a restarted daemon makes the same decisions
as one that never stopped.  The count bound (``limits.pending_max_count``) and the size
bound (``limits.pending_max_bytes``) evict the earliest deadline first (ties: the earliest
added), the same order on every run; an evicted event goes to the dead-letter topic with
reason ``pending_evicted`` and a message naming the bound.

Why a size bound as well: the count alone does not bound memory - an event may carry up to
``limits.max_features`` features, so 100 000 waiting events could hold gigabytes.  The size
of an event is :func:`pending_size`, a deterministic estimate of its stored form (feature
names, 24 bytes per value, id and key): a pure function of the event, so a restarted daemon
counts exactly what an uninterrupted one counted.  Python holds a few times that in memory.
"""
from __future__ import annotations

import heapq
import json
from dataclasses import dataclass
from typing import Any, Iterator, Mapping, Optional

from .schema import Label

__all__ = ["PendingEvent", "PendingLabels", "pending_size"]

_FORMAT = 1
#: Fixed part of :func:`pending_size`: the JSON envelope and the deadline/sequence numbers.
_EVENT_OVERHEAD = 64
#: Per feature: a float's JSON text, quotes, colon and comma.
_VALUE_BYTES = 24


def pending_size(event_id: str, x: Mapping[str, float | str], key: Optional[str]) -> int:
    """Estimated stored size of a pending event in bytes (see the module docstring); a
    categorical value counts its characters on top of the fixed value size."""
    text = sum(len(v) for v in x.values() if type(v) is str)
    return _EVENT_OVERHEAD + len(event_id) + len(key or "") + sum(map(len, x)) + _VALUE_BYTES * len(x) + text


@dataclass(frozen=True)
class PendingEvent:
    """One predicted event awaiting its label: what is needed to learn it and to score the
    prediction made at event time."""

    id: str
    x: dict[str, float]
    key: Optional[str]
    ts: Optional[float]
    y_pred: Optional[Label]
    offset: int
    seq: int
    deadline: float

    def to_blob(self) -> bytes:
        """JSON bytes stored in Redis (the deadline travels separately, as the zset score)."""
        body = {"v": _FORMAT, "id": self.id, "x": self.x, "key": self.key, "ts": self.ts,
                "p": self.y_pred, "o": self.offset, "s": self.seq}
        return json.dumps(body, separators=(",", ":"), allow_nan=False).encode()

    @classmethod
    def from_blob(cls, blob: bytes, deadline: float) -> "PendingEvent":
        try:
            d = json.loads(blob)
            if d.get("v") != _FORMAT:
                raise ValueError(f"unknown pending-event format {d.get('v')!r}")
            return cls(id=d["id"], x={k: float(v) for k, v in d["x"].items()}, key=d["key"], ts=d["ts"],
                       y_pred=d["p"], offset=int(d["o"]), seq=int(d["s"]), deadline=float(deadline))
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"stored pending event is not valid: {exc}") from exc

    def event_bytes(self) -> bytes:
        """The event as an input-topic message (without label), for the dead-letter topic:
        replaying it re-creates the event."""
        body: dict[str, Any] = {"id": self.id, "x": self.x}
        if self.ts is not None:
            body["ts"] = self.ts
        if self.key is not None:
            body["key"] = self.key
        return json.dumps(body, separators=(",", ":"), allow_nan=False).encode()


class PendingLabels:
    """The pending set of one partition plus the changes not yet checkpointed.

    ``add`` / ``pop`` / ``expire`` return what left the set so the caller can dead-letter it;
    ``changes()`` gives the ``pending_put`` / ``pending_del`` arguments of the next commit and
    ``committed()`` forgets them once the commit succeeded.
    """

    def __init__(self, max_count: int, ttl_s: float, next_seq: int = 0, max_bytes: Optional[int] = None):
        if max_count < 1 or not ttl_s > 0 or (max_bytes is not None and max_bytes < 1):
            raise ValueError(f"pending bounds must be positive, got max_count={max_count}, ttl_s={ttl_s}, "
                             f"max_bytes={max_bytes}")
        self.max_count = int(max_count)
        self.max_bytes = int(max_bytes) if max_bytes is not None else None
        self.ttl_s = float(ttl_s)
        self.next_seq = int(next_seq)
        self.nbytes = 0  # sum of pending_size over the set
        self._items: dict[str, PendingEvent] = {}
        self._sizes: dict[str, int] = {}
        self._heap: list[tuple[float, int, str]] = []
        self._put: dict[str, PendingEvent] = {}
        self._del: set[str] = set()

    # --- queries ---------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, event_id: str) -> bool:
        return event_id in self._items

    def __iter__(self) -> Iterator[PendingEvent]:
        return iter(list(self._items.values()))

    def get(self, event_id: str) -> Optional[PendingEvent]:
        return self._items.get(event_id)

    # --- changes -----------------------------------------------------------------------------
    def add(self, event_id: str, x: dict[str, float], *, key: Optional[str], ts: Optional[float],
            y_pred: Optional[Label], offset: int, event_time: float) -> list[tuple[PendingEvent, str]]:
        """Keep an event until ``event_time + ttl``.  Returns ``(event, why)`` for each event
        that left the set to make room or because it had the same id (``why`` is a message)."""
        out: list[tuple[PendingEvent, str]] = []
        old = self._items.get(event_id)
        if old is not None:
            self._remove(event_id)
            out.append((old, f"replaced by a later event with the same id at offset {offset}"))
        pe = PendingEvent(event_id, x, key, ts, y_pred, int(offset), self.next_seq, event_time + self.ttl_s)
        self.next_seq += 1
        size = pending_size(event_id, x, key)
        if self.max_bytes is not None and size > self.max_bytes:
            # Alone over the size bound: it never waits (evicting others would not make room).
            out.append((pe, f"the event alone is {size} bytes, over limits.pending_max_bytes "
                            f"({self.max_bytes}); it cannot wait for a label"))
            return out
        self._items[event_id] = pe
        self._sizes[event_id] = size
        self.nbytes += size
        heapq.heappush(self._heap, (pe.deadline, pe.seq, event_id))
        self._del.discard(event_id)
        self._put[event_id] = pe
        while len(self._items) > self.max_count:
            victim = self._pop_earliest()
            out.append((victim, f"{self.max_count} events were already waiting for a label "
                                f"(limits.pending_max_count); the one with the earliest deadline left"))
        while self.max_bytes is not None and self.nbytes > self.max_bytes:
            victim = self._pop_earliest()
            out.append((victim, f"the events waiting for a label reached limits.pending_max_bytes "
                                f"({self.max_bytes} bytes); the one with the earliest deadline left"))
        return out

    def set_prediction(self, event_id: str, seq: int, y_pred: Optional[Label]) -> None:
        """Record the prediction of a waiting event (added before the model answered; see
        ``PartitionOwner.flush``).  Nothing happens if that event no longer waits."""
        pe = self._items.get(event_id)
        if pe is None or pe.seq != seq:
            return
        pe = PendingEvent(pe.id, pe.x, pe.key, pe.ts, y_pred, pe.offset, pe.seq, pe.deadline)
        self._items[event_id] = pe
        if event_id in self._put:
            self._put[event_id] = pe

    def pop(self, event_id: str) -> Optional[PendingEvent]:
        """Take the event a label refers to (``None`` if it is not pending)."""
        pe = self._items.get(event_id)
        if pe is not None:
            self._remove(event_id)
        return pe

    def due(self, stream_time: float) -> bool:
        """Whether :meth:`expire` may have something to return at ``stream_time`` (a cheap peek;
        a stale heap entry can make it say ``True`` for nothing)."""
        return bool(self._heap) and self._heap[0][0] <= stream_time

    def expire(self, stream_time: float) -> list[PendingEvent]:
        """Remove and return the events whose deadline is ``<= stream_time``, earliest first."""
        out = []
        while self._heap:
            deadline, seq, eid = self._heap[0]
            pe = self._items.get(eid)
            if pe is None or pe.seq != seq:  # stale heap entry (joined, evicted or replaced)
                heapq.heappop(self._heap)
                continue
            if deadline > stream_time:
                break
            heapq.heappop(self._heap)
            self._remove(eid)
            out.append(pe)
        return out

    def changes(self) -> tuple[dict[str, tuple[bytes, float]], list[str]]:
        """``(pending_put, pending_del)`` for the next :meth:`RedisStore.commit`."""
        put = {eid: (pe.to_blob(), pe.deadline) for eid, pe in self._put.items()}
        return put, sorted(self._del)

    def committed(self) -> None:
        """The changes returned by :meth:`changes` are in Redis now."""
        self._put.clear()
        self._del.clear()

    def has_changes(self) -> bool:
        return bool(self._put or self._del)

    @classmethod
    def restore(cls, stored: Mapping[str, tuple[bytes, float]], max_count: int, ttl_s: float,
                next_seq: int, max_bytes: Optional[int] = None) -> "PendingLabels":
        """Rebuild from ``RedisStore.pending_load`` (the state of the last checkpoint).  A set
        over lowered bounds shrinks at the next :meth:`add`."""
        pl = cls(max_count, ttl_s, next_seq, max_bytes)
        for eid, (blob, deadline) in stored.items():
            pe = PendingEvent.from_blob(blob, deadline)
            if pe.id != eid:
                raise ValueError(f"stored pending event {eid!r} holds the data of {pe.id!r}")
            pl._items[eid] = pe
            pl._sizes[eid] = pending_size(pe.id, pe.x, pe.key)
            pl.nbytes += pl._sizes[eid]
            pl.next_seq = max(pl.next_seq, pe.seq + 1)
        pl._heap = [(pe.deadline, pe.seq, pe.id) for pe in pl._items.values()]
        heapq.heapify(pl._heap)
        return pl

    # --- internals ---------------------------------------------------------------------------
    def _remove(self, event_id: str) -> None:
        del self._items[event_id]
        self.nbytes -= self._sizes.pop(event_id)
        self._put.pop(event_id, None)
        self._del.add(event_id)  # harmless no-op in Redis if it never got there

    def _pop_earliest(self) -> PendingEvent:
        while True:
            deadline, seq, eid = heapq.heappop(self._heap)
            pe = self._items.get(eid)
            if pe is not None and pe.seq == seq:
                self._remove(eid)
                return pe
