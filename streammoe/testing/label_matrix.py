"""One case of the label-alignment matrix: a seeded labelled stream on real topics, daemons
in one consumer group, and the checks every case must pass.

Used by ``tests/test_label_matrix.py`` (a representative subset, in CI) and
``benchmarks/label_matrix.py`` (the whole matrix, several seeds per case).

A case is partitions x processes x label mode x backlog/live:

* label modes: ``inline`` (``y`` in the event), ``delayed`` (the label of event *i* is sent
  right after event *i + delay*, with that event's timestamp) and ``shuffled`` (the label of
  event *i* is sent after event *i + r*, *r* drawn uniformly from ``[0, window)``: labels come
  out of order within a window).  Labels due after the last event are sent after it, with its
  timestamp.  Event *i* goes to partition ``i % partitions``; event times advance 0.5 ms per
  event, so two events share every millisecond (ties between events and labels are exercised).
* ``backlog``: everything is produced before the daemons start; ``live``: the daemons run
  first and the stream is produced at a fixed rate while they serve.
* processes: daemons (threads of this process, each with its own consumer) in one group; the
  second joins after the first has processed something, so partitions move mid-run.

Checks (:func:`check_case`): every event predicted, every label learned exactly once
(``n_learned`` = labelled events, the counters say ``learned = joined``, nothing pending),
no dead letter at all, and each partition's stored model equal, digest for digest, to an
offline DriftMoE fed the same (event, label) pairs in the same order.  The order is:

* backlog: the event-time merge of the partition's events and labels (events first on equal
  timestamps) - a pure function of the records, whatever the fetch timing;
* live: the daemon does not hold predictions back for labels, so where labels fall between
  events depends on when they arrived; the order is read back from the predictions (each
  carries ``model_version``, the number of labels learned before it) and the label records
  (learned in offset order), and must still learn every pair exactly once.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np

from .progress import processed, wait_progressing

__all__ = ["Case", "Stream", "make_stream", "produce_stream", "daemon_settings", "run_case", "check_case",
           "PARAMS"]

PARAMS = {"n_experts": 3, "hidden": 8, "window": 32, "seed": 11}
TS0_MS = 1_700_000_000_000


@dataclass(frozen=True)
class Case:
    partitions: int
    processes: int
    labels: str          # "inline" | "delayed" | "shuffled"
    mode: str            # "backlog" | "live"
    n_events: int = 2_000
    delay: int = 100     # delayed: events between an event and its label
    window: int = 500    # shuffled: labels drawn within this many events
    seed: int = 1
    rate: float = 1_500.0  # live: events per second

    @property
    def name(self) -> str:
        how = {"inline": "inline", "delayed": f"delayed{self.delay}", "shuffled": f"shuffled{self.window}"}
        return f"p{self.partitions}-x{self.processes}-{how[self.labels]}-{self.mode}-n{self.n_events}-s{self.seed}"


@dataclass
class Stream:
    """What is produced, in send order: ``sends`` is ``(topic side, partition, value, ts_ms)``."""

    events: list          # (x, y)
    sends: list
    event_ts: list        # ts_ms of event i
    label_after: dict     # event index j -> index of the event its label is sent after


def make_stream(case: Case) -> Stream:
    from ..connectors import open_source
    from ..service.generate import json_label

    events = list(open_source("sea_a", n=case.n_events, seed=case.seed))
    n = len(events)
    ts = [TS0_MS + i // 2 for i in range(n)]
    rng = np.random.default_rng(case.seed)
    if case.labels == "delayed":
        due = [min(j + case.delay, n - 1) for j in range(n)]
    elif case.labels == "shuffled":
        due = [min(j + int(r), n - 1) for j, r in enumerate(rng.integers(0, case.window, size=n))]
    else:
        due = []
    by_due: dict[int, list[int]] = {}
    for j, i in enumerate(due):
        by_due.setdefault(i, []).append(j)
    sends = []
    for i, (x, y) in enumerate(events):
        body: dict[str, Any] = {"id": f"e-{i}", "x": {str(k): float(v) for k, v in x.items()}}
        if case.labels == "inline":
            body["y"] = json_label(y)
        sends.append(("in", i % case.partitions, json.dumps(body, separators=(",", ":")).encode(), ts[i]))
        for j in by_due.get(i, ()):  # in index order within one due event (shuffled: already mixed)
            label = json.dumps({"id": f"e-{j}", "y": json_label(events[j][1])}, separators=(",", ":")).encode()
            sends.append(("lab", j % case.partitions, label, ts[i]))
    return Stream(events, sends, ts, dict(enumerate(due)))


def produce_stream(bootstrap: str, topics: dict, stream: Stream, rate: Optional[float] = None) -> None:
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, acks="all")
    try:
        t0 = time.perf_counter()
        k = 0
        for side, p, value, ts_ms in stream.sends:
            if side == "in":
                if rate is not None:
                    ahead = k / rate - (time.perf_counter() - t0)
                    if ahead > 0:
                        time.sleep(ahead)
                k += 1
            topic = topics["input_topic"] if side == "in" else topics["labels_topic"]
            producer.send(topic, value=value, partition=p, timestamp_ms=ts_ms)
        producer.flush(timeout=60)
    finally:
        producer.close(timeout=10)


def daemon_settings(bootstrap: str, redis_url: str, topics: dict, *, group: str, model: str,
                    **serve: Any) -> Any:
    """Operator defaults (``serve.align_idle_ms`` included), short group timeouts for tests."""
    from ..service.settings import Settings

    return Settings.load(
        kafka=dict(bootstrap_servers=bootstrap, group_id=group, session_timeout_ms=6000,
                   heartbeat_interval_ms=1000, max_poll_interval_ms=30_000, **topics),
        redis=dict(url=redis_url), model=dict(name=model, params=PARAMS),
        checkpoint=dict(every_events=1_000, every_seconds=1.0), http=dict(enabled=False),
        serve=dict(producer_process=False, **serve), log_json=False)


def _wait(pred, cap_s: float, what: str, progress=None) -> None:
    """Wait until ``pred()``; give up only when ``progress()`` has not changed for ``cap_s``."""
    progress = progress or (lambda: None)
    if not wait_progressing(pred, progress, cap_s):
        raise AssertionError(f"{what}: no progress for {cap_s:.0f} s (at {progress()})")


def run_case(case: Case, bootstrap: str, redis_url: str, *, stall_s: float = 60.0, **serve: Any) -> dict:
    """Create topics, produce, serve with ``case.processes`` daemons until every record is
    consumed, stop them (checkpointing) and return what :func:`check_case` needs."""
    from ..service.daemon import Daemon
    from .services import create_topics

    stamp = f"{case.name}-{time.monotonic_ns()}"
    topics = {"input_topic": f"in-{stamp}", "labels_topic": f"lab-{stamp}",
              "predictions_topic": f"pred-{stamp}", "deadletter_topic": f"dlq-{stamp}"}
    create_topics(bootstrap, {topics["input_topic"]: case.partitions, topics["labels_topic"]: case.partitions,
                              topics["predictions_topic"]: 1, topics["deadletter_topic"]: 1})
    stream = make_stream(case)
    n_labels = sum(1 for s in stream.sends if s[0] == "lab")
    model = f"m-{stamp}"
    cfg = dict(group=f"g-{stamp}", model=model, **serve)
    daemons: list = []
    t0 = time.perf_counter()
    try:
        if case.mode == "backlog":
            produce_stream(bootstrap, topics, stream)
        daemons.append(Daemon(daemon_settings(bootstrap, redis_url, topics, **cfg)).start_thread())
        if case.mode == "live":
            import threading

            producer = threading.Thread(target=produce_stream, args=(bootstrap, topics, stream, case.rate))
            _wait(lambda: len(daemons[0].owners) == case.partitions, stall_s, "first assignment")
            producer.start()
        if case.processes > 1:
            _wait(lambda: processed(*daemons)[0] > 0, stall_s, "first events", lambda: 0)
            for _ in range(case.processes - 1):
                daemons.append(Daemon(daemon_settings(bootstrap, redis_url, topics, **cfg)).start_thread())
        if case.mode == "live":
            producer.join()
        want = (case.n_events, n_labels)
        _wait(lambda: processed(*daemons) == want and sum(len(d.owners) for d in daemons) == case.partitions,
              stall_s, f"{case.name}: consuming", lambda: processed(*daemons))
        seconds = time.perf_counter() - t0
    finally:
        for d in daemons:
            d.stop()
        for d in daemons:
            d.join(60)
    errors = [d.error for d in daemons if d.error is not None]
    return {"case": case, "topics": topics, "model": model, "stream": stream, "n_labels": n_labels,
            "seconds": seconds, "errors": errors}


def _merge_order(stream: Stream, p: int, partitions: int) -> list:
    """The event-time merge of partition ``p``: ``("e", i)`` / ``("l", j)``, events first on ties."""
    evs = [(ts, i) for i, ts in enumerate(stream.event_ts) if i % partitions == p]
    labs = []
    for side, q, value, ts in stream.sends:
        if side == "lab" and q == p:
            labs.append((ts, int(json.loads(value)["id"][2:])))
    out, a, b = [], 0, 0
    while a < len(evs) or b < len(labs):
        if b >= len(labs) or (a < len(evs) and evs[a][0] <= labs[b][0]):
            out.append(("e", evs[a][1]))
            a += 1
        else:
            out.append(("l", labs[b][1]))
            b += 1
    return out


def _version_order(stream: Stream, p: int, partitions: int, versions: dict) -> list:
    """The order the daemon took, read back from each prediction's ``model_version``."""
    evs = [i for i in range(len(stream.events)) if i % partitions == p]
    labs = [int(json.loads(v)["id"][2:]) for side, q, v, _ in stream.sends if side == "lab" and q == p]
    out, b = [], 0
    for i in evs:
        while b < versions[f"e-{i}"]:
            out.append(("l", labs[b]))
            b += 1
        out.append(("e", i))
    out.extend(("l", j) for j in labs[b:])
    return out


def _offline(stream: Stream, order: list, inline: bool) -> Any:
    from .. import DriftMoE

    model = DriftMoE(**PARAMS)
    for kind, i in order:
        x, y = stream.events[i]
        if kind == "e":
            model.predict_proba_one(x)
            if inline:
                model.learn_one(x, y)
        else:
            model.learn_one(x, y)
    return model


def check_case(result: dict, bootstrap: str, redis_url: str) -> dict:
    """Raise ``AssertionError`` naming the first broken promise; returns figures of the run."""
    from ..state.codec import state_digest
    from ..state.redis_store import RedisStore
    from .services import read_topic

    case: Case = result["case"]
    stream: Stream = result["stream"]
    topics = result["topics"]
    assert not result["errors"], f"{case.name}: daemon error {result['errors'][0]!r}"
    store = RedisStore.from_url(redis_url)
    per_p = [sum(1 for i in range(case.n_events) if i % case.partitions == p) for p in range(case.partitions)]
    dead: dict = {}
    for p in range(case.partitions):
        name = f"{result['model']}/{topics['input_topic']}/{p}"
        ck = store.load(name)
        stats = json.loads(ck.extra["daemon"])["stats"]
        for k, v in stats["dead"].items():
            dead[k] = dead.get(k, 0) + v
        assert store.pending_count(name) == 0, f"{case.name}: partition {p} has events waiting for labels"
        assert stats["predicted"] == per_p[p] and stats["learned"] == per_p[p], (case.name, p, stats)
        if case.labels != "inline":
            assert stats["joined"] == per_p[p], (case.name, p, stats)
    assert not dead, f"{case.name}: dead letters {dead}"
    preds = read_topic(bootstrap, topics["predictions_topic"], case.n_events, timeout=60)
    versions: dict = {}
    for r in preds:
        body = json.loads(r.value)
        versions.setdefault(body["id"], body["model_version"])
    assert len(versions) == case.n_events, f"{case.name}: {len(versions)} of {case.n_events} events predicted"
    inline = case.labels == "inline"
    for p in range(case.partitions):
        name = f"{result['model']}/{topics['input_topic']}/{p}"
        parts = store.read(name)
        assert json.loads(parts["meta"])["n_learned"] == per_p[p], (case.name, p)
        if inline or case.mode == "backlog":
            order = _merge_order(stream, p, case.partitions) if not inline else \
                [("e", i) for i in range(case.n_events) if i % case.partitions == p]
            if not inline:
                # the predictions must say the same order (model_version = labels learned before)
                learned, want = 0, {}
                for kind, i in order:
                    if kind == "l":
                        learned += 1
                    else:
                        want[f"e-{i}"] = learned
                got = {k: versions[k] for k in want}
                assert got == want, f"{case.name}: partition {p} left the event-time merge order"
        else:
            order = _version_order(stream, p, case.partitions, versions)
        expected = _offline(stream, order, inline)
        assert state_digest(parts) == state_digest(expected.state_parts()), \
            f"{case.name}: partition {p} state differs from the offline model"
    store.client.close() if hasattr(store, "client") else None
    return {"case": case.name, "events": case.n_events, "labels": result["n_labels"], "dead": 0,
            "seconds": round(result["seconds"], 2)}
