"""Helpers that start real local services (a Kafka-compatible broker, redis-server).

Used by the test suite, the examples and the benchmarks, so all of them run against the
same real software instead of mocks.  Nothing here is needed in production.
"""
from .services import (
    TEST_CONSUMER_CONFIG,
    RedisServer,
    S3Server,
    ServiceError,
    TansuBroker,
    create_topics,
    find_redis_server,
    find_tansu,
    free_port,
    produce_values,
    read_topic,
)

__all__ = [
    "TEST_CONSUMER_CONFIG", "RedisServer", "S3Server", "ServiceError", "TansuBroker", "create_topics",
    "find_redis_server", "find_tansu", "free_port", "produce_values", "read_topic",
]
