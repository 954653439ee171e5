"""``streammoe generate``: write a stream of ``(x, y)`` events to the daemon's input topic.

Labels go inline (``"y"`` in the event), nowhere, or on the labels topic ``delay`` events
later - the label of event *i* is sent right after event *i + delay*, to the same partition
number, with the Kafka timestamp of that later event.  Because the daemon releases records
in event-time order (events first on equal timestamps), it joins each label exactly after
it has predicted event *i + delay*, whatever the fetch timing: "delay" is measured in
events, and a run is reproducible.

Partitioning is explicit: event *i* goes to partition ``i % partitions``, or, with
``keys``, every event carries ``"key": "k<j>"`` (``j = i % keys``) and goes to partition
``j % partitions`` so that all events of a key stay in one partition (one keyed model).

``ts_step`` makes the event times synthetic (``ts_start + i * ts_step``) instead of the
wall clock, which makes label timeouts reproducible in tests.
"""
from __future__ import annotations

import math
import time
from collections import deque
from dataclasses import dataclass
from typing import Any, Iterable, Literal, Optional

import numpy as np
import orjson

__all__ = ["GenerateReport", "generate", "json_label"]

LabelMode = Literal["inline", "delayed", "none"]


@dataclass(frozen=True)
class GenerateReport:
    """What :func:`generate` sent."""

    events: int
    labels: int
    partitions: int
    seconds: float

    @property
    def events_per_s(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else float("nan")


def json_label(y: Any) -> Any:
    """``y`` as a JSON label (bool / int / str).  NumPy scalars become Python scalars and
    integral floats (``1.0``) become ints; any other float is refused (the daemon refuses
    JSON floats as labels: ``1.0`` and ``1`` would be two classes)."""
    if isinstance(y, np.generic):
        y = y.item()
    if isinstance(y, (bool, int, str)):
        return y
    if isinstance(y, float) and math.isfinite(y) and y.is_integer():
        return int(y)
    raise ValueError(f"label {y!r} ({type(y).__name__}) cannot be sent: labels are integers, strings or booleans")


def _features(x: dict, index: int) -> dict:
    out = {}
    for k, v in x.items():
        if isinstance(v, np.generic):
            v = v.item()
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise ValueError(f"event {index}: feature {k!r} is {v!r}; features must be finite numbers")
        out[str(k)] = float(v)
    return out


def generate(events: Iterable[tuple[dict, Any]], producer: Any, topic: str, *, partitions: int,
             labels: LabelMode = "inline", labels_topic: Optional[str] = None, delay: int = 0,
             keys: int = 0, rate: Optional[float] = None, id_prefix: str = "e-", start: int = 0,
             ts_start: Optional[float] = None, ts_step: Optional[float] = None,
             flush: bool = True) -> GenerateReport:
    """Send ``events`` to ``topic`` with a kafka-python ``producer`` (see the module
    docstring).  ``rate`` caps events per second (``None``: as fast as possible); ``start``
    offsets the ids (``e-<start>``...) so several runs can append to one topic."""
    if labels not in ("inline", "delayed", "none"):
        raise ValueError(f"labels must be 'inline', 'delayed' or 'none', got {labels!r}")
    if labels == "delayed" and not labels_topic:
        raise ValueError("labels='delayed' needs a labels topic")
    if delay < 0 or partitions < 1 or keys < 0:
        raise ValueError("delay and keys must be >= 0 and partitions >= 1")
    if rate is not None and not rate > 0:
        raise ValueError(f"rate must be > 0 events/s, got {rate!r}")
    if ts_step is not None and ts_start is None:
        ts_start = time.time()
    send = producer.send
    waiting: deque = deque()  # (due index, partition, label message bytes)
    n = n_labels = 0
    t0 = time.perf_counter()
    ts_ms = 0
    for n, (x, y) in enumerate(events, start=1):
        i = start + n - 1
        if rate is not None:
            ahead = (n - 1) / rate - (time.perf_counter() - t0)
            if ahead > 0:
                time.sleep(ahead)
        ts = time.time() if ts_step is None else ts_start + (n - 1) * ts_step
        ts_ms = int(round(ts * 1000))
        body: dict[str, Any] = {"id": f"{id_prefix}{i}", "x": _features(x, i), "ts": ts}
        if keys:
            j = i % keys
            body["key"] = f"k{j}"
            part, kafka_key = j % partitions, body["key"].encode()
        else:
            part, kafka_key = i % partitions, None
        if labels == "inline":
            body["y"] = json_label(y)
        send(topic, value=orjson.dumps(body), key=kafka_key, partition=part, timestamp_ms=ts_ms)
        if labels == "delayed":
            label = orjson.dumps({"id": body["id"], "y": json_label(y)})
            waiting.append((n - 1 + delay, part, kafka_key, label))
            while waiting and waiting[0][0] <= n - 1:
                _, lp, lk, lv = waiting.popleft()
                send(labels_topic, value=lv, key=lk, partition=lp, timestamp_ms=ts_ms)
                n_labels += 1
    while waiting:  # the stream ended: the remaining labels arrive after the last event
        _, lp, lk, lv = waiting.popleft()
        send(labels_topic, value=lv, key=lk, partition=lp, timestamp_ms=ts_ms)
        n_labels += 1
    if flush:
        producer.flush()
    return GenerateReport(events=n, labels=n_labels, partitions=partitions, seconds=time.perf_counter() - t0)
