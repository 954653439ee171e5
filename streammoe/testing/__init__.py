"""Helpers that start real local services (a Kafka-compatible broker, redis-server).

Used by the test suite, the examples and the benchmarks, so all of them run against the
same real software instead of mocks.  Nothing here is needed in production.
"""
from .services import (
    TEST_CONSUMER_CONFIG,
    RedisClusterServers,
    RedisServer,
    RedisUser,
    S3Server,
    ServiceError,
    TansuBroker,
    create_topics,
    find_redis_server,
    find_tansu,
    free_port,
    produce_values,
    read_topic,
    redis_supports_tls,
)
from .tls import TLSFiles, make_tls_files

__all__ = [
    "TEST_CONSUMER_CONFIG", "RedisClusterServers", "RedisServer", "RedisUser", "S3Server", "ServiceError",
    "TLSFiles", "make_tls_files",
    "redis_supports_tls", "TansuBroker", "create_topics",
    "find_redis_server", "find_tansu", "free_port", "produce_values", "read_topic",
]
