"""The daemon's limits on a real broker and Redis: oversized messages and events with too many
features go to the dead-letter topic with their reason, and a full pending-label buffer
(by count or by size) evicts the earliest-deadline event to the dead-letter topic, so the
buffer - and the daemon's memory - stays bounded; every case is counted."""
from __future__ import annotations

import json
import time

import pytest
from test_daemon import drained, make_topics, settings, stopped

from services import unique_name
from streammoe.service.daemon import Daemon
from streammoe.service.deadletter import parse_dead_letter_headers
from streammoe.service.pending import pending_size
from streammoe.testing import produce_values, read_topic

N = 12       # events waiting for a label
ROOM = 5     # how many fit in the pending buffer


def event(i: int, **x: float) -> bytes:
    return json.dumps({"id": f"e-{i:02d}", "x": x or {"a": 0.1 * i, "b": 1.0}}).encode()  # equal sizes


@pytest.mark.parametrize("bound", ["pending_max_count", "pending_max_bytes"])
def test_limits_dead_letter_with_reasons_and_bound_the_pending_buffer(kafka_broker, topic_factory, redis_server,
                                                                      bound):
    topics = make_topics(topic_factory, 1)
    size = pending_size("e-00", {"a": 0.0, "b": 1.0}, None)
    limits = {"max_bytes": 600, "max_features": 3}
    limits[bound] = ROOM if bound == "pending_max_count" else ROOM * size
    inputs = [event(i) for i in range(N)]
    inputs.insert(3, event(100, a=1, b=2, c=3, d=4))                                  # too_many_features
    inputs.insert(7, json.dumps({"id": "e-big", "x": {"a": 1, "b": 2}, "ts": 1.0,
                                 "key": "k" * 700}).encode())                          # oversized
    produce_values(kafka_broker, topics["input_topic"], inputs)
    produce_values(kafka_broker, topics["labels_topic"],
                   [json.dumps({"id": f"e-{i:02d}", "y": i % 2}).encode() for i in range(N)])
    # a later event (labelled inline) proves that the events of the labels left over are not coming
    produce_values(kafka_broker, topics["input_topic"],
                   [json.dumps({"id": "e-end", "x": {"a": 0.5, "b": 1.0}, "y": 1}).encode()],
                   timestamp_ms=int(time.time() * 1000) + 60_000)
    inputs.append(b"e-end")
    d = Daemon(settings(kafka_broker, redis_server.url, topics, group=unique_name("g"), model=unique_name("m"),
                        limits=limits, align_idle_ms=2000)).start_thread()
    evicted = N - ROOM
    n_dead = 2 + 2 * evicted  # 2 refused inputs, each evicted event and then its label
    dlq = read_topic(kafka_broker, topics["deadletter_topic"], n_dead, timeout=60)
    assert drained((len(inputs), N), d)
    snap = d.snapshot()[0]
    counted = {r: d.metrics.dead_letters.labels(r)._value.get()
               for r in ("oversized", "too_many_features", "pending_evicted", "unknown_event_id")}
    stopped(d)
    got = [(parse_dead_letter_headers(r.headers), r.value) for r in dlq]
    reasons = [h["reason"] for h, _ in got]
    assert sorted(reasons) == sorted(["oversized", "too_many_features"] + ["pending_evicted"] * evicted
                                     + ["unknown_event_id"] * evicted)
    # the earliest deadlines leave first, with a message naming the bound; the event is replayable
    gone = [(h, v) for h, v in got if h["reason"] == "pending_evicted"]
    assert [json.loads(v)["id"] for _, v in gone] == [f"e-{i:02d}" for i in range(evicted)]
    assert all(bound in h["message"] for h, _ in gone)
    assert json.loads(gone[0][1])["x"] == {"a": 0.0, "b": 1.0}
    assert snap["stats"]["joined"] == ROOM and snap["pending"] == 0
    assert snap["stats"]["dead"] == {"oversized": 1, "too_many_features": 1, "pending_evicted": evicted,
                                     "unknown_event_id": evicted}
    assert counted == {"oversized": 1.0, "too_many_features": 1.0, "pending_evicted": float(evicted),
                       "unknown_event_id": float(evicted)}
