"""Labels that came before their event, per partition: bounded by count, size and a TTL.

Why they are kept instead of refused: a label may be refused as ``unknown_event_id`` only when
its event provably is not coming.  The proof is event time: labels are produced after their
events, so the event of a label stamped ``T`` is stamped ``<= T``; once the input partition has
delivered an event stamped *later* than ``T`` (input partitions are read in offset order and
their timestamps do not go backwards), every event stamped ``<= T`` has been read, and a label
whose event is not waiting is a label for an event never sent, already labelled, expired or
evicted.  Until then the label is *early*: its event may still be in the input partition
beyond what was fetched (kafka-python fetches the input and labels partitions independently,
and on a live stream the label may even have been written first).  The aligner
(:mod:`.align`) holds labels back until the input partition is read past them, so a label
only gets here when it waited ``serve.align_idle_ms`` for an input partition that looked
caught up and still had not delivered its event.

An early label is joined when its event arrives (learned right after the run of events that
brought it), refused as ``unknown_event_id`` when the proof above holds, or dropped as
``early_label_evicted`` (a dead letter naming the bound) when the set is over
``limits.early_labels_max_count`` / ``limits.early_labels_max_bytes`` (the oldest leaves first)
or the partition's stream time passes its timestamp plus ``limits.pending_ttl_s``.

Exactly-once across checkpoints: the labels offset moves past an early label when it is
consumed, so the set itself is checkpointed - one JSON blob in the partition's state hash,
written in the same atomic commit as the offsets (only when it changed).  A new owner restores
it and continues as the old one would have.
"""
from __future__ import annotations

import base64
import json
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Iterator, Optional

__all__ = ["EarlyLabel", "EarlyLabels"]

_FORMAT = 1
#: Fixed part of an early label's size estimate: offsets, timestamp, JSON envelope.
_OVERHEAD = 48


@dataclass(frozen=True)
class EarlyLabel:
    """A decoded label whose event has not been read yet, with what is needed to learn it or
    to dead-letter it with its original bytes."""

    id: str
    y: Any
    offset: int
    ts_ms: int
    value: bytes
    key: Optional[bytes]

    @property
    def size(self) -> int:
        return _OVERHEAD + len(self.value) + len(self.key or b"")

    def to_json(self) -> list:
        return [self.id, self.y, self.offset, self.ts_ms, base64.b64encode(self.value).decode(),
                None if self.key is None else base64.b64encode(self.key).decode()]

    @classmethod
    def from_json(cls, d: list) -> "EarlyLabel":
        eid, y, offset, ts_ms, value, key = d
        return cls(str(eid), y, int(offset), int(ts_ms), base64.b64decode(value),
                   None if key is None else base64.b64decode(key))


class EarlyLabels:
    """The early labels of one partition, oldest (lowest labels offset) first."""

    def __init__(self, max_count: int, max_bytes: int, ttl_s: float):
        if max_count < 1 or max_bytes < 1 or not ttl_s > 0:
            raise ValueError(f"early-label bounds must be positive, got max_count={max_count}, "
                             f"max_bytes={max_bytes}, ttl_s={ttl_s}")
        self.max_count = int(max_count)
        self.max_bytes = int(max_bytes)
        self.ttl_ms = ttl_s * 1000.0
        self.nbytes = 0
        self.dirty = False
        self._items: "OrderedDict[str, EarlyLabel]" = OrderedDict()

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, event_id: str) -> bool:
        return event_id in self._items

    def __iter__(self) -> Iterator[EarlyLabel]:
        return iter(list(self._items.values()))

    def add(self, label: EarlyLabel) -> list[tuple[EarlyLabel, str]]:
        """Keep ``label``; returns ``(label, why)`` for each label that had to leave (a label
        with the same id, then the oldest while a bound is exceeded)."""
        out = []
        old = self._items.get(label.id)
        if old is not None:
            self._remove(old.id)
            out.append((old, f"replaced by a later label for the same id at offset {label.offset}"))
        self._items[label.id] = label
        self.nbytes += label.size
        self.dirty = True
        while len(self._items) > self.max_count:
            out.append((self._pop_oldest(), f"{self.max_count} labels were already waiting for their event "
                                            f"(limits.early_labels_max_count); the oldest left"))
        while self.nbytes > self.max_bytes and self._items:
            out.append((self._pop_oldest(), f"the labels waiting for their event reached "
                                            f"limits.early_labels_max_bytes ({self.max_bytes} bytes); the "
                                            f"oldest left"))
        return out

    def pop(self, event_id: str) -> Optional[EarlyLabel]:
        label = self._items.get(event_id)
        if label is not None:
            self._remove(event_id)
        return label

    def proven_missing(self, event_time_ms: Optional[int]) -> list[EarlyLabel]:
        """Remove and return the labels stamped strictly before ``event_time_ms`` (the newest
        event read on the input partition): their events are not coming."""
        if event_time_ms is None or not self._items:
            return []
        gone = [lab for lab in self._items.values() if lab.ts_ms < event_time_ms]
        for lab in gone:
            self._remove(lab.id)
        return gone

    def expired(self, stream_time_s: float) -> list[EarlyLabel]:
        """Remove and return the labels whose timestamp plus the TTL is before ``stream_time_s``."""
        if not self._items:
            return []
        limit = stream_time_s * 1000.0 - self.ttl_ms
        gone = [lab for lab in self._items.values() if lab.ts_ms < limit]
        for lab in gone:
            self._remove(lab.id)
        return gone

    def to_blob(self) -> bytes:
        body = {"v": _FORMAT, "labels": [lab.to_json() for lab in self._items.values()]}
        return json.dumps(body, separators=(",", ":"), allow_nan=False).encode()

    @classmethod
    def from_blob(cls, blob: Optional[bytes], max_count: int, max_bytes: int, ttl_s: float) -> "EarlyLabels":
        out = cls(max_count, max_bytes, ttl_s)
        if blob:
            try:
                d = json.loads(blob)
                if d.get("v") != _FORMAT:
                    raise ValueError(f"unknown early-labels format {d.get('v')!r}")
                for item in d["labels"]:
                    lab = EarlyLabel.from_json(item)
                    out._items[lab.id] = lab
                    out.nbytes += lab.size
            except (ValueError, KeyError, TypeError) as exc:
                raise ValueError(f"stored early labels are not valid: {exc}") from exc
        return out

    def _remove(self, event_id: str) -> None:
        lab = self._items.pop(event_id)
        self.nbytes -= lab.size
        self.dirty = True

    def _pop_oldest(self) -> EarlyLabel:
        eid = next(iter(self._items))
        lab = self._items[eid]
        self._remove(eid)
        return lab
