"""Operating the daemon: SIGTERM checkpoints and leaves (a real ``streammoe serve``
subprocess), /healthz and /metrics, keyed models, and the ``generate`` / ``inspect`` /
``serve`` commands."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from typer.testing import CliRunner

from services import unique_name, wait_progressing
from streammoe.cli import app
from streammoe.service.daemon import Daemon
from streammoe.service.settings import Settings
from streammoe.state.redis_store import RedisStore
from streammoe.testing import read_topic

PARAMS = {"n_experts": 3, "hidden": 8, "window": 32, "seed": 5}
REPO = Path(__file__).resolve().parents[1]
runner = CliRunner()


def topics_for(topic_factory, partitions: int) -> dict[str, str]:
    return {"input_topic": topic_factory(partitions, "in"), "labels_topic": topic_factory(partitions, "lab"),
            "predictions_topic": topic_factory(1, "pred"), "deadletter_topic": topic_factory(1, "dlq")}


def cli(*args: str) -> object:
    result = runner.invoke(app, list(args), catch_exceptions=False)
    return result


def test_sigterm_finishes_the_batch_checkpoints_and_exits_cleanly(kafka_broker, topic_factory, redis_server):
    topics = topics_for(topic_factory, 2)
    model = unique_name("m")
    env = dict(os.environ)
    env.update({
        "PYTHONPATH": os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]),
        "STREAMMOE_KAFKA__BOOTSTRAP_SERVERS": kafka_broker, "STREAMMOE_KAFKA__GROUP_ID": unique_name("g"),
        **{f"STREAMMOE_KAFKA__{k.upper()}": v for k, v in topics.items()},
        "STREAMMOE_REDIS__URL": redis_server.url, "STREAMMOE_MODEL__NAME": model,
        "STREAMMOE_MODEL__PARAMS": json.dumps(PARAMS),
        # only the SIGTERM checkpoint may write: the policy never triggers in this test
        "STREAMMOE_CHECKPOINT__EVERY_EVENTS": "100000000", "STREAMMOE_CHECKPOINT__EVERY_SECONDS": "3600",
        "STREAMMOE_HTTP__PORT": "0", "STREAMMOE_LOG_JSON": "true",
    })
    # the consumer timings a Tansu broker needs, given as flags (docs/service.md, "Group joins slow")
    proc = subprocess.Popen([sys.executable, "-m", "streammoe", "serve", "--session-timeout-ms", "6000",
                             "--heartbeat-interval-ms", "1000", "--max-poll-interval-ms", "10000"], env=env, cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        result = cli("generate", "sea_a", "--n", "200", "--seed", "1", "--bootstrap-servers", kafka_broker,
                     "--topic", topics["input_topic"], "--labels-topic", topics["labels_topic"], "--labels", "inline")
        assert result.exit_code == 0, result.output
        assert len(read_topic(kafka_broker, topics["predictions_topic"], 200, timeout=60)) == 200
        store = RedisStore.from_url(redis_server.url)
        names = [f"{model}/{topics['input_topic']}/{p}" for p in (0, 1)]
        assert all(store.load(n).commits == 0 for n in names)  # nothing checkpointed yet
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    logs = [json.loads(line) for line in err.decode().splitlines() if line.startswith("{")]
    assert proc.returncode == 0, err.decode()[-3000:]
    assert any(r["msg"] == "stopped" and r["checkpointed"] is True for r in logs), logs[-5:]
    assert {r["msg"] for r in logs} >= {"serving", "partition assigned", "stopped"}
    total = 0
    for n in names:
        ck = store.load(n)
        assert ck.commits == 1
        total += sum(ck.offsets.values())
        assert json.loads(ck.parts["meta"])["n_learned"] == 100
    assert total == 200


@pytest.mark.parametrize("engine", ["pool", "models"])
def test_health_and_metrics_endpoints_and_keyed_models(kafka_broker, topic_factory, redis_server, engine):
    topics = topics_for(topic_factory, 2)
    model = unique_name("m")
    result = cli("generate", "sea_a", "--n", "240", "--bootstrap-servers", kafka_broker, "--topic",
                 topics["input_topic"], "--labels-topic", topics["labels_topic"], "--labels", "delayed",
                 "--delay", "4", "--keys", "3")
    assert result.exit_code == 0, result.output
    assert "sent 240 events and 240 delayed labels" in result.output
    settings = Settings.load(
        kafka=dict(bootstrap_servers=kafka_broker, group_id=unique_name("g"), session_timeout_ms=6000,
                   heartbeat_interval_ms=1000, max_poll_interval_ms=10_000, **topics),
        redis=dict(url=redis_server.url), model=dict(name=model, params=PARAMS), http=dict(port=0),
        checkpoint=dict(every_events=50), serve=dict(model_per="key", keyed_engine=engine, metrics_interval_s=0.05))
    d = Daemon(settings).start_thread()
    try:
        learned = lambda: sum(i["stats"]["learned"] for i in d.snapshot().values())  # noqa: E731
        assert wait_progressing(lambda: learned() == 240, learned, 180)
        d.refresh_metrics()
        with urllib.request.urlopen(d.http.url + "/healthz") as r:
            health = json.loads(r.read())
        with urllib.request.urlopen(d.http.url + "/metrics") as r:
            text = r.read().decode()
        try:
            urllib.request.urlopen(d.http.url + "/nope")
        except urllib.error.HTTPError as exc:
            assert exc.code == 404
    finally:
        d.stop()
        assert d.join(30) and d.error is None
    assert health["status"] == "ok" and health["partitions"] == [0, 1]
    for metric in ("streammoe_events_per_second", "streammoe_consumer_lag", "streammoe_prequential_accuracy",
                   "streammoe_expert_share", "streammoe_drift_events", "streammoe_dead_letters_total",
                   "streammoe_checkpoint_age_seconds", "streammoe_pending_labels",
                   "streammoe_prediction_latency_seconds_bucket"):
        assert metric in text, metric
    assert "streammoe_learned_total 240.0" in text and "streammoe_models 3.0" in text
    # keys k0 and k2 live in partition 0, k1 in partition 1: one keyed model each
    result = cli("inspect", "--redis-url", redis_server.url, "--json",
                 "--model", f"{model}/{topics['input_topic']}/0", "--model", f"{model}/{topics['input_topic']}/1")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    assert [sorted(m["key"] for m in r["models"]) for r in rows] == [["k0", "k2"], ["k1"]]
    assert sum(m["n_learned"] for r in rows for m in r["models"]) == 240
    assert all(r["pending"] == 0 and r["epoch"] == 1 and r["daemon"]["stats"]["joined"] > 0 for r in rows)
    text = cli("inspect", "--redis-url", redis_server.url, "--experts", "--model",
               f"{model}/{topics['input_topic']}/1").output
    assert "key 'k1': 3 experts" in text and "offsets:" in text
    assert ("pool/trees" in text and "pool/router/0" in text) if engine == "pool" else "expert/0" in text


def test_serve_consumer_timing_flags_reach_the_settings(monkeypatch):
    monkeypatch.setenv("STREAMMOE_REDIS__URL", "redis://user:s3cret@127.0.0.1:1/0")
    result = runner.invoke(app, ["serve", "--show-settings", "--session-timeout-ms", "6000",
                                 "--heartbeat-interval-ms", "1000", "--max-poll-interval-ms", "5000"])
    assert result.exit_code == 0, result.output
    shown = json.loads(result.output)
    assert {k: shown["kafka"][k] for k in ("session_timeout_ms", "heartbeat_interval_ms", "max_poll_interval_ms")} \
        == {"session_timeout_ms": 6000, "heartbeat_interval_ms": 1000, "max_poll_interval_ms": 5000}
    assert "s3cret" not in result.output and shown["redis"]["url"] == "redis://user:****@127.0.0.1:1/0"
    settings = Settings.load(kafka=shown["kafka"])
    assert settings.kafka.consumer_kwargs()["session_timeout_ms"] == 6000  # what the consumer is given
    result = runner.invoke(app, ["serve", "--show-settings", "--session-timeout-ms", "2000"])  # heartbeat 3000
    assert result.exit_code == 2 and "heartbeat_interval_ms must be lower than session_timeout_ms" in result.output


def test_cli_errors_are_clear(kafka_broker, redis_server, topic_factory):
    missing = unique_name("missing")
    result = runner.invoke(app, ["serve", "--bootstrap-servers", kafka_broker, "--redis-url", redis_server.url,
                                 "--input-topic", missing, "--http-port", "0"])
    assert result.exit_code == 2 and f"topic(s) {missing}" in result.output
    result = runner.invoke(app, ["serve", "--param", "n_experts"])
    assert result.exit_code == 2 and "NAME=VALUE" in result.output
    result = runner.invoke(app, ["serve", "--param", "top_k=0", "--bootstrap-servers", kafka_broker,
                                 "--redis-url", redis_server.url])
    assert result.exit_code == 2 and "not valid DriftMoE parameters" in result.output
    result = runner.invoke(app, ["serve", "--bootstrap-servers", "nohost"])
    assert result.exit_code == 2 and "host:port" in result.output
    t = topic_factory(1, "in")
    result = runner.invoke(app, ["generate", "nope", "--bootstrap-servers", kafka_broker, "--topic", t])
    assert result.exit_code == 2 and "cannot open source 'nope'" in result.output
    result = runner.invoke(app, ["inspect", "--redis-url", redis_server.url, "--prefix", unique_name("empty")])
    assert result.exit_code == 0 and "no models stored" in result.output


def test_a_prediction_that_cannot_be_produced_stops_the_daemon_without_a_checkpoint(
        kafka_broker, topic_factory, redis_server):
    topics = topics_for(topic_factory, 1)
    model = unique_name("m")
    settings = Settings.load(
        kafka=dict(bootstrap_servers=kafka_broker, group_id=unique_name("g"), session_timeout_ms=6000,
                   heartbeat_interval_ms=1000, max_request_size=100, **topics),  # predictions are ~130 bytes
        redis=dict(url=redis_server.url), model=dict(name=model, params=PARAMS), http=dict(port=0),
        checkpoint=dict(every_events=5))
    result = cli("generate", "sea_a", "--n", "20", "--bootstrap-servers", kafka_broker, "--topic",
                 topics["input_topic"], "--labels-topic", topics["labels_topic"])
    assert result.exit_code == 0, result.output
    d = Daemon(settings).start_thread()
    assert d.join(60), "the daemon kept running"
    assert "MessageSizeTooLarge" in str(d.error), d.error
    ck = RedisStore.from_url(redis_server.url).load(f"{model}/{topics['input_topic']}/0")
    assert ck.commits == 0 and ck.offsets == {}  # nothing was checkpointed past undelivered predictions
