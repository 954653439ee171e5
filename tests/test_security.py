"""Security on real servers: Redis with a least-privilege ACL user behind mutual TLS, the
connections it refuses (and the reasons the daemon gives), ``streammoe serve`` end to end on
that Redis and the Tansu broker, and HMAC-signed state that a restarted daemon refuses -
without loading, resetting or overwriting it - when a byte was flipped or the key is wrong.

The TLS tests need a redis-server built with TLS (Debian's; ``.ci/run`` installs it) and
skip with that reason otherwise.  Kafka SASL/SSL cannot be run here (Tansu has neither);
its settings are unit-tested in ``tests/test_settings.py``."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import redis
from test_daemon import PARAMS, make_topics, offline_partition, processed, produce, settings, stopped

from services import unique_name, wait_until
from streammoe.connectors import open_source
from streammoe.service.daemon import Daemon, make_store
from streammoe.service.settings import RedisSettings, Settings
from streammoe.state.codec import state_digest
from streammoe.state.redis_store import RedisStore, StoreUnavailableError
from streammoe.testing import RedisUser, make_tls_files, read_topic

REPO = Path(__file__).resolve().parents[1]
PASSWORD = "s3cret-acl-pass"
HMAC_KEY = "0123456789abcdef-daemon-key"
#: What the daemon needs and nothing more: its own keys, no admin or dangerous commands.
DAEMON_ACL = "~smoe:* +@all -@dangerous"


@pytest.fixture(scope="module")
def secure_redis(redis_factory, redis_tls_binary, tls_files):
    """TLS only (plain port closed), client certificates required, default user off, one
    ACL user limited to the ``smoe:*`` keys."""
    return redis_factory(binary=redis_tls_binary, tls=tls_files, tls_auth_clients="yes",
                         users=[RedisUser("streammoe", PASSWORD, DAEMON_ACL)])


def secure(server, tls_files, **changes) -> dict:
    """The ``[redis]`` settings of a daemon connecting to ``server`` (``changes`` override)."""
    r = dict(url=server.plain_url, username="streammoe", password=PASSWORD, ssl_ca_certs=str(tls_files.ca_cert),
             ssl_certfile=str(tls_files.client_cert), ssl_keyfile=str(tls_files.client_key))
    r.update(changes)
    return {k: v for k, v in r.items() if v is not None}


@pytest.mark.parametrize("change, reason", [
    ({"username": None, "password": None}, "requires a password"),
    ({"password": "wrong-password"}, "rejected the credentials"),
    ({"url": "PLAIN", "ssl_ca_certs": None, "ssl_certfile": None, "ssl_keyfile": None}, "use a rediss:// URL"),
    ({"ssl_ca_certs": "OTHER_CA"}, "not signed by a CA this client trusts"),
    ({"ssl_certfile": None, "ssl_keyfile": None}, "may require a client certificate"),
])
def test_redis_refuses_clients_without_credentials_tls_or_trusted_certificates(secure_redis, tls_files, tmp_path,
                                                                               change, reason):
    if change.get("url") == "PLAIN":
        change["url"] = secure_redis.plain_url.replace("rediss://", "redis://")
    if change.get("ssl_ca_certs") == "OTHER_CA":
        change["ssl_ca_certs"] = str(make_tls_files(tmp_path / "other").ca_cert)
    s = Settings.load(redis=secure(secure_redis, tls_files, **change, socket_timeout_s=3.0))
    with pytest.raises(StoreUnavailableError, match=reason) as info:
        make_store(s)
    assert PASSWORD not in str(info.value) and "wrong-password" not in str(info.value)


def test_store_works_for_a_least_privilege_acl_user_over_mutual_tls(secure_redis, tls_files):
    store = make_store(Settings.load(redis=secure(secure_redis, tls_files, hmac_key=HMAC_KEY)))
    name = unique_name("acl")
    epoch = store.claim(name)
    store.commit(name, {"meta": b"{}", "expert/0": b"\x00\x01"}, {"in:0": 7}, epoch, {"daemon": b"{}"},
                 pending_put={"e-1": (b'{"x":1}', 5.0)})
    ck = store.load(name)
    assert ck.parts == {"meta": b"{}", "expert/0": b"\x00\x01"} and ck.offsets == {"in:0": 7}
    assert store.pending_load(name) == {"e-1": (b'{"x":1}', 5.0)} and store.names().count(name) == 1
    assert secure_redis.client().ping()
    with pytest.raises(redis.exceptions.NoPermissionError):  # the ACL is real: no admin commands
        secure_redis.client().flushall()
    with pytest.raises(redis.exceptions.NoPermissionError):  # ... and no keys outside smoe:*
        secure_redis.client().set("other-app:key", b"1")


def _serve_env(kafka_broker: str, topics: dict, model: str, redis_env: dict) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMMOE_")}
    env.update({
        "PYTHONPATH": os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]),
        "STREAMMOE_KAFKA__BOOTSTRAP_SERVERS": kafka_broker, "STREAMMOE_KAFKA__GROUP_ID": unique_name("g"),
        "STREAMMOE_KAFKA__SESSION_TIMEOUT_MS": "6000", "STREAMMOE_KAFKA__HEARTBEAT_INTERVAL_MS": "1000",
        "STREAMMOE_KAFKA__MAX_POLL_INTERVAL_MS": "10000",
        **{f"STREAMMOE_KAFKA__{k.upper()}": v for k, v in topics.items()},
        "STREAMMOE_MODEL__NAME": model, "STREAMMOE_MODEL__PARAMS": json.dumps(PARAMS),
        "STREAMMOE_SERVE__ALIGN_IDLE_MS": "30000",
        "STREAMMOE_CHECKPOINT__EVERY_EVENTS": "100", "STREAMMOE_CHECKPOINT__EVERY_SECONDS": "3600",
        "STREAMMOE_HTTP__PORT": "0", "STREAMMOE_LOG_JSON": "true",
    })
    env.update({f"STREAMMOE_REDIS__{k.upper()}": str(v) for k, v in redis_env.items()})
    return env


def _serve(env: dict) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "streammoe", "serve"], env=env, cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _finish(proc: subprocess.Popen, timeout: float = 60) -> tuple[int, str]:
    try:
        _, err = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc.returncode, err.decode(errors="replace")


def test_serve_runs_end_to_end_on_tls_acl_redis(kafka_broker, topic_factory, secure_redis, tls_files):
    """``streammoe serve`` configured only by STREAMMOE_REDIS__* variables: every event is
    predicted and the checkpointed state equals the offline model, bit for bit."""
    topics = make_topics(topic_factory, 1)
    model = unique_name("m")
    events = list(open_source("sea_a", n=300, seed=3))
    produce(kafka_broker, topics, events, partitions=1, labels="inline")
    proc = _serve(_serve_env(kafka_broker, topics, model, secure(secure_redis, tls_files, hmac_key=HMAC_KEY)))
    try:
        preds = read_topic(kafka_broker, topics["predictions_topic"], 300, timeout=90)
        proc.send_signal(signal.SIGTERM)
    finally:
        code, err = _finish(proc)
    assert code == 0, err[-3000:]
    assert sorted(json.loads(r.value)["id"] for r in preds) == sorted(f"e-{i}" for i in range(300))
    store = make_store(Settings.load(redis=secure(secure_redis, tls_files, hmac_key=HMAC_KEY)))
    name = f"{model}/{topics['input_topic']}/0"
    ck = store.load(name)
    assert ck.offsets == {f"{topics['input_topic']}:0": 300}
    assert state_digest(ck.parts) == state_digest(offline_partition(events, 1, 0, "inline").state_parts())


def _daemon_with_state(kafka_broker, topic_factory, redis_server) -> tuple[dict, str, RedisStore, Settings]:
    """Topics with 200 events and a checkpointed, HMAC-signed state of partition 0."""
    topics = make_topics(topic_factory, 1)
    model = unique_name("m")
    produce(kafka_broker, topics, list(open_source("sea_a", n=200, seed=4)), partitions=1, labels="inline")
    s = settings(kafka_broker, redis_server.url, topics, group=unique_name("g"), model=model, every_events=50)
    s = s.model_copy(update={"redis": RedisSettings(url=redis_server.url, hmac_key=HMAC_KEY)})
    d = Daemon(s).start_thread()
    assert wait_until(lambda: processed(d) == (200, 0), 60)
    stopped(d)
    return topics, model, RedisStore.from_url(redis_server.url, hmac_key=HMAC_KEY), s


def _raw(redis_server, store: RedisStore, name: str) -> dict:
    return redis_server.client().hgetall(store.key(name))


@pytest.mark.parametrize("attack, why", [
    ("flip_a_byte", "failed its HMAC check"),
    ("wrong_key", "failed its HMAC check"),
    ("key_removed", "not a valid JSON blob"),  # signed state read as if unsigned: the tag is garbage
])
def test_serve_refuses_tampered_or_foreign_state_and_leaves_it_untouched(kafka_broker, topic_factory,
                                                                         redis_server, attack, why):
    topics, model, store, s = _daemon_with_state(kafka_broker, topic_factory, redis_server)
    name = f"{model}/{topics['input_topic']}/0"
    key = store.key(name)
    key_for_restart = HMAC_KEY
    if attack == "flip_a_byte":
        blob = bytearray(redis_server.client().hget(key, "p:router"))
        blob[len(blob) // 2] ^= 0x01
        redis_server.client().hset(key, "p:router", bytes(blob))
    else:
        key_for_restart = "another-key-0123456789" if attack == "wrong_key" else None
    before = _raw(redis_server, store, name)
    redis_env = {"url": redis_server.url}
    if key_for_restart is not None:
        redis_env["hmac_key"] = key_for_restart
    env = _serve_env(kafka_broker, topics, model, redis_env)
    env["STREAMMOE_KAFKA__GROUP_ID"] = s.kafka.group_id
    code, err = _finish(_serve(env), timeout=90)
    assert code == 1, err[-3000:]
    assert "refusing the stored state of partition 0" in err and why in err, err[-3000:]
    logs = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    assert any(r.get("level") == "CRITICAL" and "refusing the stored state" in r["msg"] for r in logs), logs[-5:]
    after = _raw(redis_server, store, name)
    # Nothing reset or overwritten: only the fencing epoch moved (the refused owner claimed it first).
    assert {f: v for f, v in after.items() if f != b"m:epoch"} == {f: v for f, v in before.items() if f != b"m:epoch"}
    assert int(after[b"m:epoch"]) == int(before[b"m:epoch"]) + 1
    assert len(read_topic(kafka_broker, topics["predictions_topic"], 201, timeout=3)) == 200  # no new output
