"""Event-time alignment of one input partition with its labels partition.

Why: Kafka fetches the input partition and the labels partition independently, so a poll
may hand the daemon a label before the event it refers to, or a long run of events while
their labels already sit in the other partition.  Processing them in arrival order would
make the result depend on fetch timing: a label could be dead-lettered as unknown because
its event had not been read yet, and two runs over the same records could learn in a
different order.  The aligner releases records in the order of their Kafka timestamps
(ties: events first), the way Kafka Streams merges co-partitioned inputs, so the order the
model sees is a pure function of the records.

A side with no queued records is only skipped when it is *caught up* (everything the broker
had was read); otherwise the other side waits, at most ``idle_s`` seconds, after which it
is processed anyway (live streams must not stall when the labels producer is down).
"""
from __future__ import annotations

from collections import deque
from typing import Any, Callable, Optional

__all__ = ["Aligner", "EVENTS", "LABELS"]

EVENTS = "events"
LABELS = "labels"


class Aligner:
    """Queues of polled-but-unprocessed records of one input partition (and its labels
    partition, when ``with_labels``), released in event-time order by :meth:`next_run`."""

    def __init__(self, with_labels: bool, idle_s: float):
        self.with_labels = with_labels
        self.idle_s = float(idle_s)
        self.events: deque = deque()
        self.labels: deque = deque()
        self._waiting_since: Optional[float] = None

    def push(self, side: str, records: list) -> None:
        (self.events if side == EVENTS else self.labels).extend(records)

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

    def next_run(self, events_caught_up: Callable[[], bool], labels_caught_up: Callable[[], bool],
                 now: float, max_batch: int) -> Optional[tuple[str, list[Any]]]:
        """The next run of records to process - ``(EVENTS, records)`` or ``(LABELS, records)``
        - or ``None`` when nothing may be processed yet.  ``*_caught_up`` are asked only
        when that side's queue is empty."""
        ev, lab = self.events, self.labels
        if not self.with_labels:
            return (EVENTS, _take(ev, max_batch, None, True)) if ev else None
        if ev and lab:
            self._waiting_since = None
            if ev[0].timestamp <= lab[0].timestamp:
                return EVENTS, _take(ev, max_batch, lab[0].timestamp, True)
            return LABELS, _take(lab, max_batch, ev[0].timestamp, False)
        if not ev and not lab:
            self._waiting_since = None
            return None
        side, queue, other_caught_up = ((EVENTS, ev, labels_caught_up) if ev else (LABELS, lab, events_caught_up))
        if not other_caught_up():
            if self._waiting_since is None:
                self._waiting_since = now
            if now - self._waiting_since < self.idle_s:
                return None
        self._waiting_since = None
        return side, _take(queue, max_batch, None, True)


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
