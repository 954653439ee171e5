"""Event/label decoding never raises and explains every refusal; predictions and
dead-letter records encode and decode faithfully (also through the real broker)."""
from __future__ import annotations

import json
import math
import threading

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streammoe.service.deadletter import (
    HEADER_REASON,
    DeadLetterCounter,
    encode_dead_letter,
    parse_dead_letter_headers,
    send_dead_letter,
)
from streammoe.service.schema import (
    DeadLetter,
    DecodeLimits,
    Event,
    LabelMessage,
    Prediction,
    ReasonCode,
    decode_event,
    decode_label,
    encode_prediction,
)

R = ReasonCode


def _ev(**fields) -> bytes:
    body = {"id": "e1", "x": {"a": 1.5, "b": -2}}
    body.update(fields)
    return json.dumps(body).encode()


def test_valid_event_with_all_fields():
    ev = decode_event(b'{"id":"e1","x":{"a":1,"b":-2.5e3},"y":"cat","ts":1700000000.25,"key":"u9"}')
    assert isinstance(ev, Event)
    assert ev.id == "e1" and ev.x == {"a": 1.0, "b": -2500.0} and ev.y == "cat"
    assert ev.ts == 1700000000.25 and ev.key == "u9"
    assert all(type(v) is float for v in ev.x.values())


@pytest.mark.parametrize("label", [0, 7, -3, True, False, "spam", 2**63 - 1])
def test_supported_labels_keep_their_type(label):
    ev = decode_event(_ev(y=label))
    assert isinstance(ev, Event) and ev.y == label and type(ev.y) is type(label)


@pytest.mark.parametrize("raw, code", [
    (None, R.EMPTY),
    (b"", R.EMPTY),
    (b"\xff\xfe", R.MALFORMED_JSON),
    (b'{"id":"e1","x":{}', R.MALFORMED_JSON),
    (b'{"id":"e1","x":{}} trailing', R.MALFORMED_JSON),
    (b"[1, 2]", R.NOT_OBJECT),
    (b'"just a string"', R.NOT_OBJECT),
    (b'{"x":{"a":1}}', R.MISSING_FIELD),
    (b'{"id":"e1"}', R.MISSING_FIELD),
    (_ev(label=1), R.UNKNOWN_FIELD),
    (_ev(id=17), R.BAD_ID),
    (_ev(id=""), R.BAD_ID),
    (_ev(id="x" * 257), R.BAD_ID),
    (_ev(x=[1, 2]), R.BAD_FEATURES),
    (_ev(x=None), R.BAD_FEATURES),
    (b'{"id":"e1","x":{"a":NaN}}', R.NON_FINITE),
    (b'{"id":"e1","x":{"a":Infinity}}', R.NON_FINITE),
    (b'{"id":"e1","x":{"a":-Infinity}}', R.NON_FINITE),
    (b'{"id":"e1","x":{"a":1e400}}', R.NON_FINITE),
    (b'{"id":"e1","x":{"a":1' + b"0" * 400 + b"}}", R.NON_FINITE),
    (b'{"id":"e1","x":{"a":1' + b"0" * 4400 + b"}}", R.NON_FINITE),  # past int->str digit limit
    (_ev(x={"a": True}), R.BAD_FEATURE_VALUE),
    (_ev(x={"a": "z" * 257}), R.BAD_FEATURE_VALUE),  # a category longer than max_name_chars
    (_ev(x={"a": None}), R.BAD_FEATURE_VALUE),
    (_ev(x={"a": {"nested": 1}}), R.BAD_FEATURE_VALUE),
    (_ev(x={"a": [1]}), R.BAD_FEATURE_VALUE),
    (_ev(x={"": 1}), R.BAD_FEATURE_NAME),
    (_ev(x={"n" * 257: 1}), R.BAD_FEATURE_NAME),
    (_ev(y=1.5), R.BAD_LABEL),
    (_ev(y=1.0), R.BAD_LABEL),
    (_ev(y=[1]), R.BAD_LABEL),
    (_ev(y=2**63), R.BAD_LABEL),
    (_ev(y=""), R.BAD_LABEL),
    (_ev(y="l" * 257), R.BAD_LABEL),
    (_ev(ts="yesterday"), R.BAD_TIMESTAMP),
    (b'{"id":"e1","x":{"a":1},"ts":NaN}', R.BAD_TIMESTAMP),
    (_ev(ts=-1e308), R.BAD_TIMESTAMP),  # finite, but no clock: the latency would overflow
    (_ev(key=5), R.BAD_KEY),
    (_ev(key="k" * 257), R.BAD_KEY),
    (12345, R.MALFORMED_JSON),
])
def test_bad_events_become_dead_letters(raw, code):
    out = decode_event(raw, topic="events", partition=2, offset=41)
    assert isinstance(out, DeadLetter), out
    assert out.reason_code is code, (out.reason_code, out.reason)
    assert out.reason and len(out.reason) < 400
    assert (out.topic, out.partition, out.offset) == ("events", 2, 41)
    if isinstance(raw, bytes):
        assert out.raw == raw  # original bytes, untouched, for replay


def test_reason_messages_name_the_problem():
    assert "feature 'temp'" in decode_event(_ev(x={"temp": None})).reason
    assert "send 0 or 1" in decode_event(_ev(x={"flag": True})).reason
    assert "'label'" in decode_event(_ev(label=1)).reason
    assert "'x'" in decode_event(b'{"id":"e1"}').reason


def test_limits_are_configurable():
    limits = DecodeLimits(max_bytes=200, max_features=3, max_id_chars=4, allow_extra_fields=True)
    assert decode_event(_ev(x={"a": 1, "b": 2, "c": 3, "d": 4}), limits).reason_code is R.TOO_MANY_FEATURES
    assert decode_event(b" " * 201, limits).reason_code is R.OVERSIZED
    assert decode_event(_ev(id="abcde"), limits).reason_code is R.BAD_ID
    ev = decode_event(_ev(source="sensor-7"), limits)  # extra field ignored when allowed
    assert isinstance(ev, Event) and not hasattr(ev, "source")


def test_labels_topic_messages():
    msg = decode_label(b'{"id":"e1","y":3}')
    assert isinstance(msg, LabelMessage) and (msg.id, msg.y) == ("e1", 3)
    assert decode_label(b'{"id":"e1"}').reason_code is R.MISSING_FIELD
    assert decode_label(b'{"id":"e1","y":null}').reason_code is R.BAD_LABEL
    assert decode_label(b'{"id":"e1","y":0.5}').reason_code is R.BAD_LABEL
    assert decode_label(b'{"id":"e1","y":1,"x":{}}').reason_code is R.UNKNOWN_FIELD
    assert decode_label(b"{}", topic="labels", offset=3).offset == 3


def test_prediction_encoding_round_trip():
    raw = encode_prediction("e1", np.int64(1), {np.int64(0): np.float32(0.25), 1: 0.75}, np.int64(3), 42, 1.5)
    pred = Prediction.model_validate_json(raw)
    assert pred == Prediction(id="e1", y_pred=1, proba={"0": 0.25, "1": 0.75}, expert=3,
                              model_version=42, latency_ms=1.5)
    assert json.loads(encode_prediction("e2", True, {False: 0.1, True: 0.9}, None, "v1", 0.0))["proba"] == \
        {"false": 0.1, "true": 0.9}
    with pytest.raises(ValueError):
        encode_prediction("e3", 0, {0: float("nan")}, 0, 1, 0.0)


# --- fuzzing -------------------------------------------------------------------------

_json_leaf = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=12),
)
_json_any = st.recursive(
    _json_leaf,
    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=6), kids, max_size=4),
    max_leaves=20,
)
_event_like = st.fixed_dictionaries(
    {"id": st.one_of(st.text(max_size=8), _json_leaf),
     "x": st.one_of(st.dictionaries(st.text(max_size=6), _json_any, max_size=6), _json_any)},
    optional={"y": _json_any, "ts": _json_leaf, "key": _json_leaf, "extra": _json_leaf},
)


def _check_result(out):
    assert isinstance(out, (Event, DeadLetter))
    if isinstance(out, Event):
        assert isinstance(out.id, str) and 0 < len(out.id) <= 256
        assert all((type(v) is float and math.isfinite(v)) or (type(v) is str and len(v) <= 256)
                   for v in out.x.values())
        assert out.y is None or type(out.y) in (bool, int, str)
        assert out.ts is None or math.isfinite(out.ts)
    else:
        assert isinstance(out.reason_code, ReasonCode) and out.reason_code is not R.DECODE_ERROR
        assert isinstance(out.reason, str) and out.reason
        out.reason.encode("utf-8")  # safe to put in a Kafka header


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=300))
def test_fuzz_arbitrary_bytes_never_raise(raw):
    _check_result(decode_event(raw))
    assert isinstance(decode_label(raw), (LabelMessage, DeadLetter))


@settings(max_examples=300, deadline=None)
@given(_json_any)
def test_fuzz_arbitrary_json_never_raises(value):
    _check_result(decode_event(json.dumps(value).encode()))


@settings(max_examples=400, deadline=None)
@given(_event_like)
def test_fuzz_event_shaped_json_never_raises(value):
    _check_result(decode_event(json.dumps(value).encode()))


@settings(max_examples=200, deadline=None)
@given(
    st.text(min_size=1, max_size=20),
    st.dictionaries(st.text(min_size=1, max_size=10),
                    st.floats(allow_nan=False, allow_infinity=False) | st.integers(-(2**53), 2**53),
                    max_size=10),
    st.one_of(st.none(), st.booleans(), st.integers(-(2**63), 2**63 - 1), st.text(min_size=1, max_size=10)),
)
def test_valid_events_always_decode_to_what_was_sent(event_id, x, y):
    raw = json.dumps({"id": event_id, "x": x, "y": y}).encode()
    ev = decode_event(raw)
    assert isinstance(ev, Event), ev
    assert ev.id == event_id and ev.x == {k: float(v) for k, v in x.items()} and ev.y == y


# --- dead letters ----------------------------------------------------------------------

def test_dead_letter_record_headers_round_trip():
    dl = decode_event(b'{"id":"e1","x":{"a":null}}', topic="events", partition=1, offset=9)
    rec = encode_dead_letter(dl, now=1700000000.0)
    assert rec.value == b'{"id":"e1","x":{"a":null}}'
    meta = parse_dead_letter_headers(rec.headers)
    assert meta == {"reason": "bad_feature_value", "message": dl.reason, "topic": "events", "partition": 1,
                    "offset": 9, "dead_at_ms": 1700000000000, "truncated_from": None}


def test_dead_letter_tombstone_truncation_and_long_message():
    tomb = encode_dead_letter(decode_event(None))
    assert tomb.value == b"" and parse_dead_letter_headers(tomb.headers)["topic"] is None
    big = decode_event(b"x" * 5000, DecodeLimits(max_bytes=1000))
    rec = encode_dead_letter(big, max_value_bytes=100)
    assert rec.value == b"x" * 100 and parse_dead_letter_headers(rec.headers)["truncated_from"] == 5000
    long = DeadLetter(R.PROCESSING_ERROR, "é" * 5000, b"{}")
    msg = dict(encode_dead_letter(long).headers)["smoe.message"]
    assert len(msg) <= 1024 and msg.decode("utf-8").endswith("...")


def test_counter_counts_by_reason_across_threads():
    counter = DeadLetterCounter()
    dl = DeadLetter(R.NON_FINITE, "nan", b"{}")

    def work():
        for _ in range(1000):
            counter.add(dl)
            counter.add("oversized")

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    counter.add(R.EMPTY, 3)
    assert counter.counts() == {"non_finite": 4000, "oversized": 4000, "empty": 3}
    assert counter[R.NON_FINITE] == 4000 and counter["bad_id"] == 0 and counter.total() == 8003


def test_dead_letters_through_the_real_broker(kafka_broker, topic_factory):
    from kafka import KafkaProducer

    from streammoe.testing.services import read_topic

    dlq = topic_factory(prefix="dlq")
    bad = [b"not json", b'{"id":"e1","x":{"a":NaN}}', None]
    producer = KafkaProducer(bootstrap_servers=kafka_broker)
    try:
        for i, raw in enumerate(bad):
            send_dead_letter(producer, dlq, decode_event(raw, topic="events", partition=0, offset=i))
        producer.flush(10)
    finally:
        producer.close()
    records = read_topic(kafka_broker, dlq, 3, timeout=20)
    metas = [parse_dead_letter_headers(r.headers) for r in records]
    assert [m["reason"] for m in metas] == ["malformed_json", "non_finite", "empty"]
    assert [m["offset"] for m in metas] == [0, 1, 2]
    assert [r.value for r in records] == [b"not json", b'{"id":"e1","x":{"a":NaN}}', b""]
    assert all(dict(r.headers)[HEADER_REASON] for r in records)


# --- the orjson fast path equals the pydantic validators ----------------------------------
_json_scalars = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70),
                          st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=5))
_anything = st.dictionaries(st.sampled_from(["id", "x", "y", "ts", "key", "label"]),
                            st.one_of(_json_scalars, st.dictionaries(st.text(max_size=3), _json_scalars, max_size=3)),
                            max_size=6)
_plausible = st.fixed_dictionaries(
    {"id": st.text(min_size=0, max_size=5), "y": _json_scalars},
    optional={"x": st.dictionaries(st.text(max_size=3), st.one_of(st.floats(allow_nan=False, allow_infinity=False),
                                                                  st.integers(-2**70, 2**70)), max_size=4),
              "ts": st.one_of(st.floats(allow_nan=False, allow_infinity=False), st.integers(-2**70, 2**70)),
              "key": st.one_of(st.none(), st.text(max_size=3)), "label": st.integers()})


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(_anything, _plausible), st.booleans())
def test_the_fast_decoders_give_exactly_what_the_full_path_gives(body, extra):
    """Every message decodes to the same Event / LabelMessage (fields set included) or the same
    dead letter with the orjson fast path as with the pydantic path alone."""
    from streammoe.service import schema

    limits = DecodeLimits(allow_extra_fields=extra, max_id_chars=4, max_name_chars=2, max_label_chars=3)
    raw = json.dumps(body).encode()
    fast = [decode_event(raw, limits), decode_label(raw, limits)]
    saved = schema._fast_event, schema._fast_label_message
    schema._fast_event = schema._fast_label_message = lambda data, limits: None
    try:
        full = [decode_event(raw, limits), decode_label(raw, limits)]
    finally:
        schema._fast_event, schema._fast_label_message = saved
    for got, want in zip(fast, full):
        assert type(got) is type(want)
        if isinstance(want, DeadLetter):
            assert got == want
        else:
            assert got == want and got.model_fields_set == want.model_fields_set


def test_the_fast_decoders_take_plain_messages():
    """The fast path is used for the messages the daemon sees all day (else it buys nothing)."""
    from streammoe.service.schema import _fast_event, _fast_label_message

    limits = DecodeLimits()
    assert _fast_event(b'{"id":"e-1","x":{"x0":0.5,"x1":2},"ts":1700000000.25}', limits) is not None
    assert _fast_label_message(b'{"id":"e-1","y":1}', limits) is not None
