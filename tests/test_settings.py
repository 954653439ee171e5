"""Settings load from defaults, a TOML file and STREAMMOE_* variables, in that order of
precedence, refuse inconsistent security options, and build kafka-python / redis-py
arguments that those clients accept."""
from __future__ import annotations

import pytest
from pydantic import ValidationError

from streammoe.service.schema import DecodeLimits
from streammoe.service.settings import CONFIG_ENV_VAR, Settings, SettingsFileError


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    import os

    for name in list(os.environ):
        if name.startswith("STREAMMOE_"):
            monkeypatch.delenv(name)


def _toml(tmp_path, text: str):
    path = tmp_path / "streammoe.toml"
    path.write_text(text)
    return path


def test_defaults_are_local_and_safe():
    s = Settings.load()
    assert s.kafka.bootstrap_servers == "127.0.0.1:9092" and s.kafka.security_protocol == "PLAINTEXT"
    assert s.http.host == "127.0.0.1"
    assert s.redis.url.startswith("redis://127.0.0.1") and s.redis.hmac_key is None
    assert s.checkpoint.every_events == 10_000 and s.limits.pending_max_count > 0
    assert isinstance(s.decode_limits(), DecodeLimits)


def test_env_overrides_file_and_nested_delimiter(tmp_path, monkeypatch):
    path = _toml(tmp_path, """
[kafka]
bootstrap_servers = "b1:9092, b2:9092"
group_id = "from-file"
input_topic = "in-file"
[model]
name = "fraud"
params = { n_experts = 12, top_k = 3 }
[limits]
max_features = 50
pending_ttl_s = 60
[checkpoint]
every_events = 500
""")
    monkeypatch.setenv("STREAMMOE_KAFKA__GROUP_ID", "from-env")
    monkeypatch.setenv("STREAMMOE_CHECKPOINT__EVERY_SECONDS", "2.5")
    monkeypatch.setenv("STREAMMOE_REDIS__PASSWORD", "hunter2")
    s = Settings.load(path)
    assert s.kafka.group_id == "from-env" and s.kafka.input_topic == "in-file"
    assert s.kafka.servers() == ["b1:9092", "b2:9092"]
    assert s.model.name == "fraud" and s.model.params == {"n_experts": 12, "top_k": 3}
    assert s.limits.max_features == 50 and s.limits.pending_ttl_s == 60
    assert s.checkpoint.every_events == 500 and s.checkpoint.every_seconds == 2.5
    assert s.redis.password.get_secret_value() == "hunter2" and "hunter2" not in repr(s)
    # Keyword overrides beat both.
    assert Settings.load(path, kafka={"group_id": "kw"}).kafka.group_id == "kw"


def test_config_file_from_environment_variable(tmp_path, monkeypatch):
    monkeypatch.setenv(CONFIG_ENV_VAR, str(_toml(tmp_path, '[http]\nport = 9999\n')))
    assert Settings().http.port == 9999


def test_file_problems_are_named(tmp_path):
    with pytest.raises(SettingsFileError, match="does not exist"):
        Settings.load(tmp_path / "missing.toml")
    with pytest.raises(SettingsFileError, match="not valid TOML"):
        Settings.load(_toml(tmp_path, "[kafka\n"))
    with pytest.raises(ValidationError, match="group_idd"):
        Settings.load(_toml(tmp_path, '[kafka]\ngroup_idd = "typo"\n'))


def test_kafka_kwargs_are_accepted_by_kafka_python():
    from kafka import KafkaConsumer, KafkaProducer

    k = Settings.load().kafka
    consumer_kw, producer_kw = k.consumer_kwargs(), k.producer_kwargs(linger_ms=0)
    assert consumer_kw["enable_auto_commit"] is False and consumer_kw["group_id"] == "streammoe"
    assert producer_kw["acks"] == "all" and producer_kw["linger_ms"] == 0
    assert set(consumer_kw) <= set(KafkaConsumer.DEFAULT_CONFIG)
    assert set(producer_kw) <= set(KafkaProducer.DEFAULT_CONFIG)


@pytest.mark.parametrize("protocol, mechanism", [("PLAINTEXT", None), ("SSL", None)] + [
    (p, m) for p in ("SASL_PLAINTEXT", "SASL_SSL") for m in ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")])
def test_every_security_protocol_and_mechanism_reaches_kafka_python(protocol, mechanism, tls_files):
    """Tansu speaks neither SASL nor TLS, so the mapping settings -> kafka-python arguments is
    what is tested: every option arrives, under the name kafka-python reads, in consumer,
    producer and admin arguments alike."""
    from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer

    sasl, tls = protocol.startswith("SASL_"), protocol in ("SSL", "SASL_SSL")
    kafka = {"security_protocol": protocol}
    if sasl:
        kafka.update(sasl_mechanism=mechanism, sasl_plain_username="svc", sasl_plain_password="pw-secret")
    if tls:
        kafka.update(ssl_cafile=str(tls_files.ca_cert), ssl_certfile=str(tls_files.client_cert),
                     ssl_keyfile=str(tls_files.client_key), ssl_check_hostname=False)
    k = Settings.load(kafka=kafka).kafka
    for kw, accepted in ((k.consumer_kwargs(), KafkaConsumer.DEFAULT_CONFIG),
                         (k.producer_kwargs(), KafkaProducer.DEFAULT_CONFIG),
                         (k.common_kwargs(), KafkaAdminClient.DEFAULT_CONFIG)):
        assert set(kw) <= set(accepted), set(kw) - set(accepted)
        assert kw["security_protocol"] == protocol
        if sasl:
            assert (kw["sasl_mechanism"], kw["sasl_plain_username"], kw["sasl_plain_password"]) == \
                (mechanism, "svc", "pw-secret")
        else:
            assert not any(name.startswith("sasl_") for name in kw)
        if tls:
            assert kw["ssl_cafile"] == str(tls_files.ca_cert) and kw["ssl_certfile"] == str(tls_files.client_cert)
            assert kw["ssl_keyfile"] == str(tls_files.client_key) and kw["ssl_check_hostname"] is False
        else:
            assert not any(name.startswith("ssl_") for name in kw)
    assert "pw-secret" not in repr(k)


def test_tls_files_are_checked_at_load_time(tls_files, tmp_path):
    """A CA that is not a certificate, or a certificate with another key, fails with the
    option's name when the settings load - not at the first connection."""
    junk = tmp_path / "junk.pem"
    junk.write_text("-----BEGIN CERTIFICATE-----\nnot base64\n")
    with pytest.raises(ValidationError, match="kafka.ssl_cafile .* is not a PEM CA certificate"):
        Settings.load(kafka={"security_protocol": "SSL", "ssl_cafile": str(junk)})
    with pytest.raises(ValidationError, match="not a matching PEM certificate and private key"):
        Settings.load(kafka={"security_protocol": "SSL", "ssl_certfile": str(tls_files.client_cert),
                             "ssl_keyfile": str(tls_files.server_key)})
    with pytest.raises(ValidationError, match="redis.ssl_ca_certs .* is not a PEM CA certificate"):
        Settings.load(redis={"url": "rediss://cache:6380/0", "ssl_ca_certs": str(junk)})
    with pytest.raises(ValidationError, match="redis.ssl_certfile / redis.ssl_keyfile"):
        Settings.load(redis={"url": "rediss://cache:6380/0", "ssl_certfile": str(tls_files.server_cert),
                             "ssl_keyfile": str(tls_files.client_key)})


@pytest.mark.parametrize("kafka, message", [
    ({"security_protocol": "SASL_SSL"}, "needs sasl_mechanism"),
    ({"security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": "PLAIN"}, "needs sasl_plain_username"),
    ({"sasl_mechanism": "PLAIN", "sasl_plain_username": "u", "sasl_plain_password": "p"},
     "security_protocol is PLAINTEXT"),
    ({"security_protocol": "SSL", "ssl_cafile": "/no/such/ca.pem"}, "ssl_cafile"),
    ({"security_protocol": "SASL_SSL", "sasl_mechanism": "GSSAPI", "sasl_plain_username": "u",
      "sasl_plain_password": "p"}, "sasl_mechanism"),
    ({"security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": "SCRAM-SHA-256", "sasl_plain_username": "u"},
     "needs sasl_plain_username and sasl_plain_password"),
    ({"security_protocol": "TLS"}, "security_protocol"),
    ({"ssl_check_hostname": False, "ssl_password": "x"}, "security_protocol is PLAINTEXT"),
    ({"security_protocol": "SSL", "ssl_password": "x"}, "ssl_password is the passphrase of ssl_keyfile"),
    ({"bootstrap_servers": "no-port"}, "not host:port"),
    ({"heartbeat_interval_ms": 9000, "session_timeout_ms": 6000}, "heartbeat_interval_ms"),
])
def test_inconsistent_kafka_security_is_refused(kafka, message):
    with pytest.raises(ValidationError, match=message):
        Settings.load(kafka=kafka)


def test_redis_settings(tls_files):
    ca = tls_files.ca_cert
    r = Settings.load(redis={"url": "rediss://cache:6380/1", "username": "svc", "password": "pw",
                             "ssl_ca_certs": str(ca), "ssl_certfile": str(tls_files.client_cert),
                             "ssl_keyfile": str(tls_files.client_key), "hmac_key": "0123456789abcdef"}).redis
    kw = r.client_kwargs()
    assert kw["password"] == "pw" and kw["ssl_ca_certs"] == str(ca) and kw["decode_responses"] is False
    assert kw["username"] == "svc" and kw["ssl_certfile"] == str(tls_files.client_cert)
    assert kw["ssl_keyfile"] == str(tls_files.client_key) and kw["ssl_check_hostname"] is True
    client = r.make_client()  # builds without connecting
    assert client.connection_pool.connection_kwargs["host"] == "cache"
    assert client.connection_pool.connection_class.__name__ == "SSLConnection"
    with pytest.raises(ValidationError, match="not rediss://"):
        Settings.load(redis={"ssl_ca_certs": str(ca)})
    with pytest.raises(ValidationError, match="username is set without a password"):
        Settings.load(redis={"username": "svc"})
    with pytest.raises(ValidationError, match="ssl_certfile and ssl_keyfile go together"):
        Settings.load(redis={"url": "rediss://cache:6380/1", "ssl_certfile": str(tls_files.client_cert)})
    with pytest.raises(ValidationError, match="must start with"):
        Settings.load(redis={"url": "http://x"})
    with pytest.raises(ValidationError, match="at least 16"):
        Settings.load(redis={"hmac_key": "short"})


def test_make_store_against_real_redis(redis_factory):
    server = redis_factory(password="store-pass-1")
    s = Settings.load(redis={"url": server.plain_url, "password": "store-pass-1",
                             "hmac_key": "0123456789abcdef"}, limits={"pending_max_count": 7})
    store = s.make_store()
    assert store.pending_max == 7
    store.write("m", {"a": b"1"})
    assert store.read("m") == {"a": b"1"}
    assert server.client().hget("smoe:{m}:state", "p:a") != b"1"  # signed
