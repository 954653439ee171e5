"""Dead-letter records: the original bytes plus headers saying why and where from.

The record value is the refused message byte for byte, so the topic can be replayed into
the input topic once the producer is fixed; everything about the refusal travels in Kafka
headers (all UTF-8 strings), which keeps the value untouched:

=======================  ====================================================
``smoe.reason``          stable reason code (:class:`~.schema.ReasonCode` value)
``smoe.message``         human-readable explanation (at most 1 KiB)
``smoe.source.topic``    topic the message was read from (absent if unknown)
``smoe.source.partition`` its partition
``smoe.source.offset``   its offset
``smoe.dead_at_ms``      when it was dead-lettered, unix milliseconds
``smoe.truncated_from``  original size, only when the value had to be cut
=======================  ====================================================

:class:`DeadLetterCounter` counts refusals by reason code so the daemon can expose them
(metrics, logs) - nothing is dropped without being counted.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Optional

from .schema import DeadLetter, ReasonCode

__all__ = [
    "DeadLetterRecord", "DeadLetterCounter", "encode_dead_letter", "parse_dead_letter_headers",
    "send_dead_letter", "HEADER_REASON", "HEADER_MESSAGE", "HEADER_TOPIC", "HEADER_PARTITION",
    "HEADER_OFFSET", "HEADER_DEAD_AT", "HEADER_TRUNCATED_FROM", "MAX_MESSAGE_BYTES",
]

HEADER_REASON = "smoe.reason"
HEADER_MESSAGE = "smoe.message"
HEADER_TOPIC = "smoe.source.topic"
HEADER_PARTITION = "smoe.source.partition"
HEADER_OFFSET = "smoe.source.offset"
HEADER_DEAD_AT = "smoe.dead_at_ms"
HEADER_TRUNCATED_FROM = "smoe.truncated_from"

#: Longest explanation carried in a header (longer ones are cut, with an ellipsis).
MAX_MESSAGE_BYTES = 1024


@dataclass(frozen=True)
class DeadLetterRecord:
    """What to produce to the dead-letter topic (kafka-python ``send`` arguments)."""

    value: bytes
    headers: list[tuple[str, bytes]]
    key: Optional[bytes] = None


def _truncate_utf8(text: str, limit: int) -> bytes:
    data = text.encode("utf-8", "replace")
    if len(data) <= limit:
        return data
    return data[: limit - 3].decode("utf-8", "ignore").encode() + b"..."


def encode_dead_letter(dl: DeadLetter, *, key: bytes | None = None, now: float | None = None,
                       max_value_bytes: int | None = None) -> DeadLetterRecord:
    """Build the DLQ record for ``dl``.  A tombstone (``raw is None``) becomes an empty
    value, since Kafka producers need a key or a value.  With ``max_value_bytes`` (set it
    below the producer's ``max_request_size``), a longer value - typically an ``oversized``
    message - is cut to that length and ``smoe.truncated_from`` records its real size, so
    the refusal is still recorded instead of failing to produce."""
    code = dl.reason_code.value if isinstance(dl.reason_code, ReasonCode) else str(dl.reason_code)
    headers = [
        (HEADER_REASON, code.encode()),
        (HEADER_MESSAGE, _truncate_utf8(dl.reason, MAX_MESSAGE_BYTES)),
    ]
    if dl.topic is not None:
        headers.append((HEADER_TOPIC, dl.topic.encode("utf-8", "replace")))
    if dl.partition is not None:
        headers.append((HEADER_PARTITION, str(int(dl.partition)).encode()))
    if dl.offset is not None:
        headers.append((HEADER_OFFSET, str(int(dl.offset)).encode()))
    stamp = time.time() if now is None else now
    headers.append((HEADER_DEAD_AT, str(int(stamp * 1000)).encode()))
    value = dl.raw if dl.raw is not None else b""
    if max_value_bytes is not None and len(value) > max_value_bytes:
        headers.append((HEADER_TRUNCATED_FROM, str(len(value)).encode()))
        value = value[:max_value_bytes]
    return DeadLetterRecord(value=value, headers=headers, key=key)


def parse_dead_letter_headers(headers: Iterable[tuple[str, bytes]]) -> dict[str, Any]:
    """Read back the headers of a DLQ record: ``{"reason", "message", "topic", "partition",
    "offset", "dead_at_ms", "truncated_from"}`` (missing ones are ``None``; numbers as ``int``)."""
    raw = {k: v for k, v in headers}

    def text(name: str) -> Optional[str]:
        return raw[name].decode("utf-8", "replace") if name in raw and raw[name] is not None else None

    def number(name: str) -> Optional[int]:
        value = text(name)
        return int(value) if value is not None and value.lstrip("-").isdigit() else None

    return {
        "reason": text(HEADER_REASON),
        "message": text(HEADER_MESSAGE),
        "topic": text(HEADER_TOPIC),
        "partition": number(HEADER_PARTITION),
        "offset": number(HEADER_OFFSET),
        "dead_at_ms": number(HEADER_DEAD_AT),
        "truncated_from": number(HEADER_TRUNCATED_FROM),
    }


def send_dead_letter(producer: Any, topic: str, dl: DeadLetter, *, key: bytes | None = None,
                     max_value_bytes: int | None = None):
    """Produce ``dl`` to ``topic`` with a kafka-python ``KafkaProducer``; returns its future
    (the caller flushes together with its predictions)."""
    rec = encode_dead_letter(dl, key=key, max_value_bytes=max_value_bytes)
    return producer.send(topic, value=rec.value, key=rec.key, headers=rec.headers)


class DeadLetterCounter:
    """Thread-safe counts of dead letters by reason code (e.g. for Prometheus/logs)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[str, int] = {}

    def add(self, what: DeadLetter | ReasonCode | str, n: int = 1) -> None:
        """Count ``n`` refusals of the given reason (a DeadLetter, a code, or its value)."""
        if isinstance(what, DeadLetter):
            what = what.reason_code
        code = what.value if isinstance(what, ReasonCode) else str(what)
        with self._lock:
            self._counts[code] = self._counts.get(code, 0) + n

    def counts(self) -> dict[str, int]:
        """A snapshot ``reason code -> count`` (only codes seen so far)."""
        with self._lock:
            return dict(self._counts)

    def total(self) -> int:
        with self._lock:
            return sum(self._counts.values())

    def __getitem__(self, code: ReasonCode | str) -> int:
        key = code.value if isinstance(code, ReasonCode) else str(code)
        with self._lock:
            return self._counts.get(key, 0)

    def merge(self, counts: Mapping[str, int]) -> None:
        """Add counts from another source (e.g. restored from a checkpoint)."""
        with self._lock:
            for code, n in counts.items():
                self._counts[code] = self._counts.get(code, 0) + int(n)
