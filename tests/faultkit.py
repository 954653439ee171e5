"""Shared parts of the fault tests: a labelled stream on real topics, a ``streammoe serve``
subprocess, and the end checks every fault must pass.

End checks (:func:`check_end_state`), after the stream is fully processed:
* each partition's stored state digest equals an offline DriftMoE over the same events;
* ``n_learned`` in the stored state equals the number of labelled events (exactly-once
  learning) and no event is left waiting for its label;
* every event id has at least one prediction (at-least-once predictions).

The stream: SEA events on ``PARTITIONS`` partitions; labels on the labels topic, in blocks -
the labels of events ``[kB, (k+1)B)`` are sent after event ``(k+1)B - 1 + DELAY``, with its
timestamp (:func:`label_after`).  Blocks keep many events waiting for their labels (so every
checkpoint carries pending events) and let the daemon work in runs of a few hundred records
instead of alternating single events and labels, which makes 100k events affordable in a test.

The offline reference: the daemon predicts each event and learns each label right after the
event it was sent after (:func:`offline_interleaved`).  Predicting changes no state, so the stored state only
depends on the labelled events of the partition, learned in order - which the compiled
windowed path computes ~20x faster (:func:`offline_fast`).  :func:`check_end_state` proves
that shortcut on a prefix of the same stream each time, bit for bit, before relying on it.
"""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Optional

from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from services import unique_name
from streammoe import DriftMoE
from streammoe.connectors import open_source
from streammoe.service.generate import json_label
from streammoe.state.codec import state_digest
from streammoe.state.redis_store import RedisStore, StoreUnavailableError
from streammoe.testing.services import create_topics

PARTITIONS = 2
DELAY = 25          # a block of labels arrives 25 events after the last event of the block
LABEL_BLOCK = 400   # events per block of labels
PARAMS = {"n_experts": 3, "hidden": 8, "window": 32, "seed": 11}
PROOF_EVENTS = 2_000  # prefix on which the fast reference is checked against the interleaved one
REPO = Path(__file__).resolve().parents[1]


def label_after(j: int, n: int) -> int:
    """Index of the event after which the label of event ``j`` is sent (the last event for
    labels due beyond the end of an ``n``-event stream)."""
    return min((j // LABEL_BLOCK + 1) * LABEL_BLOCK - 1 + DELAY, n - 1)


def offline_interleaved(events: list, p: int) -> DriftMoE:
    """What partition ``p`` must hold, the way the daemon gets there: its events predicted in
    order, each label learned right after the event it was sent after (events first on ties)."""
    model = DriftMoE(**PARAMS)
    n = len(events)
    j = 0  # next label to send; label_after is non-decreasing in j
    for i, (x, _) in enumerate(events):
        if i % PARTITIONS == p:
            model.predict_proba_one(x)
        while j < n and label_after(j, n) == i:
            if j % PARTITIONS == p:
                model.learn_one(*events[j])
            j += 1
    return model


def offline_fast(events: list, p: int) -> DriftMoE:
    """The same state through the compiled windowed path: partition ``p``'s labelled events,
    predicted and learned in order (see the module docstring for why that is the same)."""
    model = DriftMoE(**PARAMS)
    own = events[p::PARTITIONS]
    model.predict_learn_many([x for x, _ in own], [y for _, y in own], proba=False)
    return model


def make_stream(bootstrap: str, n_events: int, seed: int = 7) -> tuple[list, dict]:
    """Create the four topics, write ``n_events`` SEA events (ids ``e-<i>``, event time
    ``1000 + i / 100`` s) and their labels in blocks (:func:`label_after`); returns
    ``(events, topics)`` with ``topics`` keyed by the daemon's setting names."""
    topics = {"input_topic": unique_name("in"), "labels_topic": unique_name("lab"),
              "predictions_topic": unique_name("pred"), "deadletter_topic": unique_name("dlq")}
    create_topics(bootstrap, {topics["input_topic"]: PARTITIONS, topics["labels_topic"]: PARTITIONS,
                              topics["predictions_topic"]: 1, topics["deadletter_topic"]: 1})
    events = list(open_source("sea_g", n=n_events, seed=seed))
    n = len(events)
    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=50, batch_size=512 * 1024)
    try:
        j = 0
        for i, (x, _) in enumerate(events):
            ts = 1_000.0 + i * 0.01
            ts_ms = int(round(ts * 1000))
            body = {"id": f"e-{i}", "x": {str(k): float(v) for k, v in x.items()}, "ts": ts}
            producer.send(topics["input_topic"], json.dumps(body, separators=(",", ":")).encode(),
                          partition=i % PARTITIONS, timestamp_ms=ts_ms)
            while j < n and label_after(j, n) == i:
                label = {"id": f"e-{j}", "y": json_label(events[j][1])}
                # labels due beyond the end carry the time of their own partition's last event: stamped
                # later than every event of that partition, they would wait serve.align_idle_ms
                # (the daemon cannot tell them from labels whose events it has not read yet)
                last_p = n - 1 - (n - 1 - j) % PARTITIONS
                lab_ms = ts_ms if label_after(j, n) < n - 1 else int(round((1_000.0 + last_p * 0.01) * 1000))
                producer.send(topics["labels_topic"], json.dumps(label, separators=(",", ":")).encode(),
                              partition=j % PARTITIONS, timestamp_ms=lab_ms)
                j += 1
        producer.flush()
    finally:
        producer.close()
    return events, topics


def serve_env(kafka_broker: str, redis_url: str, topics: dict, group: str, model: str,
              **extra: str) -> dict:
    env = dict(os.environ)
    env.update({
        "PYTHONPATH": os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]),
        "STREAMMOE_KAFKA__BOOTSTRAP_SERVERS": kafka_broker, "STREAMMOE_KAFKA__GROUP_ID": group,
        # short group timeouts: a restarted daemon gets its partitions once the killed member's
        # session (or the rebalance timeout, max_poll_interval) runs out
        "STREAMMOE_KAFKA__SESSION_TIMEOUT_MS": "4000", "STREAMMOE_KAFKA__HEARTBEAT_INTERVAL_MS": "800",
        "STREAMMOE_KAFKA__MAX_POLL_INTERVAL_MS": "6000", "STREAMMOE_KAFKA__MAX_POLL_RECORDS": "500",
        **{f"STREAMMOE_KAFKA__{k.upper()}": v for k, v in topics.items()},
        "STREAMMOE_REDIS__URL": redis_url, "STREAMMOE_MODEL__NAME": model,
        "STREAMMOE_MODEL__PARAMS": json.dumps(PARAMS),
        # frequent checkpoints, by count and by time, so every fault lands between two of them
        "STREAMMOE_CHECKPOINT__EVERY_EVENTS": "1000", "STREAMMOE_CHECKPOINT__EVERY_SECONDS": "0.3",
        # never process out of event-time order (the offline model assumes the generator's order)
        "STREAMMOE_SERVE__ALIGN_IDLE_MS": "30000",
        "STREAMMOE_HTTP__PORT": "0", "STREAMMOE_LOG_JSON": "true",
    })
    env.update(extra)
    return env


def start_serve(env: dict, log: Path) -> subprocess.Popen:
    """A new session, so one killpg takes the daemon and its producer child together."""
    with open(log, "ab") as sink:
        return subprocess.Popen([sys.executable, "-m", "streammoe", "serve"], env=env, cwd=REPO,
                                stdout=sink, stderr=sink, start_new_session=True)


def kill_hard(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(10)


def stop_clean(proc: subprocess.Popen, log: Path, stall_s: float = 120.0) -> None:
    """SIGTERM; the daemon must checkpoint and exit 0 (it may take as long as it keeps logging,
    up to ``stall_s`` of silence)."""
    try:
        proc.send_signal(signal.SIGTERM)
        size, since = -1, time.monotonic()
        while proc.poll() is None:
            now_size = log.stat().st_size if log.exists() else 0
            if now_size != size:
                size, since = now_size, time.monotonic()
            assert time.monotonic() - since < stall_s, "the daemon did not stop after SIGTERM:\n" + tail(log)
            time.sleep(0.05)
        assert proc.returncode == 0, tail(log)
    finally:
        if proc.poll() is None:
            kill_hard(proc)


def tail(log: Path, n: int = 3000) -> str:
    try:
        return log.read_text(errors="replace")[-n:]
    except OSError:
        return "<no log>"


def stored_progress(store: RedisStore, names: list[str]) -> int:
    """Input + label records covered by the stored checkpoints of all partitions (-1 while
    Redis is unreachable)."""
    try:
        return sum(sum(store.load(n).offsets.values()) for n in names)
    except StoreUnavailableError:
        return -1


def log_lines(log: Path) -> list[dict]:
    """The daemon's JSON log lines (others, e.g. a traceback, are skipped)."""
    out = []
    for line in log.read_text(errors="replace").splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            continue
    return out


def metric(log: Path, name: str, labels: str = "") -> Optional[float]:
    """Read one sample from the running daemon's ``/metrics`` (its URL is in the log)."""
    urls = [r["http"] for r in log_lines(log) if r.get("http")]
    if not urls:
        return None
    with urllib.request.urlopen(urls[-1].rstrip("/") + "/metrics", timeout=5) as resp:
        body = resp.read().decode()
    m = re.search(rf"^{re.escape(name)}{re.escape(labels)} ([0-9.e+-]+)$", body, re.M)
    return float(m.group(1)) if m else None


def read_all(bootstrap: str, topic: str, at_least: int, stall_s: float = 120.0) -> list:
    """Every record of ``topic``: at least ``at_least``, then until a one-second poll brings
    nothing more (predictions made again after a crash make the total unknown in advance).
    Gives up early only when nothing arrived for ``stall_s`` seconds."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                             max_partition_fetch_bytes=8 * 1024 * 1024)
    try:
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        got: list = []
        last = time.monotonic()
        while time.monotonic() - last < stall_s:
            batch = [r for records in consumer.poll(timeout_ms=1000, max_records=50_000).values()
                     for r in records]
            if not batch and len(got) >= at_least:
                break
            if batch:
                last = time.monotonic()
            got.extend(batch)
        return got
    finally:
        consumer.close()


def check_end_state(store: RedisStore, names: list[str], events: list, bootstrap: str,
                    predictions_topic: str, *, min_epoch: int = 1) -> list:
    """The end checks of the module docstring; returns the prediction records."""
    n = len(events)
    proof = events[:PROOF_EVENTS]
    for p in range(PARTITIONS):  # the fast reference is the daemon's interleaving, bit for bit
        assert state_digest(offline_fast(proof, p).state_parts()) == \
            state_digest(offline_interleaved(proof, p).state_parts())
    for p, name in enumerate(names):
        ck = store.load(name)
        assert ck.epoch >= min_epoch, f"partition {p}: epoch {ck.epoch}, expected >= {min_epoch}"
        parts = store.read(name)
        own = len(range(p, n, PARTITIONS))
        assert json.loads(parts["meta"])["n_learned"] == own, f"partition {p}: not every label learned once"
        assert store.pending_count(name) == 0
        assert state_digest(parts) == state_digest(offline_fast(events, p).state_parts()), \
            f"partition {p}: stored state differs from the uninterrupted model"
    preds = read_all(bootstrap, predictions_topic, n)
    ids = {json.loads(r.value)["id"] for r in preds}
    missing = sorted({f"e-{i}" for i in range(n)} - ids, key=lambda e: int(e[2:]))
    assert not missing, (f"{len(missing)} events never predicted (first: {missing[:10]}); "
                         f"{len(preds)} predictions read, last offsets {_last_offsets(preds)}")
    return preds


def _last_offsets(records: list) -> dict:
    out: dict = {}
    for r in records:
        out[r.partition] = max(out.get(r.partition, -1), r.offset)
    return out
