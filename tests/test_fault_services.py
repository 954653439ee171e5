"""The services go away under a running ``streammoe serve``: Redis SIGKILLed and restarted
(AOF on), the Kafka broker SIGKILLed and restarted (its data in S3).  The daemon must not exit:
it waits, retries with a capped backoff and resumes, and the end checks of :mod:`faultkit`
hold (state bit-identical to the offline model, every label learned once, every event
predicted).  Outage moments and lengths are seeded.
"""
from __future__ import annotations

import random
import threading
import time

import pytest

from faultkit import (
    check_end_state,
    log_lines,
    make_stream,
    metric,
    serve_env,
    start_serve,
    stop_clean,
    stored_progress,
    tail,
)
from services import unique_name, wait_progressing, wait_until
from streammoe.service.daemon import Daemon, make_store
from streammoe.service.settings import Settings
from streammoe.state.redis_store import RedisStore, StoreAuthError, StoreUnavailableError
from streammoe.testing import create_topics

N_EVENTS = 20_000
SEED = 7_2026
STALL_S = 180.0  # longest time without progress (stored offsets or daemon log) before a wait fails


def _wait_progress(store, names, proc, log, at_least: int) -> None:
    """Until the stored checkpoints cover ``at_least`` records; fails only when they stop moving
    (for STALL_S) or the daemon exits - never because the machine is slow."""
    reached = wait_progressing(lambda: stored_progress(store, names) >= at_least or proc.poll() is not None,
                               lambda: (stored_progress(store, names), log.stat().st_size), STALL_S, 0.02)
    assert reached and proc.poll() is None, (stored_progress(store, names), tail(log))


def test_redis_killed_and_restarted_mid_run_the_daemon_waits_and_resumes(
        kafka_broker, redis_factory, tmp_path):
    redis = redis_factory(appendonly=True)  # appendfsync always: an acknowledged commit survives
    events, topics = make_stream(kafka_broker, N_EVENTS, seed=11)
    model = unique_name("m")
    names = [f"{model}/{topics['input_topic']}/{p}" for p in range(2)]
    store = RedisStore.from_url(redis.url)
    log = tmp_path / "serve.log"
    env = serve_env(kafka_broker, redis.url, topics, unique_name("g"), model,
                    STREAMMOE_REDIS__RETRY_BASE_S="0.05", STREAMMOE_REDIS__RETRY_CAP_S="1.0")
    total = 2 * N_EVENTS
    rng = random.Random(SEED)
    proc = start_serve(env, log)
    try:
        for lo, hi in ((0.2, 0.4), (0.55, 0.75)):  # two outages, each at a seeded moment
            _wait_progress(store, names, proc, log, int(total * rng.uniform(lo, hi)))
            time.sleep(rng.uniform(0.0, 0.25))  # somewhere between two checkpoints
            assert stored_progress(store, names) < total, "the stream ended before the outage"
            redis.kill()
            time.sleep(rng.uniform(2.0, 3.0))
            assert proc.poll() is None, "the daemon exited while Redis was down:\n" + tail(log)
            redis.start()
        _wait_progress(store, names, proc, log, total)
        retries = metric(log, "streammoe_store_retries_total", '{op="checkpoint"}')
        assert retries is not None and retries >= 2, f"no checkpoint retry counted ({retries}):\n{tail(log)}"
    finally:
        stop_clean(proc, log)

    resumed = [r for r in log_lines(log) if r.get("msg", "").startswith("Redis reachable again")]
    assert len(resumed) >= 2, tail(log)
    preds = check_end_state(store, names, events, kafka_broker, topics["predictions_topic"])
    # the daemon never restarted nor reloaded: no event was predicted twice
    assert len(preds) == N_EVENTS
    for name in names:
        assert store.load(name).epoch == 1  # one owner from start to end: nothing was re-claimed


def test_broker_killed_and_restarted_mid_run_the_daemon_reconnects_and_resumes(
        restartable_broker, redis_server, tmp_path):
    broker = restartable_broker
    events, topics = make_stream(broker.bootstrap, N_EVENTS, seed=13)
    model = unique_name("m")
    names = [f"{model}/{topics['input_topic']}/{p}" for p in range(2)]
    store = RedisStore.from_url(redis_server.url)
    log = tmp_path / "serve.log"
    # The producer reconnects with its own backoff, so the first flush after the restart can take
    # a few seconds: a longer poll interval keeps that from also causing a rebalance.
    # Idempotence off: across its SIGKILL, Tansu 0.6.0 on S3 can lose an acknowledged batch of an
    # idempotent producer (the batch acknowledged just before the kill is missing afterwards, and
    # the retry of the one in flight is answered DUPLICATE_SEQUENCE_NUMBER, which the client counts
    # as written): seen in 3 of 6 kill/restart trials, 0 of 9 without idempotence.  That is the
    # test broker's fault, not the daemon's; with real Kafka keep the default (on).
    env = serve_env(broker.bootstrap, redis_server.url, topics, unique_name("g"), model,
                    STREAMMOE_KAFKA__MAX_POLL_INTERVAL_MS="15000", STREAMMOE_KAFKA__ENABLE_IDEMPOTENCE="false")
    total = 2 * N_EVENTS
    rng = random.Random(SEED + 1)
    proc = start_serve(env, log)
    try:
        _wait_progress(store, names, proc, log, int(total * rng.uniform(0.25, 0.5)))
        time.sleep(rng.uniform(0.0, 0.25))
        at_kill = stored_progress(store, names)
        assert at_kill < total, "the stream ended before the outage"
        broker.kill()
        time.sleep(rng.uniform(2.0, 3.0))
        assert proc.poll() is None, "the daemon exited while the broker was down:\n" + tail(log)
        # checkpoints wait for the predictions to be delivered: the stream cannot end without the broker
        assert stored_progress(store, names) < total
        broker.start()  # same port, same bucket: topics, records and committed groups are back
        _wait_progress(store, names, proc, log, total)
    finally:
        stop_clean(proc, log)

    check_end_state(store, names, events, broker.bootstrap, topics["predictions_topic"])


def test_claiming_a_partition_waits_for_redis_then_gives_up_after_retry_max_s(redis_factory):
    """The blocking path (a partition assigned while Redis is down): retried with the backoff,
    counted, and bounded by ``redis.retry_max_s``."""
    redis = redis_factory(appendonly=True)
    settings = Settings.load(kafka=dict(bootstrap_servers="127.0.0.1:1", input_topic="in", group_id="g"),
                             redis=dict(url=redis.url, retry_base_s=0.05, retry_cap_s=0.4, retry_max_s=20),
                             log_json=False)
    store = make_store(settings)
    daemon = Daemon(settings, store=store)  # not started: only its Redis retry path is used here
    name = unique_name("claim")
    redis.kill()
    restart = threading.Timer(1.5, redis.start)  # Redis is back after 1.5 s
    restart.start()
    t0 = time.monotonic()
    epoch = daemon.checkpoints.retrying("claim", lambda: store.claim(name))
    restart.join()  # start() has returned: the kill below cannot race it
    assert epoch >= 1 and store.epoch(name) == epoch
    assert time.monotonic() - t0 >= 1.0
    retries = daemon.metrics.registry.get_sample_value("streammoe_store_retries_total", {"op": "claim"})
    assert retries >= 2 and not daemon.checkpoints.failing

    quick = Daemon(Settings.load(kafka=dict(bootstrap_servers="127.0.0.1:1", input_topic="in", group_id="g"),
                                 redis=dict(url=redis.url, retry_base_s=0.05, retry_cap_s=0.1, retry_max_s=1.0),
                                 log_json=False), store=store)
    redis.kill()
    t0 = time.monotonic()
    with pytest.raises(StoreUnavailableError):
        quick.checkpoints.retrying("claim", lambda: store.claim(name))
    assert 1.0 <= time.monotonic() - t0 < 10.0
    redis.start()


def test_serve_started_before_redis_waits_for_it_and_wrong_credentials_fail_fast(kafka_broker, redis_factory):
    """Start-up order must not matter (compose, restarts): a daemon started while Redis is down
    waits with the backoff (counted as op="connect") and runs once Redis answers; refused
    credentials are not a wait-and-see failure and stop the start at once."""
    redis = redis_factory(appendonly=True, password="s3cret")
    redis.kill()
    topics = {k: unique_name(k.split("_")[0]) for k in
              ("input_topic", "labels_topic", "predictions_topic", "deadletter_topic")}
    create_topics(kafka_broker, {t: 1 for t in topics.values()})
    kafka = dict(bootstrap_servers=kafka_broker, group_id=unique_name("g"), session_timeout_ms=6000,
                 heartbeat_interval_ms=1000, max_poll_interval_ms=10_000, **topics)
    base = dict(retry_base_s=0.05, retry_cap_s=0.4, retry_max_s=30)
    daemon = Daemon(Settings.load(kafka=kafka, redis=dict(url=redis.url, **base), http=dict(port=0),
                                  log_json=False))
    restart = threading.Timer(1.5, redis.start)
    restart.start()
    t0 = time.monotonic()
    daemon.start_thread()
    try:
        assert wait_until(lambda: daemon.store is not None, 20), daemon.error
        restart.join()
        assert time.monotonic() - t0 >= 1.0 and daemon.error is None
        assert daemon.metrics.registry.get_sample_value("streammoe_store_retries_total", {"op": "connect"}) >= 2
        assert daemon.store.client.ping()
    finally:
        daemon.stop(checkpoint=False)
        assert daemon.join(30)

    wrong = Daemon(Settings.load(kafka=kafka, redis=dict(url=redis.url.replace("s3cret", "guess"), **base),
                                 http=dict(port=0), log_json=False))
    t0 = time.monotonic()
    with pytest.raises(StoreAuthError, match="(?i)password|credential|auth"):
        wrong.start()
    assert time.monotonic() - t0 < 5.0
