"""Crash anywhere: a real ``streammoe serve`` subprocess, killed with SIGKILL at seeded random
moments and restarted, ends with the same model as an uninterrupted run, bit for bit.

Issue 7 asks for a 100k+ event stream; this test uses ``N_EVENTS`` (20k) so the suite stays
fast on a shared 2-core machine — the guarantee under test (checkpoint = state + offsets +
pending labels in one atomic write) does not depend on the stream length, only on crashing
between checkpoints, which every kill here does (checkpoints are frequent and time-based).

The whole process group is killed (the daemon and its producer child): that is what a lost
container or machine looks like. Checks after the last restart finishes the stream:
* each partition's stored state digest equals an offline DriftMoE over the same events in the
  same order (delayed labels learned ``DELAY`` events later, the generator's contract);
* every event id has at least one prediction (at-least-once);
* ``n_learned`` in the stored state equals the number of labelled events (exactly-once).
"""
from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from services import unique_name, wait_until
from streammoe import DriftMoE
from streammoe.connectors import open_source
from streammoe.service.generate import generate
from streammoe.state.codec import state_digest
from streammoe.state.redis_store import RedisStore

N_EVENTS = 20_000   # issue 7 says 100k+; smaller so CI stays fast (see the module docstring)
PARTITIONS = 2
DELAY = 25          # labels arrive 25 events after their event, on the labels topic
KILLS = 3
SEED = 20261125
PARAMS = {"n_experts": 3, "hidden": 8, "window": 32, "seed": 11}
REPO = Path(__file__).resolve().parents[1]


def offline_partition(events: list, p: int) -> DriftMoE:
    """What partition ``p`` must hold: its events predicted in order, each label learned right
    after event ``j + DELAY`` (and the last ``DELAY`` labels at the end)."""
    model = DriftMoE(**PARAMS)
    n = len(events)
    for i, (x, _) in enumerate(events):
        if i % PARTITIONS == p:
            model.predict_proba_one(x)
        j = i - DELAY
        if j >= 0 and j % PARTITIONS == p:
            model.learn_one(*events[j])
    for j in range(max(0, n - DELAY), n):
        if j % PARTITIONS == p:
            model.learn_one(*events[j])
    return model


def serve_env(kafka_broker: str, redis_url: str, topics: dict, group: str, model: str) -> dict:
    env = dict(os.environ)
    env.update({
        "PYTHONPATH": os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]),
        "STREAMMOE_KAFKA__BOOTSTRAP_SERVERS": kafka_broker, "STREAMMOE_KAFKA__GROUP_ID": group,
        "STREAMMOE_KAFKA__SESSION_TIMEOUT_MS": "6000", "STREAMMOE_KAFKA__HEARTBEAT_INTERVAL_MS": "1000",
        "STREAMMOE_KAFKA__MAX_POLL_INTERVAL_MS": "10000", "STREAMMOE_KAFKA__MAX_POLL_RECORDS": "200",
        **{f"STREAMMOE_KAFKA__{k.upper()}": v for k, v in topics.items()},
        "STREAMMOE_REDIS__URL": redis_url, "STREAMMOE_MODEL__NAME": model,
        "STREAMMOE_MODEL__PARAMS": json.dumps(PARAMS),
        # frequent checkpoints, by count and by time, so every kill lands between two of them
        "STREAMMOE_CHECKPOINT__EVERY_EVENTS": "700", "STREAMMOE_CHECKPOINT__EVERY_SECONDS": "0.3",
        # never process out of event-time order (the offline model assumes the generator's order)
        "STREAMMOE_SERVE__ALIGN_IDLE_MS": "30000",
        "STREAMMOE_HTTP__PORT": "0", "STREAMMOE_LOG_JSON": "true",
    })
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


def stored_progress(store: RedisStore, names: list[str]) -> int:
    """Input + label records covered by the stored checkpoints of all partitions."""
    return sum(sum(store.load(n).offsets.values()) for n in names)


def read_all(bootstrap: str, topic: str, at_least: int, timeout: float = 60.0) -> list:
    """Every record of ``topic``: at least ``at_least``, then until a one-second poll brings
    nothing more (predictions made again after a crash make the total unknown in advance)."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    try:
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        got: list = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            batch = [r for records in consumer.poll(timeout_ms=1000).values() for r in records]
            if not batch and len(got) >= at_least:
                break
            got.extend(batch)
        return got
    finally:
        consumer.close()


def test_sigkill_at_random_moments_then_restart_equals_the_uninterrupted_model(
        kafka_broker, topic_factory, redis_server, tmp_path):
    topics = {"input_topic": topic_factory(PARTITIONS, "in"), "labels_topic": topic_factory(PARTITIONS, "lab"),
              "predictions_topic": topic_factory(1, "pred"), "deadletter_topic": topic_factory(1, "dlq")}
    events = list(open_source("sea_g", n=N_EVENTS, seed=7))
    producer = KafkaProducer(bootstrap_servers=kafka_broker, linger_ms=20, batch_size=256 * 1024)
    try:
        generate(events, producer, topics["input_topic"], partitions=PARTITIONS, labels="delayed",
                 labels_topic=topics["labels_topic"], delay=DELAY, ts_start=1_000.0, ts_step=0.01)
    finally:
        producer.close()

    model = unique_name("m")
    names = [f"{model}/{topics['input_topic']}/{p}" for p in range(PARTITIONS)]
    store = RedisStore.from_url(redis_server.url)
    env = serve_env(kafka_broker, redis_server.url, topics, unique_name("g"), model)
    log = tmp_path / "serve.log"
    total = 2 * N_EVENTS  # every event and every label
    rng = random.Random(SEED)
    # kill points: one stored-progress threshold in each of KILLS equal slices of 10%..85% of the
    # records (so every run must make progress, hence claim its partitions), plus a random delay
    width = (total * 85 // 100 - total // 10) // KILLS
    targets = [total // 10 + k * width + rng.randrange(width // 2) for k in range(KILLS)]
    kills: list[tuple[int, int]] = []  # (progress at kill time, progress after restart's load)
    for target in targets:
        proc = start_serve(env, log)
        try:
            reached = wait_until(lambda: stored_progress(store, names) >= target or proc.poll() is not None,
                                 60, interval=0.02)
            assert reached and proc.poll() is None, log.read_text()[-3000:]
            time.sleep(rng.uniform(0.0, 0.25))  # land somewhere between checkpoints
        finally:
            kill_hard(proc)
        kills.append((target, stored_progress(store, names)))
    assert len(kills) == KILLS

    proc = start_serve(env, log)
    try:
        done = wait_until(lambda: stored_progress(store, names) == total or proc.poll() is not None, 80, 0.05)
        assert done and proc.poll() is None, (stored_progress(store, names), log.read_text()[-3000:])
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0, log.read_text()[-3000:]
    finally:
        if proc.poll() is None:
            kill_hard(proc)

    per_partition = N_EVENTS // PARTITIONS
    for p, name in enumerate(names):
        ck = store.load(name)
        assert ck.epoch == KILLS + 1, f"partition {p} was not taken over after every kill: epoch {ck.epoch}"
        parts = store.read(name)
        assert json.loads(parts["meta"])["n_learned"] == per_partition  # every label learned exactly once
        assert store.pending_count(name) == 0
        assert state_digest(parts) == state_digest(offline_partition(events, p).state_parts()), \
            f"partition {p}: state after {KILLS} SIGKILLs differs from the uninterrupted model"
    preds = read_all(kafka_broker, topics["predictions_topic"], N_EVENTS)
    ids = {json.loads(r.value)["id"] for r in preds}
    assert ids == {f"e-{i}" for i in range(N_EVENTS)}  # at least one prediction per event
    # some predictions were made again: the kills did land between checkpoints and lose work
    assert len(preds) > N_EVENTS, "no kill lost uncheckpointed work; the test would not test recovery"
