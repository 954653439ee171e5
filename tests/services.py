"""Small helpers for tests that talk to the session's real broker and Redis.

The services themselves are started by fixtures in ``conftest.py`` (via
:mod:`streammoe.testing.services`); these helpers give each test its own names so tests
sharing one broker / one redis-server never see each other's data.
"""
from __future__ import annotations

import itertools
import json
import time
from typing import Callable

from kafka.consumer.fetcher import ConsumerRecord

from streammoe.testing.progress import wait_progressing
from streammoe.testing.services import TEST_CONSUMER_CONFIG

__all__ = ["TEST_CONSUMER_CONFIG", "unique_name", "wait_until", "wait_progressing", "consume_in_group"]

_counter = itertools.count(1)


def unique_name(prefix: str = "t") -> str:
    """A name not used before in this test session (topics, groups, model names)."""
    return f"{prefix}-{next(_counter)}"


def wait_until(predicate: Callable[[], bool], timeout: float = 30.0, interval: float = 0.05) -> bool:
    """Poll ``predicate`` until it is true or ``timeout`` seconds pass; returns its last value."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(interval)


def consume_in_group(bootstrap: str, topic: str, group: str, n: int, timeout: float = 30.0) -> list:
    """Join consumer group ``group`` on ``topic`` (with the fast test timeouts), read until
    ``n`` records arrived or ``timeout`` passed, commit, leave; returns the records."""
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=group,
                             auto_offset_reset="earliest", enable_auto_commit=False,
                             **TEST_CONSUMER_CONFIG)
    got: list = []
    try:
        deadline = time.monotonic() + timeout
        while len(got) < n and time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=200).values():
                got.extend(records)
        if got:
            consumer.commit()
    finally:
        consumer.close()
    return got


def rec(topic: str, offset: int, ts_ms: int, value, partition: int = 0, key: bytes | None = None) -> ConsumerRecord:
    """A record as kafka-python's consumer hands it to the daemon (for partition-owner tests)."""
    size = len(value) if value is not None else -1
    return ConsumerRecord(topic, partition, -1, offset, ts_ms, 0, key, value, [], None, -1, size, -1)


class ListSink:
    """Collects what a partition owner produces (the daemon sends it to Kafka instead)."""

    def __init__(self):
        self.predictions: list[dict] = []
        self.letters: list = []

    def prediction(self, partition, key, value, latency_s):
        self.predictions.append(json.loads(value))

    def dead(self, dl, key=None):
        self.letters.append(dl)
