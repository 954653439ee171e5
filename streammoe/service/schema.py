"""Wire format of the daemon: input events, label messages, predictions, dead letters.

Input event (JSON object, UTF-8)::

    {"id": "e-17", "x": {"f0": 0.3, "f1": -2}, "y": 1, "ts": 1700000000.25, "key": "user-9"}

* ``id``   - non-empty string, unique per event; delayed labels refer to it.
* ``x``    - object ``feature name -> number | string`` (JSON integers become floats; a string
  is a category of a categorical feature, at most ``DecodeLimits.max_name_chars`` long).
* ``y``    - optional label: string, integer (int64 range) or boolean.  JSON floats are
  refused as labels (``1.0`` vs ``1`` would silently make two classes).
* ``ts``   - optional event time, unix seconds (latency is measured from it); at most
  ``1e20`` in magnitude, beyond which no clock reads and the latency would overflow.
* ``key``  - optional routing key (e.g. one model per key).

Label message (labels topic): ``{"id": "e-17", "y": 1}``.
Prediction (predictions topic): ``{"id", "y_pred", "proba", "expert", "model_version",
"latency_ms"}``; ``proba`` keys are the labels as JSON object keys, i.e. strings
(``1 -> "1"``, ``True -> "true"``).

Decoding never raises: anything that is not a valid event becomes a :class:`DeadLetter`
with a stable machine-readable :class:`ReasonCode` and a human message, so the daemon can
route it to the dead-letter topic and keep going.  Decisions worth knowing:

* ``NaN``/``Infinity`` tokens (which Python's ``json`` would accept) and numbers that
  overflow a double are refused (``non_finite``).
* Boolean feature values are refused (``bad_feature_value``): a feature is a number, and a
  producer sending ``true`` usually has a schema bug; send ``0``/``1`` instead.
* Nested objects/arrays and ``null`` as feature values are refused (``bad_feature_value``), and
  so are strings longer than ``max_name_chars``.
* Unknown top-level fields are refused (``unknown_field``) unless
  ``DecodeLimits.allow_extra_fields`` - a typo such as ``"label"`` for ``"y"`` must not
  silently turn a labelled event into an unlabelled one.
* Duplicate keys inside one JSON object follow the parser: the last one wins.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from enum import Enum
from typing import Any, Optional, Union

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError

__all__ = [
    "ReasonCode", "DecodeLimits", "Event", "LabelMessage", "Prediction", "DeadLetter",
    "Label", "decode_event", "decode_label", "encode_prediction",
]

#: A class label as it travels in JSON.
Label = Union[bool, int, str]

_INT64 = 2**63
#: Largest accepted |ts|: any unix time (even in nanoseconds by mistake) is far below it, and
#: beyond ~1e305 the latency in ms is not a finite number - the prediction could not be sent
#: after the model had learned the event.
_MAX_TS = 1e20


class ReasonCode(str, Enum):
    """Why a message went to the dead-letter topic.  Values are stable: dashboards and
    alerts key on them.  The first group is produced by the decoder, the second by the
    daemon after decoding."""

    OVERSIZED = "oversized"                  # message larger than DecodeLimits.max_bytes
    EMPTY = "empty"                          # null (tombstone) or zero-length value
    MALFORMED_JSON = "malformed_json"        # not UTF-8 JSON, trailing garbage, ...
    NOT_OBJECT = "not_object"                # valid JSON but not an object
    MISSING_FIELD = "missing_field"          # "id" or "x" (event) / "id" or "y" (label) absent
    UNKNOWN_FIELD = "unknown_field"          # top-level field outside the schema
    BAD_ID = "bad_id"                        # id not a string, empty, or too long
    BAD_FEATURES = "bad_features"            # "x" is not an object
    TOO_MANY_FEATURES = "too_many_features"  # more than DecodeLimits.max_features
    BAD_FEATURE_NAME = "bad_feature_name"    # empty or too long feature name
    BAD_FEATURE_VALUE = "bad_feature_value"  # bool / null / nested value / too long a string
    NON_FINITE = "non_finite"                # NaN, +-Infinity, or overflowing number
    BAD_LABEL = "bad_label"                  # label of unsupported type / range / length
    BAD_TIMESTAMP = "bad_timestamp"          # "ts" not a finite number
    BAD_KEY = "bad_key"                      # "key" not a string or too long
    DECODE_ERROR = "decode_error"            # unexpected decoder failure (a bug; never seen)
    # --- raised by the daemon after decoding -------------------------------------------
    WRONG_FEATURES = "wrong_features"        # feature set differs from the model's
    UNKNOWN_LABEL = "unknown_label"          # label value the model cannot accept
    UNKNOWN_EVENT_ID = "unknown_event_id"    # delayed label for an id that is not pending
    LABEL_TIMEOUT = "label_timeout"          # pending event's label did not come in time
    PENDING_EVICTED = "pending_evicted"      # pending event dropped by the count bound
    EARLY_LABEL_EVICTED = "early_label_evicted"  # label waiting for its event dropped by a bound / the TTL
    TOO_MANY_KEYS = "too_many_keys"          # event of a new key beyond serve.max_keys_per_partition
    PROCESSING_ERROR = "processing_error"    # the model refused the event (message says why)


class DecodeLimits(BaseModel):
    """Bounds applied while decoding; each violation has its own reason code."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_bytes: int = Field(1_048_576, gt=0, description="largest accepted message, bytes")
    max_features: int = Field(10_000, gt=0, description="most features per event")
    max_id_chars: int = Field(256, gt=0, description="longest event id")
    max_name_chars: int = Field(256, gt=0, description="longest feature name / categorical value / routing key")
    max_label_chars: int = Field(256, gt=0, description="longest string label")
    allow_extra_fields: bool = Field(False, description="ignore unknown top-level fields instead of refusing")


_STRICT = ConfigDict(strict=True, extra="forbid", allow_inf_nan=False)


class Event(BaseModel):
    """An input event (see the module docstring for the format)."""

    model_config = _STRICT

    id: str
    x: dict[str, Union[float, str]]
    y: Optional[Label] = None
    ts: Optional[float] = None
    key: Optional[str] = None


class _EventIgnoringExtra(Event):
    model_config = ConfigDict(strict=True, extra="ignore", allow_inf_nan=False)


class LabelMessage(BaseModel):
    """A delayed label: ``y`` for the event ``id`` seen earlier on the input topic."""

    model_config = _STRICT

    id: str
    y: Label


class _LabelIgnoringExtra(LabelMessage):
    model_config = ConfigDict(strict=True, extra="ignore", allow_inf_nan=False)


class Prediction(BaseModel):
    """A prediction as written to the predictions topic (for consumers and tests;
    the daemon writes it with the faster :func:`encode_prediction`)."""

    model_config = ConfigDict(extra="forbid")

    id: str
    y_pred: Optional[Label]
    proba: dict[str, float]
    expert: Optional[int]
    model_version: Union[int, str]
    latency_ms: float


@dataclass(frozen=True)
class DeadLetter:
    """A message that could not be used, with why and where it came from.

    ``raw`` is the original value, byte for byte (``None`` for a tombstone), so the
    dead-letter topic can be replayed once the producer is fixed.
    """

    reason_code: ReasonCode
    reason: str
    raw: Optional[bytes]
    topic: Optional[str] = None
    partition: Optional[int] = None
    offset: Optional[int] = None


# --- decoding ----------------------------------------------------------------------------

_JSON_TYPE = {"float": "a number", "int": "an integer", "str": "a string", "bool": "a boolean",
              "dict": "an object", "list": "an array", "NoneType": "null"}

_EVENT_FIELDS = "id, x, y, ts, key"
_LABEL_FIELDS = "id, y"


def _json_type(value: Any) -> str:
    return _JSON_TYPE.get(type(value).__name__, type(value).__name__)


def _short(name: Any, limit: int = 64) -> str:
    text = str(name)
    return repr(text if len(text) <= limit else text[:limit] + "...")


def _non_finite(value: Any) -> str:
    """Describe a number that failed the finiteness check without printing huge integers
    (their repr can be thousands of digits, or even raise)."""
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, int):
        return "an integer too large for a double"
    return _json_type(value)


def _classify(err: dict[str, Any], fields: str) -> tuple[ReasonCode, str]:
    """Map the first pydantic error to a reason code and a readable message."""
    etype, loc = err.get("type", ""), tuple(err.get("loc", ()))
    value = err.get("input")
    if etype == "json_invalid":
        msg = str(err.get("ctx", {}).get("error", err.get("msg", "invalid JSON")))
        if "out of range" in msg:
            return ReasonCode.NON_FINITE, f"a number does not fit a double: {msg}"
        return ReasonCode.MALFORMED_JSON, f"not valid UTF-8 JSON: {msg}"
    if not loc:
        return ReasonCode.NOT_OBJECT, f"message must be a JSON object, got {_json_type(value)}"
    head = loc[0]
    if etype == "missing":
        return ReasonCode.MISSING_FIELD, f"required field {head!r} is missing"
    if etype == "extra_forbidden":
        return ReasonCode.UNKNOWN_FIELD, f"unknown top-level field {_short(head)} (allowed: {fields})"
    if head == "id":
        return ReasonCode.BAD_ID, f"id must be a string, got {_json_type(value)}"
    if head == "x":
        if len(loc) == 1:
            return ReasonCode.BAD_FEATURES, f"x must be an object of feature -> number, got {_json_type(value)}"
        name = _short(loc[1])
        if etype == "finite_number":
            return ReasonCode.NON_FINITE, f"feature {name} is {_non_finite(value)}; features must be finite"
        if isinstance(value, bool):
            return ReasonCode.BAD_FEATURE_VALUE, f"feature {name} is a boolean; send 0 or 1"
        return ReasonCode.BAD_FEATURE_VALUE, f"feature {name} must be a number or a string, got {_json_type(value)}"
    if head == "y":
        return ReasonCode.BAD_LABEL, f"label y must be a string, an integer or a boolean, got {_json_type(value)}"
    if head == "ts":
        shown = _non_finite(value) if etype == "finite_number" else _json_type(value)
        return ReasonCode.BAD_TIMESTAMP, f"ts must be a finite number (unix seconds), got {shown}"
    if head == "key":
        return ReasonCode.BAD_KEY, f"key must be a string, got {_json_type(value)}"
    return ReasonCode.DECODE_ERROR, f"{'.'.join(map(str, loc))}: {err.get('msg', etype)}"


def _check_label(y: Any, limits: DecodeLimits) -> Optional[str]:
    if type(y) is int and not -_INT64 <= y < _INT64:
        return "integer label y is outside the int64 range"
    if type(y) is str and not 0 < len(y) <= limits.max_label_chars:
        return f"string label y must have 1..{limits.max_label_chars} characters, has {len(y)}"
    return None


def _as_bytes(raw: Any) -> tuple[Optional[bytes], Optional[str]]:
    """Normalise the Kafka value to bytes; the second item explains a refusal."""
    if raw is None:
        return None, None
    if isinstance(raw, bytes):
        return raw, None
    if isinstance(raw, (bytearray, memoryview)):
        return bytes(raw), None
    if isinstance(raw, str):
        return raw.encode("utf-8", "surrogatepass"), None
    return None, f"message value must be bytes, got {type(raw).__name__}"


def _prelude(raw: Any, limits: DecodeLimits, where: dict[str, Any]):
    """Checks shared by events and labels: type, emptiness, size.  Returns (bytes, DeadLetter|None)."""
    data, problem = _as_bytes(raw)
    if problem:
        return None, DeadLetter(ReasonCode.MALFORMED_JSON, problem, None, **where)
    if not data:
        return data, DeadLetter(ReasonCode.EMPTY, "message value is empty (null or zero bytes)", data, **where)
    if len(data) > limits.max_bytes:
        return data, DeadLetter(ReasonCode.OVERSIZED,
                                f"message has {len(data)} bytes, limit is {limits.max_bytes}", data, **where)
    return data, None


def _where(err: dict[str, Any]) -> tuple:
    """Location an error is about: the feature for ``x`` errors, else the top-level field
    (a failed union such as the label reports one error per alternative at one location)."""
    loc = tuple(err.get("loc", ()))
    return loc[:2] if loc[:1] == ("x",) else loc[:1]


def _validation_dead_letter(exc: ValidationError, data: bytes, fields: str, where: dict[str, Any]) -> DeadLetter:
    errors = exc.errors(include_url=False)
    code, msg = _classify(errors[0], fields) if errors else (ReasonCode.DECODE_ERROR, str(exc))
    # A union failure (label) reports one error per alternative; count distinct locations.
    others = len({_where(e) for e in errors[1:]} - {_where(errors[0])}) if errors else 0
    if others:
        msg += f" (and {others} more problem{'s' if others > 1 else ''})"
    return DeadLetter(code, msg, data, **where)


def _decode(raw: Any, limits: DecodeLimits | None, where: dict, strict: type, lenient: type,
            fields: frozenset, check) -> Any:
    """The decoding steps both message kinds share; ``check(message, data)`` adds the kind's own
    rules and returns a :class:`DeadLetter` or ``None``.  Never raises."""
    limits = limits or _DEFAULT_LIMITS
    data = None
    try:
        data, dead = _prelude(raw, limits, where)
        if dead:
            return dead
        model = lenient if limits.allow_extra_fields else strict
        try:
            msg = model.model_validate_json(data)
        except ValidationError as exc:
            return _validation_dead_letter(exc, data, fields, where)
        if not 0 < len(msg.id) <= limits.max_id_chars:
            return DeadLetter(ReasonCode.BAD_ID, f"id must have 1..{limits.max_id_chars} characters, "
                              f"has {len(msg.id)}", data, **where)
        return check(msg, data, limits) or msg
    except Exception as exc:  # pragma: no cover - a decoder bug must not stop the daemon
        return DeadLetter(ReasonCode.DECODE_ERROR, f"unexpected decoder failure: {exc!r}",
                          data if isinstance(data, bytes) else None, **where)


# --- the fast path ------------------------------------------------------------------------
# Most messages are well formed.  For them, orjson plus a few type checks give the same Event /
# LabelMessage as the pydantic validators at a fraction of the cost; anything the fast path is
# not sure about (every failure, and shapes it does not handle) goes to the full path, which
# alone decides reason codes and messages.

_EVENT_KEYS = frozenset(("id", "x", "y", "ts", "key"))
_new_object = object.__new__
_set_attr = object.__setattr__


def _construct(cls: type, fields_set: set, values: dict) -> Any:
    """``cls.model_construct(fields_set, **values)`` without its per-field loop (about 4x faster):
    the same four attributes it sets for a model without extras, private attributes or
    post-init hooks (checked below for the four classes it is used with)."""
    m = _new_object(cls)
    _set_attr(m, "__dict__", values)
    _set_attr(m, "__pydantic_fields_set__", fields_set)
    _set_attr(m, "__pydantic_extra__", None)
    _set_attr(m, "__pydantic_private__", None)
    return m
_LABEL_KEYS = frozenset(("id", "y"))
_loads = orjson.loads
_JSONError = orjson.JSONDecodeError


def _fast_label(y: Any, limits: DecodeLimits) -> bool:
    t = type(y)
    if t is int:
        return -_INT64 <= y < _INT64
    if t is str:
        return 0 < len(y) <= limits.max_label_chars
    return t is bool


def _fast_object(data: Any, limits: DecodeLimits, field: str) -> Optional[dict]:
    """The JSON object of a message within the size bound that has ``id`` and ``field``, or ``None``."""
    if type(data) is not bytes or not data or len(data) > limits.max_bytes:
        return None
    try:
        d = _loads(data)
    except _JSONError:
        return None
    if type(d) is not dict or "id" not in d or field not in d:
        return None
    return d


def _fast_id(eid: Any, limits: DecodeLimits) -> bool:
    return type(eid) is str and 0 < len(eid) <= limits.max_id_chars


def _fast_event(data: Any, limits: DecodeLimits) -> Optional[Event]:
    """The :class:`Event` of a plainly valid message, or ``None`` (take the full path)."""
    d = _fast_object(data, limits, "x")
    if d is None:
        return None
    keys = d.keys()
    if not keys <= _EVENT_KEYS:
        if not limits.allow_extra_fields:
            return None
        keys = keys & _EVENT_KEYS
    eid, x = d["id"], d["x"]
    if not _fast_id(eid, limits) or type(x) is not dict:
        return None
    if len(x) > limits.max_features:
        return None
    max_name = limits.max_name_chars
    for k, v in x.items():
        tv = type(v)
        if tv is float:
            if not _finite(v):
                return None
        elif tv is int:
            x[k] = float(v)
        else:
            return None
        if not 0 < len(k) <= max_name:
            return None
    y = d.get("y")
    if y is not None and not _fast_label(y, limits):
        return None
    ts = d.get("ts")
    if ts is not None:
        if type(ts) is int:
            ts = float(ts)
        elif type(ts) is not float:
            return None
        if not -_MAX_TS <= ts <= _MAX_TS:
            return None
    key = d.get("key")
    if key is not None and (type(key) is not str or len(key) > max_name):
        return None
    cls = _EventIgnoringExtra if limits.allow_extra_fields else Event  # the class the full path returns
    return _construct(cls, set(keys), {"id": eid, "x": x, "y": y, "ts": ts, "key": key})


def _fast_label_message(data: Any, limits: DecodeLimits) -> Optional[LabelMessage]:
    """The :class:`LabelMessage` of a plainly valid message, or ``None`` (take the full path)."""
    d = _fast_object(data, limits, "y")
    if d is None:
        return None
    if len(d) != 2 and not limits.allow_extra_fields:
        return None
    eid, y = d["id"], d["y"]
    if not _fast_id(eid, limits) or y is None or not _fast_label(y, limits):
        return None
    cls = _LabelIgnoringExtra if limits.allow_extra_fields else LabelMessage
    return _construct(cls, set(_LABEL_KEYS), {"id": eid, "y": y})


for _cls in (Event, _EventIgnoringExtra, LabelMessage, _LabelIgnoringExtra):  # what _construct relies on
    assert not _cls.__pydantic_post_init__ and not _cls.__private_attributes__ and \
        _cls.model_config.get("extra") != "allow", _cls


def decode_event(raw: Any, limits: DecodeLimits | None = None, *, topic: str | None = None,
                 partition: int | None = None, offset: int | None = None) -> Event | DeadLetter:
    """Decode one input-topic value into an :class:`Event`, or explain why not.

    Never raises: every failure (including unexpected ones) becomes a :class:`DeadLetter`
    carrying the original bytes and ``topic``/``partition``/``offset`` for the DLQ record.
    """
    try:
        ev = _fast_event(raw, limits or _DEFAULT_LIMITS)
    except Exception:  # pragma: no cover - the full path below explains any failure
        ev = None
    if ev is not None:
        return ev
    where = {"topic": topic, "partition": partition, "offset": offset}

    def check(ev: Event, data: bytes, limits: DecodeLimits) -> DeadLetter | None:
        x = ev.x
        if len(x) > limits.max_features:
            return DeadLetter(ReasonCode.TOO_MANY_FEATURES, f"event has {len(x)} features, limit is "
                              f"{limits.max_features}", data, **where)
        if x and ("" in x or max(map(len, x)) > limits.max_name_chars):
            bad = next(k for k in x if not 0 < len(k) <= limits.max_name_chars)
            return DeadLetter(ReasonCode.BAD_FEATURE_NAME, f"feature name {_short(bad)} must have "
                              f"1..{limits.max_name_chars} characters", data, **where)
        for name, value in x.items():
            if type(value) is str and len(value) > limits.max_name_chars:
                return DeadLetter(ReasonCode.BAD_FEATURE_VALUE, f"categorical value of feature {_short(name)} "
                                  f"has {len(value)} characters, limit is {limits.max_name_chars}", data, **where)
        if ev.y is not None:
            problem = _check_label(ev.y, limits)
            if problem:
                return DeadLetter(ReasonCode.BAD_LABEL, problem, data, **where)
        if ev.ts is not None and not -_MAX_TS <= ev.ts <= _MAX_TS:
            return DeadLetter(ReasonCode.BAD_TIMESTAMP, f"ts is {ev.ts!r}, beyond +-{_MAX_TS:g} unix seconds",
                              data, **where)
        if ev.key is not None and len(ev.key) > limits.max_name_chars:
            return DeadLetter(ReasonCode.BAD_KEY, f"key must have at most {limits.max_name_chars} "
                              f"characters, has {len(ev.key)}", data, **where)
        return None

    return _decode(raw, limits, where, Event, _EventIgnoringExtra, _EVENT_FIELDS, check)


def decode_label(raw: Any, limits: DecodeLimits | None = None, *, topic: str | None = None,
                 partition: int | None = None, offset: int | None = None) -> LabelMessage | DeadLetter:
    """Decode one labels-topic value into a :class:`LabelMessage`, or explain why not.
    Never raises (same contract as :func:`decode_event`)."""
    try:
        msg = _fast_label_message(raw, limits or _DEFAULT_LIMITS)
    except Exception:  # pragma: no cover - the full path below explains any failure
        msg = None
    if msg is not None:
        return msg
    where = {"topic": topic, "partition": partition, "offset": offset}

    def check(msg: LabelMessage, data: bytes, limits: DecodeLimits) -> DeadLetter | None:
        problem = _check_label(msg.y, limits)
        return DeadLetter(ReasonCode.BAD_LABEL, problem, data, **where) if problem else None

    return _decode(raw, limits, where, LabelMessage, _LabelIgnoringExtra, _LABEL_FIELDS, check)


_DEFAULT_LIMITS = DecodeLimits()


# --- encoding ----------------------------------------------------------------------------

def _label_key(label: Any) -> str:
    if hasattr(label, "item"):  # numpy scalar
        label = label.item()
    if isinstance(label, bool):
        return "true" if label else "false"
    return str(label)


def encode_prediction(event_id: str, y_pred: Any, proba: dict[Any, float], expert: int | None,
                      model_version: int | str, latency_ms: float) -> bytes:
    """JSON bytes of one prediction (the :class:`Prediction` format).

    Encoded with orjson (several times faster than the stdlib encoder; floats are written in
    their shortest round-trip form, so they read back identical).  Raises ``ValueError`` if a
    probability or the latency is NaN/inf (the model produced garbage; the daemon reports that
    as ``processing_error``) - orjson would write ``null`` instead of refusing.
    """
    if hasattr(y_pred, "item"):  # numpy scalar -> Python scalar
        y_pred = y_pred.item()
    probs = {_label_key(k): float(v) for k, v in proba.items()}
    latency = float(latency_ms)
    if not all(map(_finite, probs.values())) or not _finite(latency):
        raise ValueError(f"prediction of {event_id!r} is not finite: proba {probs}, latency_ms {latency}")
    body = {
        "id": event_id,
        "y_pred": y_pred,
        "proba": probs,
        "expert": None if expert is None else int(expert),
        "model_version": model_version,
        "latency_ms": latency,
    }
    return orjson.dumps(body)


_finite = math.isfinite
