"""Crash anywhere: a real ``streammoe serve`` subprocess over a 100k-event stream with delayed
labels, killed with SIGKILL at seeded random moments and restarted, ends with the same model
as an uninterrupted run, bit for bit (issue 7).

The whole process group is killed (the daemon and its producer child): that is what a lost
container or machine looks like.  After the last restart finishes the stream, the end checks
of :mod:`faultkit` hold (state digest per partition equals the offline model, every label
learned exactly once, every event predicted), and some predictions were made twice - proof
that the kills did land between checkpoints and lose work that had to be redone.
"""
from __future__ import annotations

import random
import time

from faultkit import (
    check_end_state,
    kill_hard,
    make_stream,
    serve_env,
    start_serve,
    stop_clean,
    stored_progress,
    tail,
)
from services import unique_name, wait_progressing
from streammoe.state.redis_store import RedisStore

N_EVENTS = 100_000
KILLS = 3
SEED = 20261125
STALL_S = 180.0  # longest time without progress (stored offsets or daemon log) before a wait fails


def test_sigkill_at_random_moments_then_restart_equals_the_uninterrupted_model(
        kafka_broker, redis_server, tmp_path):
    events, topics = make_stream(kafka_broker, N_EVENTS)
    model = unique_name("m")
    names = [f"{model}/{topics['input_topic']}/{p}" for p in range(2)]
    store = RedisStore.from_url(redis_server.url)
    env = serve_env(kafka_broker, redis_server.url, topics, unique_name("g"), model)
    log = tmp_path / "serve.log"
    total = 2 * N_EVENTS  # every event and every label
    rng = random.Random(SEED)
    # kill points: one stored-progress threshold in each of KILLS equal slices of 10%..85% of the
    # records (so every run must make progress, hence claim its partitions), plus a random delay
    width = (total * 85 // 100 - total // 10) // KILLS
    targets = [total // 10 + k * width + rng.randrange(width // 2) for k in range(KILLS)]
    for target in targets:
        proc = start_serve(env, log)
        try:
            reached = wait_progressing(lambda: stored_progress(store, names) >= target or proc.poll() is not None,
                                       lambda: (stored_progress(store, names), log.stat().st_size), STALL_S, 0.02)
            assert reached and proc.poll() is None, tail(log)
            time.sleep(rng.uniform(0.0, 0.25))  # land somewhere between checkpoints
        finally:
            kill_hard(proc)

    proc = start_serve(env, log)
    try:
        done = wait_progressing(lambda: stored_progress(store, names) == total or proc.poll() is not None,
                                lambda: (stored_progress(store, names), log.stat().st_size), STALL_S)
        assert done and proc.poll() is None, (stored_progress(store, names), tail(log))
    finally:
        stop_clean(proc, log)

    # every kill was followed by a takeover (a rebalance may add more claims, never fewer)
    preds = check_end_state(store, names, events, kafka_broker, topics["predictions_topic"], min_epoch=KILLS + 1)
    assert len(preds) > N_EVENTS, "no kill lost uncheckpointed work; the test would not test recovery"
