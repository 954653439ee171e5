"""The daemon on a real broker (Tansu) and a real Redis: predictions for every event, delayed
labels learned exactly once, restart after a crash = the uninterrupted run bit for bit,
two daemons splitting a group's partitions, dead letters with reasons, and fencing."""
from __future__ import annotations

import json
import time
from typing import Any

import pytest
from kafka import KafkaProducer

from services import unique_name, wait_progressing, wait_until
from streammoe import DriftMoE
from streammoe.connectors import open_source
from streammoe.service.daemon import Daemon
from streammoe.service.deadletter import parse_dead_letter_headers
from streammoe.service.generate import generate
from streammoe.service.settings import Settings
from streammoe.state.codec import state_digest
from streammoe.state.redis_store import RedisStore
from streammoe.testing import produce_values, read_topic
from streammoe.testing.progress import processed

PARAMS = {"n_experts": 3, "hidden": 8, "window": 32, "seed": 11}
STEP = 0.01  # synthetic event times 10 ms apart: every record has its own timestamp


def make_topics(topic_factory, partitions: int) -> dict[str, str]:
    return {"input_topic": topic_factory(partitions, "in"), "labels_topic": topic_factory(partitions, "lab"),
            "predictions_topic": topic_factory(1, "pred"), "deadletter_topic": topic_factory(1, "dlq")}


def settings(kafka_broker: str, redis_url: str, topics: dict, *, group: str, model: str,
             every_events: int = 1_000_000, every_seconds: float = 3600.0, max_poll_records: int = 500,
             limits: dict | None = None, **serve: Any) -> Settings:
    serve.setdefault("align_idle_ms", 30_000)  # never process out of event-time order in tests
    return Settings.load(
        kafka=dict(bootstrap_servers=kafka_broker, group_id=group, session_timeout_ms=6000,
                   heartbeat_interval_ms=1000, max_poll_interval_ms=10_000, max_poll_records=max_poll_records,
                   **topics),
        redis=dict(url=redis_url), model=dict(name=model, params=PARAMS),
        checkpoint=dict(every_events=every_events, every_seconds=every_seconds),
        limits=limits or {}, http=dict(port=0), serve=serve, log_json=False)


def produce(kafka_broker: str, topics: dict, events: list, *, partitions: int, labels: str, delay: int = 0,
            start: int = 0, ts_start: float = 1_000.0) -> None:
    producer = KafkaProducer(bootstrap_servers=kafka_broker, linger_ms=5)
    try:
        generate(events, producer, topics["input_topic"], partitions=partitions, labels=labels,
                 labels_topic=topics["labels_topic"], delay=delay, start=start,
                 ts_start=ts_start + start * STEP, ts_step=STEP)
    finally:
        producer.close()


def drained(want: tuple, *daemons: Daemon, stall_s: float = 180.0) -> bool:
    """Until the daemons consumed ``want`` = (input, label) records; False only when their
    counts stood still for ``stall_s`` (a busy machine is slow, not stuck)."""
    return wait_progressing(lambda: processed(*daemons) == want, lambda: processed(*daemons), stall_s)


def stopped(d: Daemon, checkpoint: bool = True) -> None:
    d.stop(checkpoint=checkpoint)
    assert d.join(30), "daemon did not stop"
    assert d.error is None, d.error


def model_parts(store: RedisStore, name: str) -> dict[str, bytes]:
    return store.read(name)


def offline_partition(events: list, partitions: int, p: int, labels: str, delay: int = 0) -> DriftMoE:
    """What the daemon must compute for partition ``p``: the same model over the partition's
    events, delayed labels learned right after event j + delay (the generator's contract)."""
    model = DriftMoE(**PARAMS)
    n = len(events)
    for i, (x, y) in enumerate(events):
        if i % partitions == p:
            model.predict_proba_one(x)
            if labels == "inline":
                model.learn_one(x, y)
        j = i - delay
        if labels == "delayed" and j >= 0 and j % partitions == p:
            model.learn_one(*events[j])
    if labels == "delayed":
        for j in range(max(0, n - delay), n):
            if j % partitions == p:
                model.learn_one(*events[j])
    return model


@pytest.fixture
def store(redis_server) -> RedisStore:
    return RedisStore.from_url(redis_server.url)


def test_every_event_gets_a_prediction_and_state_equals_the_offline_model(kafka_broker, topic_factory,
                                                                          redis_server, store):
    topics = make_topics(topic_factory, 2)
    events = list(open_source("sea_a", n=500, seed=1))
    produce(kafka_broker, topics, events, partitions=2, labels="inline")
    model = unique_name("m")
    d = Daemon(settings(kafka_broker, redis_server.url, topics, group=unique_name("g"), model=model,
                        every_events=100)).start_thread()
    preds = read_topic(kafka_broker, topics["predictions_topic"], 500, timeout=60)
    assert drained((500, 0), d)
    stopped(d)
    assert sorted(json.loads(r.value)["id"] for r in preds) == sorted(f"e-{i}" for i in range(500))
    first = json.loads(preds[0].value)
    assert set(first) == {"id", "y_pred", "proba", "expert", "model_version", "latency_ms"}
    for p in (0, 1):
        ck = store.load(f"{model}/{topics['input_topic']}/{p}")
        assert ck.offsets == {f"{topics['input_topic']}:{p}": 250} and ck.epoch == 1 and ck.commits == 3
        expected = offline_partition(events, 2, p, "inline")
        assert state_digest(model_parts(store, f"{model}/{topics['input_topic']}/{p}")) == \
            state_digest(expected.state_parts())


def test_delayed_labels_are_joined_by_id_and_learned_once(kafka_broker, topic_factory, redis_server, store):
    topics = make_topics(topic_factory, 2)
    events = list(open_source("sea_g", n=300, seed=2))
    produce(kafka_broker, topics, events, partitions=2, labels="delayed", delay=7)
    # a label for an event nobody sent, stamped inside the stream's event time
    produce_values(kafka_broker, topics["labels_topic"], [b'{"id": "ghost", "y": 1}'], partition=1,
                   timestamp_ms=int((1_000.0 + 150 * STEP) * 1000))
    model = unique_name("m")
    # the last labels of each partition are stamped after its last event: they wait align_idle_ms
    d = Daemon(settings(kafka_broker, redis_server.url, topics, group=unique_name("g"), model=model,
                        max_poll_records=64, align_idle_ms=2000)).start_thread()
    assert drained((300, 301), d), processed(d)
    stopped(d)
    dlq = read_topic(kafka_broker, topics["deadletter_topic"], 1, timeout=10)
    assert [parse_dead_letter_headers(r.headers)["reason"] for r in dlq] == ["unknown_event_id"]
    for p in (0, 1):
        name = f"{model}/{topics['input_topic']}/{p}"
        parts = model_parts(store, name)
        assert json.loads(parts["meta"])["n_learned"] == 150 and store.pending_count(name) == 0
        expected = offline_partition(events, 2, p, "delayed", delay=7)
        assert state_digest(parts) == state_digest(expected.state_parts())
    preds = read_topic(kafka_broker, topics["predictions_topic"], 300, timeout=30)
    assert len({json.loads(r.value)["id"] for r in preds}) == 300


def test_restart_after_a_crash_resumes_from_stored_offsets_with_identical_state(
        kafka_broker, topic_factory, redis_server, store):
    topics = make_topics(topic_factory, 2)
    events = list(open_source("rbf_m", n=600, seed=3))
    produce(kafka_broker, topics, events[:300], partitions=2, labels="delayed", delay=5)
    crash, model = unique_name("g"), unique_name("m")
    # align_idle_ms: the last labels of a partition are stamped after its last event and wait that long
    cfg = dict(group=crash, model=model, every_events=90, max_poll_records=40, align_idle_ms=2000)
    first = Daemon(settings(kafka_broker, redis_server.url, topics, **cfg)).start_thread()
    assert drained((300, 300), first), processed(first)
    first.stop(checkpoint=False)  # a crash: work since the last checkpoint is lost
    assert first.join(30)
    stored = [store.load(f"{model}/{topics['input_topic']}/{p}").offsets for p in (0, 1)]
    lost = sum(300 - sum(o.values()) for o in stored)
    assert lost > 0, f"the crash lost nothing (offsets {stored}); the test would not test a restart"

    produce(kafka_broker, topics, events[300:], partitions=2, labels="delayed", delay=5, start=300)
    second = Daemon(settings(kafka_broker, redis_server.url, topics, **cfg)).start_thread()
    assert drained((600, 600), second), processed(second)
    stopped(second)

    straight = unique_name("m")
    whole = Daemon(settings(kafka_broker, redis_server.url, topics, group=unique_name("g"), model=straight,
                            every_events=90, align_idle_ms=2000)).start_thread()
    assert drained((600, 600), whole), processed(whole)
    stopped(whole)
    for p in (0, 1):
        resumed = model_parts(store, f"{model}/{topics['input_topic']}/{p}")
        uninterrupted = model_parts(store, f"{straight}/{topics['input_topic']}/{p}")
        assert state_digest(resumed) == state_digest(uninterrupted)
        assert json.loads(resumed["meta"])["n_learned"] == 300
        assert store.load(f"{model}/{topics['input_topic']}/{p}").epoch == 2


def test_two_daemons_in_one_group_split_the_partitions(kafka_broker, topic_factory, redis_server, store):
    topics = make_topics(topic_factory, 4)
    events = list(open_source("sea_a", n=800, seed=4))
    group, model = unique_name("g"), unique_name("m")
    cfg = dict(group=group, model=model, every_events=50, max_poll_records=50)
    produce(kafka_broker, topics, events[:400], partitions=4, labels="inline")
    one = Daemon(settings(kafka_broker, redis_server.url, topics, **cfg)).start_thread()
    assert wait_progressing(lambda: processed(one)[0] > 0, lambda: processed(one), 180)
    two = Daemon(settings(kafka_broker, redis_server.url, topics, **cfg)).start_thread()
    assert wait_until(lambda: len(one.owners) == 2 and len(two.owners) == 2, 60), (one.owners, two.owners)
    produce(kafka_broker, topics, events[400:], partitions=4, labels="inline", start=400)
    assert wait_progressing(lambda: processed(one, two)[0] == 800, lambda: processed(one, two), 180), \
        processed(one, two)
    owned = set(one.snapshot()), set(two.snapshot())
    stopped(one)
    stopped(two)
    assert owned[0].isdisjoint(owned[1]) and owned[0] | owned[1] == {0, 1, 2, 3}
    for p in range(4):
        name = f"{model}/{topics['input_topic']}/{p}"
        assert json.loads(model_parts(store, name)["meta"])["n_learned"] == 200  # exactly once, across owners
        assert state_digest(model_parts(store, name)) == \
            state_digest(offline_partition(events, 4, p, "inline").state_parts())
    preds = read_topic(kafka_broker, topics["predictions_topic"], 800, timeout=30)
    assert {json.loads(r.value)["id"] for r in preds} == {f"e-{i}" for i in range(800)}


def test_bad_messages_go_to_the_dead_letter_topic_with_their_reason(kafka_broker, topic_factory, redis_server):
    topics = make_topics(topic_factory, 1)
    def good(i, y=1, **kw):
        return json.dumps({"id": f"g{i}", "x": {"a": 0.5 * i, "b": 1.0}, "y": y, **kw}).encode()
    inputs = [
        (good(0), None),
        (b"{not json", "malformed_json"),
        (b'{"id": "n", "x": {"a": NaN, "b": 1}}', "non_finite"),
        (b'{"id": "big", "x": {"a": 1, "b": 2}, "pad": "' + b"x" * 3000 + b'"}', "oversized"),
        (b'{"id": "u", "x": {"a": 1, "b": 2}, "label": 1}', "unknown_field"),
        (b'{"id": "f", "x": {"a": 1}}', "wrong_features"),
        (good(1, y="yes"), "unknown_label"),
        (b'[1, 2]', "not_object"),
        (good(2, y=0), None),
        (b"", "empty"),
        (good(3), None),
    ]
    produce_values(kafka_broker, topics["input_topic"], [v for v, _ in inputs])
    produce_values(kafka_broker, topics["labels_topic"], [b'{"id": "g0", "y": 1}', b'{"id": 5, "y": 1}'])
    # a later event proves that the event of label "g0" is not coming (it came, labelled inline):
    # without it the label would wait as an early label, not be refused
    produce_values(kafka_broker, topics["input_topic"], [good(4)], timestamp_ms=int(time.time() * 1000) + 60_000)
    d = Daemon(settings(kafka_broker, redis_server.url, topics, group=unique_name("g"), model=unique_name("m"),
                        limits={"max_bytes": 2000}, align_idle_ms=0,
                        producer_process=False)).start_thread()  # the in-process producer path
    want = [r for _, r in inputs if r] + ["unknown_event_id", "bad_id"]
    dlq = read_topic(kafka_broker, topics["deadletter_topic"], len(want), timeout=60)
    preds = read_topic(kafka_broker, topics["predictions_topic"], 4, timeout=30)
    ok, health = d.health()
    counts = {r: d.metrics.dead_letters.labels(r)._value.get() for r in set(want)}
    stopped(d)
    got = [parse_dead_letter_headers(r.headers) for r in dlq]
    assert sorted(h["reason"] for h in got) == sorted(want)
    by_offset = {(h["topic"], h["offset"]): (h["reason"], r.value) for h, r in zip(got, dlq)}
    for offset, (value, reason) in enumerate(inputs):
        if reason:
            assert by_offset[(topics["input_topic"], offset)] == (reason, value)  # original bytes kept
    assert [json.loads(r.value)["id"] for r in preds] == ["g0", "g2", "g3", "g4"]
    assert ok, health  # the daemon kept going
    assert counts == {r: float(want.count(r)) for r in set(want)}


def test_fencing_a_stale_owner_stops_it_from_writing(kafka_broker, topic_factory, redis_server, store):
    topics = make_topics(topic_factory, 1)
    model = unique_name("m")
    name = f"{model}/{topics['input_topic']}/0"
    events = list(open_source("sea_a", n=120, seed=5))
    produce(kafka_broker, topics, events[:60], partitions=1, labels="inline")
    d = Daemon(settings(kafka_broker, redis_server.url, topics, group=unique_name("g"), model=model,
                        every_events=10)).start_thread()
    assert wait_until(lambda: store.load(name).offsets.get(f"{topics['input_topic']}:0") == 60, 30)
    before = store.load(name)
    assert store.claim(name) == before.epoch + 1  # a new owner appears (e.g. after a partition move)
    produce(kafka_broker, topics, events[60:], partitions=1, labels="inline", start=60)
    assert wait_until(lambda: d.fenced == {0}, 30)
    ok, health = d.health()
    assert not ok and health["fenced"] == [0] and d.metrics.fenced._value.get() == 1
    after = store.load(name)
    assert after.offsets == before.offsets and after.commits == before.commits and after.parts == before.parts
    assert not d.owners and d.error is None  # the daemon dropped the model and keeps running
    stopped(d)
