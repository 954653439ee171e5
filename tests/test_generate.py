"""``generate`` writes streams to a real broker: ids, partitions, keys, inline or delayed labels
(same partition, sent `delay` events later with that event's timestamp), pacing, and
clear errors for what cannot be sent."""
from __future__ import annotations

import json
import math
import time

import pytest
from kafka import KafkaConsumer, KafkaProducer
from typer.testing import CliRunner

from services import unique_name
from streammoe.cli import app
from streammoe.service.generate import generate
from streammoe.testing import read_topic


def stream(n: int):
    return [({"a": float(i), "b": -0.5 * i}, i % 3) for i in range(n)]


@pytest.fixture
def producer(kafka_broker):
    p = KafkaProducer(bootstrap_servers=kafka_broker, linger_ms=2)
    yield p
    p.close()


def test_inline_labels_round_robin_partitions_and_synthetic_times(kafka_broker, topic_factory, producer):
    topic = topic_factory(3, "gen")
    report = generate(stream(30), producer, topic, partitions=3, labels="inline", ts_start=500.0, ts_step=0.25)
    assert (report.events, report.labels, report.partitions) == (30, 0, 3)
    recs = read_topic(kafka_broker, topic, 30)
    assert len(recs) == 30
    for r in recs:
        body = json.loads(r.value)
        i = int(body["id"].split("-")[1])
        assert r.partition == i % 3 and body["y"] == i % 3 and body["x"] == {"a": float(i), "b": -0.5 * i}
        assert body["ts"] == 500.0 + 0.25 * i and r.timestamp == round(body["ts"] * 1000) and r.key is None


def test_delayed_labels_follow_their_event_by_delay_events_in_the_same_partition(kafka_broker, topic_factory,
                                                                               producer):
    topic, labels = topic_factory(2, "gen"), topic_factory(2, "genlab")
    report = generate(stream(20), producer, topic, partitions=2, labels="delayed", labels_topic=labels, delay=3,
                      ts_start=100.0, ts_step=1.0, id_prefix="d", start=10)
    assert (report.events, report.labels) == (20, 20)
    events = {json.loads(r.value)["id"]: r for r in read_topic(kafka_broker, topic, 20)}
    assert all("y" not in json.loads(r.value) for r in events.values())
    got = read_topic(kafka_broker, labels, 20)
    assert len(got) == 20
    for r in got:
        body = json.loads(r.value)
        i = int(body["id"][1:])
        assert set(body) == {"id", "y"} and body["y"] == (i - 10) % 3
        assert r.partition == events[body["id"]].partition
        later = min(i + 3, 29)  # the last labels go out with the last event's time
        assert r.timestamp == round((100.0 + (later - 10)) * 1000)
    per_partition = [[json.loads(r.value)["id"] for r in got if r.partition == p] for p in (0, 1)]
    assert per_partition == [[f"d{i}" for i in range(10, 30) if i % 2 == p] for p in (0, 1)]


def test_keys_pin_each_key_to_one_partition(kafka_broker, topic_factory, producer):
    topic = topic_factory(2, "gen")
    generate(stream(12), producer, topic, partitions=2, labels="none", keys=3)
    for r in read_topic(kafka_broker, topic, 12):
        body = json.loads(r.value)
        j = int(body["id"].split("-")[1]) % 3
        assert body["key"] == f"k{j}" and r.key == f"k{j}".encode() and r.partition == j % 2
        assert "y" not in body


def test_rate_paces_the_stream(topic_factory, producer):
    topic = topic_factory(1, "gen")
    t0 = time.perf_counter()
    report = generate(stream(40), producer, topic, partitions=1, rate=400.0)
    assert time.perf_counter() - t0 >= 39 / 400.0 and report.events == 40
    assert math.isclose(report.events_per_s, 40 / report.seconds)


def test_what_cannot_be_sent_is_refused_clearly(topic_factory, producer):
    topic = topic_factory(1, "gen")
    with pytest.raises(ValueError, match="needs a labels topic"):
        generate(stream(1), producer, topic, partitions=1, labels="delayed")
    with pytest.raises(ValueError, match="event 0: feature 'a' is nan"):
        generate([({"a": float("nan")}, 1)], producer, topic, partitions=1)
    with pytest.raises(ValueError, match="label 0.5"):
        generate([({"a": 1.0}, 0.5)], producer, topic, partitions=1)
    with pytest.raises(ValueError, match="labels must be"):
        generate(stream(1), producer, topic, partitions=1, labels="later")


def test_cli_generate_creates_topics_and_sends_a_built_in_stream(kafka_broker):
    names = {k: unique_name(k) for k in ("in", "lab", "pred", "dlq")}
    env = {"STREAMMOE_KAFKA__PREDICTIONS_TOPIC": names["pred"], "STREAMMOE_KAFKA__DEADLETTER_TOPIC": names["dlq"]}
    result = CliRunner().invoke(app, ["generate", "sea_a", "--n", "50", "--bootstrap-servers", kafka_broker,
                                      "--topic", names["in"], "--labels-topic", names["lab"], "--labels",
                                      "delayed", "--delay", "10", "--partitions", "2", "--create-topics"], env=env)
    assert result.exit_code == 0, result.output
    assert "sent 50 events and 50 delayed labels" in result.output
    probe = KafkaConsumer(bootstrap_servers=kafka_broker)
    try:
        described = {t: len(probe.partitions_for_topic(t) or ()) for t in names.values()}
    finally:
        probe.close()
    assert described == {name: 2 for name in names.values()}  # --partitions for every topic
    assert len(read_topic(kafka_broker, names["lab"], 50)) == 50


def test_the_confluent_producer_writes_the_same_records_as_kafka_python(kafka_broker, topic_factory, producer):
    """``kafka.producer_client = "confluent-kafka"`` (the optional faster client) is a drop-in:
    same values, keys, partitions and timestamps."""
    pytest.importorskip("confluent_kafka")
    from streammoe.service.producers import make_producer

    fast = make_producer({"bootstrap_servers": [kafka_broker], "linger_ms": 2, "acks": "all",
                          "enable_idempotence": True}, "confluent-kafka")
    assert fast.partitions_for(topic_factory(3, "genfast-probe")) == {0, 1, 2}
    got = {}
    for name, p in (("kafka-python", producer), ("confluent-kafka", fast)):
        topic, labels = topic_factory(3, "genc"), topic_factory(3, "genclab")
        generate(stream(40), p, topic, partitions=3, labels="delayed", labels_topic=labels, delay=4, keys=5,
                 ts_start=100.0, ts_step=0.5)
        got[name] = [sorted((r.partition, r.offset, r.key, r.value, r.timestamp)
                            for r in read_topic(kafka_broker, t, 40)) for t in (topic, labels)]
    fast.close()
    assert fast.take_errors() == (0, None)
    assert got["kafka-python"] == got["confluent-kafka"] and len(got["kafka-python"][0]) == 40


def test_producer_options_translate_to_librdkafka_or_are_refused():
    from streammoe.service.producers import confluent_config, make_producer

    conf = confluent_config({"bootstrap_servers": ["a:1", "b:2"], "acks": -1, "linger_ms": 5,
                             "ssl_check_hostname": False, "sasl_plain_password": None, "max_request_size": 2048})
    assert conf == {"bootstrap.servers": "a:1,b:2", "acks": "-1", "linger.ms": 5,
                    "ssl.endpoint.identification.algorithm": "none", "message.max.bytes": 2048}
    with pytest.raises(ValueError, match="retries"):
        confluent_config({"retries": 3})
    with pytest.raises(ValueError, match="unknown Kafka producer client"):
        make_producer({}, "nope")
