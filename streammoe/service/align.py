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

Labels are held to a stricter rule than events.  "Caught up" is judged from the high watermark
of the partition's last fetch response, and kafka-python fetches the two partitions in
independent requests: the input partition can look caught up from a response that predates
the labels just read.  Releasing those labels would dead-letter every label whose event was
produced between the two responses as ``unknown_event_id`` (measured: thousands per second on a
live stream that the daemon trailed).  So, with no queued events, a label is released only when
its timestamp is not after the newest event already released (the *event watermark*: its
event, which precedes it in event time, has then been read); a newer label waits for events, at
most ``idle_s``, after which the queued labels go (and further labels do not wait again until
new events arrive: a label backlog after a restart is not throttled).  A fresh end-offset
request could shorten that wait, but the test broker (Tansu) answers ListOffsets with wrong
offsets, so nothing here relies on it.  Events are not held back that way, because a prediction
must not wait for labels that may come much later: on a live stream the interleaving of a label
and the events around it can therefore depend on fetch timing (on a backlog it cannot).  The
cost of the rule: the last labels of a stream, stamped after its last event, are learned
``idle_s`` late.
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
        #: timestamp of the newest event released so far (``None`` before the first)
        self.event_watermark: Optional[int] = None
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
        self.event_watermark = None
        self._labels_gave_up = False

    def next_run(self, labels_caught_up: Callable[[], bool], now: float,
                 max_batch: int) -> Optional[tuple[str, list[Any]]]:
        """The next run of records to process - ``(EVENTS, records)`` or ``(LABELS, records)``
        - or ``None`` when nothing may be processed yet.  ``labels_caught_up`` (from the last
        fetch) is asked only when events wait and the labels queue is empty; whether the input
        side is caught up is never asked (see the module docstring)."""
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
        wm = self.event_watermark
        if lab and wm is not None and lab[0].timestamp <= wm:
            self._waiting_since = None
            return LABELS, _take(lab, max_batch, wm, True)
        if ev and labels_caught_up():
            self._waiting_since = None
            return self._events_run(_take(ev, max_batch, None, True))
        if lab and self._labels_gave_up:
            return LABELS, _take(lab, max_batch, None, True)
        if self._waiting_since is None:
            self._waiting_since = now
        if now - self._waiting_since < self.idle_s:
            return None
        self._waiting_since = None
        if ev:
            return self._events_run(_take(ev, max_batch, None, True))
        self._labels_gave_up = True
        return LABELS, _take(lab, max_batch, None, True)

    def _events_run(self, records: list) -> tuple[str, list]:
        ts = records[-1].timestamp
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
