"""Event-time alignment of one input partition with its labels partition.

Why: Kafka fetches the input partition and the labels partition independently (kafka-python
even fetches the partitions of one topic independently), so a poll may hand the daemon a label
before the event it refers to, or a long run of events while their labels already sit in the
other partition.  Processing them in arrival order would make the result depend on fetch
timing: a label could be refused because its event had not been read yet, and two runs over
the same records could learn in a different order.  The aligner releases records in the order
of their Kafka timestamps (ties: events first), the way Kafka Streams merges co-partitioned
inputs, so the order the model sees is a pure function of the records.

**The rule for labels** (the contract: a label is produced after its event, so its timestamp
is not before its event's; the timestamps of an input partition do not go backwards - true for
one producer per partition with CreateTime, and for LogAppendTime):

* A label stamped ``T`` is released only once the input partition has been read *past* ``T``:
  an event stamped later than ``T`` is queued (the merge releases the events up to ``T`` first)
  or was already released (the *event watermark*, kept across checkpoints).  Then its event,
  stamped ``<= T``, has been read: if it is not waiting for a label it never will be, and the
  label may be refused as ``unknown_event_id`` (see :mod:`.early`).
* Otherwise the label waits, however long the input partition takes to be fetched, while that
  partition is behind (its position is before the high watermark of its last fetch response,
  or it has not answered a fetch yet).  A backlog therefore never releases a label early,
  whatever the fetch order.
* Only when the input partition looks caught up and the label has waited ``idle_s`` of *poll
  time* (time the daemon spent waiting in ``poll``, not time spent processing other
  partitions) is it released without proof - at the end of a stream, the last labels are
  stamped with (or after) the last event, and no later event will come to prove anything.  The
  owner then joins it if its event is waiting, and otherwise keeps it as an *early label*
  (bounded, checkpointed) until its event comes or the proof holds: it is never refused for
  fetch timing.  A fetch response's high watermark can be older than the label (the two
  partitions are fetched in separate requests), which is why it only gates the wait and
  proves nothing; nothing relies on broker end offsets (ListOffsets), which the test broker
  (Tansu) answers wrongly.

Events are not held back that way, because a prediction must not wait for labels that may come
much later: with no queued label, events wait for the labels partition only while it is behind,
at most ``idle_s`` of poll time.  On a live stream the interleaving of a label and the events
around it can therefore depend on fetch timing (learning order, not which labels are learned);
on a backlog it cannot.  The cost of the rule: the labels of a stream's last events are learned
``idle_s`` (of poll time) after the input partition was read to its end, and on a live stream a
label stamped like the newest event waits for the next event (or ``idle_s``).
"""
from __future__ import annotations

from collections import deque
from typing import Any, Callable, Optional

__all__ = ["Aligner", "EVENTS", "LABELS"]

EVENTS = "events"
LABELS = "labels"


class Aligner:
    """Queues of polled-but-unprocessed records of one input partition (and its labels
    partition, when ``with_labels``), released in event-time order by :meth:`next_run`.

    ``event_watermark`` (ms) is the timestamp of the newest event released so far; pass the
    one stored with the partition's checkpoint so a restarted daemon decides as the old one
    would have."""

    def __init__(self, with_labels: bool, idle_s: float, event_watermark: Optional[int] = None):
        self.with_labels = with_labels
        self.idle_s = float(idle_s)
        self.events: deque = deque()
        self.labels: deque = deque()
        self._waiting_since: Optional[float] = None
        #: timestamp of the newest event released so far (``None`` before the first)
        self.event_watermark: Optional[int] = event_watermark
        #: labels waited ``idle_s`` for events and none came: stop waiting until events arrive
        self._labels_gave_up = False

    def push(self, side: str, records: list) -> None:
        if side == EVENTS:
            self.events.extend(records)
            self._labels_gave_up = self._labels_gave_up and not records
        else:
            self.labels.extend(records)

    def queued(self, side: str) -> int:
        return len(self.events if side == EVENTS else self.labels)

    def truncate(self, side: str, limit: int) -> Optional[int]:
        """Keep at most ``limit`` queued records of ``side``; returns the offset of the first
        record dropped (the consumer seeks back there to fetch it again later) or ``None``."""
        queue = self.events if side == EVENTS else self.labels
        first = None
        while len(queue) > limit:
            first = queue.pop().offset
        return first

    def clear(self) -> None:
        self.events.clear()
        self.labels.clear()
        self._waiting_since = None
        self._labels_gave_up = False

    def next_run(self, labels_caught_up: Callable[[], bool], input_caught_up: Callable[[], bool], now: float,
                 max_batch: int) -> Optional[tuple[str, list[Any]]]:
        """The next run of records to process - ``(EVENTS, records)`` or ``(LABELS, records)``
        - or ``None`` when nothing may be processed yet.  ``now`` is the daemon's poll clock
        (seconds spent waiting in ``poll``); ``labels_caught_up`` / ``input_caught_up`` say
        whether a side has read everything its last fetch response reported (asked only
        when that side's queue is empty and the other side waits)."""
        ev, lab = self.events, self.labels
        if not self.with_labels:
            return self._events_run(_take(ev, max_batch, None, True)) if ev else None
        if ev and lab:
            self._waiting_since = None
            if ev[0].timestamp <= lab[0].timestamp:
                return self._events_run(_take(ev, max_batch, lab[0].timestamp, True))
            return LABELS, _take(lab, max_batch, ev[0].timestamp, False)
        if not ev and not lab:
            self._waiting_since = None
            return None
        if lab:
            wm = self.event_watermark
            if wm is not None and lab[0].timestamp < wm:  # the input partition was read past it
                self._waiting_since = None
                return LABELS, _take(lab, max_batch, wm, False)
            if self._labels_gave_up:
                return LABELS, _take(lab, max_batch, None, True)
            if not input_caught_up():  # its event may be in what is not fetched yet: wait
                self._waiting_since = None
                return None
            if not self._idle(now):
                return None
            self._labels_gave_up = True
            return LABELS, _take(lab, max_batch, None, True)
        if labels_caught_up() or self._idle(now):
            self._waiting_since = None
            return self._events_run(_take(ev, max_batch, None, True))
        return None

    def _idle(self, now: float) -> bool:
        """Start (or continue) a wait; True once it lasted ``idle_s`` (the wait then ends)."""
        if self._waiting_since is None:
            self._waiting_since = now
        if now - self._waiting_since < self.idle_s:
            return False
        self._waiting_since = None
        return True

    def _events_run(self, records: list) -> tuple[str, list]:
        ts = max(r.timestamp for r in records)
        if self.event_watermark is None or ts > self.event_watermark:
            self.event_watermark = ts
        return EVENTS, records


def _take(queue: deque, max_batch: int, bound: Optional[int], inclusive: bool) -> list:
    """Pop up to ``max_batch`` records with timestamp ``<= bound`` (``< bound`` when not
    ``inclusive``; no bound when ``None``).  Always takes at least the head."""
    out = [queue.popleft()]
    if bound is None:
        n = min(max_batch, len(queue) + 1) - 1
        out.extend(queue.popleft() for _ in range(n))
        return out
    while queue and len(out) < max_batch:
        ts = queue[0].timestamp
        if ts > bound or (ts == bound and not inclusive):
            break
        out.append(queue.popleft())
    return out
