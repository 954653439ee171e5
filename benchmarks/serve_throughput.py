"""End-to-end throughput, scaling and start-up of ``streammoe serve`` on this machine.

Default: the production shape (issue 11).  ``streammoe generate`` writes ``--n`` SEA events to 4
input partitions with labels ``--delay`` events late on 4 labels partitions; then, all in one
run, each figure a ratio to a baseline measured in the same run:

1. ``generate`` records/s (the CLI as an operator runs it; with confluent-kafka too when installed);
2. ceilings: kafka-python consume + decode of both topics, and produce of prediction-sized records;
3. the embedded engine, ``DriftMoE().predict_learn_many`` on the same events (the baseline);
4. one ``serve`` process draining the backlog (first prediction to last label learned), then two in
   one consumer group (and both again with ``kafka.producer_client = "confluent-kafka"`` when
   installed; and one process of another checkout with ``--baseline-repo``);
5. warm start-up: launch to HTTP up, to partitions owned, to the first prediction (session timeout
   6 s, then 2 s: the broker holds a new member's join for half of it).

``--classic``: the earlier one-partition, inline-label runs (gzip variants and latency at fixed
rates), results in ``serve_throughput_classic.md``.

Run: ``python benchmarks/serve_throughput.py [--n 60000] [--out benchmarks/results/serve_throughput.md]``
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from streammoe import DriftMoE  # noqa: E402
from streammoe.connectors import open_source  # noqa: E402
from streammoe.service.generate import generate  # noqa: E402
from streammoe.service.schema import decode_event  # noqa: E402
from streammoe.testing import RedisServer, TansuBroker, create_topics, free_port  # noqa: E402


def pick_engine() -> str:
    try:
        DriftMoE(engine="numba")
        return "auto"
    except ValueError:
        return "river"


def produce(bootstrap: str, topic: str, events: list, rate: float | None = None, start: int = 0) -> float:
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, batch_size=256 * 1024)
    try:
        return generate(events, producer, topic, partitions=1, labels="inline", rate=rate, start=start).events_per_s
    finally:
        producer.close()


def ceiling(bootstrap: str, topic: str, n: int) -> float:
    """Records/s of kafka-python consume + decode_event, first record to the n-th."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, max_poll_records=2000)
    tp = TopicPartition(topic, 0)
    consumer.assign([tp])
    consumer.seek_to_beginning(tp)
    got, t0 = 0, None
    try:
        while got < n:
            for recs in consumer.poll(timeout_ms=500).values():
                if t0 is None:
                    t0 = time.perf_counter()
                for r in recs:
                    decode_event(r.value)
                got += len(recs)
        return n / (time.perf_counter() - t0)
    finally:
        consumer.close()


def produce_ceiling(bootstrap: str, topic: str, n: int) -> float:
    """Records/s of kafka-python ``send`` + ``flush`` of prediction-sized records."""
    from kafka import KafkaProducer

    from streammoe.service.schema import encode_prediction

    values = [encode_prediction(f"e-{i}", i % 2, {0: 0.25, 1: 0.75}, 3, i, 12.5) for i in range(n)]
    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
    try:
        t0 = time.perf_counter()
        for v in values:
            producer.send(topic, value=v, partition=0)
        producer.flush()
        return n / (time.perf_counter() - t0)
    finally:
        producer.close()


def crc32c_impl() -> str:
    from kafka.record import util

    return "C (crc32c package)" if getattr(util, "crc32c_c", None) is not None else "pure Python"


def model_rate(events: list, params: dict, warmup: int) -> float:
    """Events/s of the model alone, with one BLAS thread as the daemon runs it."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):
        return _model_rate(events, params, warmup)


def _model_rate(events: list, params: dict, warmup: int) -> float:
    model = DriftMoE(**params)
    xs, ys = [x for x, _ in events], [y for _, y in events]
    model.predict_learn_many(xs[:warmup], ys[:warmup])
    t0 = time.perf_counter()
    for i in range(warmup, len(xs), 2000):
        model.predict_learn_many(xs[i:i + 2000], ys[i:i + 2000])
    return (len(xs) - warmup) / (time.perf_counter() - t0)


class ServeProcess:
    """``python -m streammoe serve`` configured through STREAMMOE_* variables."""

    def __init__(self, name: str, bootstrap: str, redis_url: str, topics: dict, params: dict, every: int,
                 workdir: Path, tag: str = "", repo: Path = REPO, **extra_env: str):
        self.port = free_port()
        self.launched = time.perf_counter()
        env = dict(os.environ)
        env.update({
            "PYTHONPATH": os.pathsep.join([str(repo), env.get("PYTHONPATH", "")]),
            "STREAMMOE_KAFKA__BOOTSTRAP_SERVERS": bootstrap, "STREAMMOE_KAFKA__GROUP_ID": name,
            "STREAMMOE_KAFKA__SESSION_TIMEOUT_MS": "6000", "STREAMMOE_KAFKA__HEARTBEAT_INTERVAL_MS": "1000",
            **{f"STREAMMOE_KAFKA__{k.upper()}": v for k, v in topics.items()},
            "STREAMMOE_REDIS__URL": redis_url, "STREAMMOE_MODEL__NAME": name,
            "STREAMMOE_MODEL__PARAMS": json.dumps(params),
            "STREAMMOE_CHECKPOINT__EVERY_EVENTS": str(every), "STREAMMOE_CHECKPOINT__EVERY_SECONDS": "3600",
            "STREAMMOE_HTTP__PORT": str(self.port), "STREAMMOE_LOG_LEVEL": "WARNING",
        })
        env.update(extra_env)
        self.log = open(workdir / f"serve-{name}{tag}.log", "wb")
        self.proc = subprocess.Popen([sys.executable, "-m", "streammoe", "serve"], env=env, cwd=repo,
                                     stdout=self.log, stderr=subprocess.STDOUT)

    def counter(self, name: str) -> float:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=2) as r:
                text = r.read().decode()
        except OSError:
            return -1.0
        total = 0.0
        for m in re.finditer(rf"^{name}(?:{{[^}}]*}})? ([0-9.e+]+)$", text, re.M):
            total += float(m.group(1))
        return total

    def stop(self) -> int:
        self.proc.terminate()
        try:
            return self.proc.wait(60)
        finally:
            self.log.close()


def drain(serve: ServeProcess, n: int, warmup: int, timeout: float = 900.0) -> dict:
    samples = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done = serve.counter("streammoe_records_total")
        samples.append((time.perf_counter(), done))
        if done >= n:
            break
        time.sleep(0.05)
    else:
        raise RuntimeError(f"the daemon processed {samples[-1][1]:.0f} of {n} events in {timeout:.0f} s")
    t_first = next(t for t, d in samples if d > 0)
    t_warm, d_warm = next((t, d) for t, d in samples if d >= warmup)
    t_end = samples[-1][0]
    return {"overall": n / (t_end - t_first), "sustained": (n - d_warm) / (t_end - t_warm),
            "seconds": t_end - t_first}


def latencies(bootstrap: str, topic: str, skip: int, n: int) -> np.ndarray:
    from streammoe.testing import read_topic

    recs = read_topic(bootstrap, topic, n, timeout=120)
    return np.array([json.loads(r.value)["latency_ms"] for r in recs[skip:]])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--classic", action="store_true", help="the earlier one-partition inline-label runs "
                    "(gzip variants and latency) instead of the production shape")
    ap.add_argument("--n", type=int, default=None, help="backlog events (default 60,000; classic 100,000)")
    ap.add_argument("--warmup", type=int, default=5_000, help="events excluded from 'sustained' (classic)")
    ap.add_argument("--experts", type=int, default=12)
    ap.add_argument("--engine", default=None, help="default: auto if the numba engine exists, else river")
    ap.add_argument("--checkpoint-events", type=int, default=10_000)
    ap.add_argument("--partitions", type=int, default=4, help="partitions of the input and labels topics")
    ap.add_argument("--delay", type=int, default=100, help="delayed labels: events between event and label")
    ap.add_argument("--latency-rate", type=float, default=None, help="events/s (default: see --latency-fractions)")
    ap.add_argument("--latency-fractions", default="0.25,0.5",
                    help="latency runs at these fractions of the default run's sustained throughput")
    ap.add_argument("--latency-seconds", type=float, default=20.0)
    ap.add_argument("--out", type=Path, default=None, help="write a markdown report here")
    ap.add_argument("--baseline-repo", type=Path, default=None,
                    help="another checkout (e.g. a worktree of main) whose `serve` is also measured, one process")
    args = ap.parse_args()
    if args.n is None:
        args.n = 100_000 if args.classic else 60_000
    (classic if args.classic else shape)(args)


# --- the production shape: 4 partitions, delayed labels, a backlog, one then two processes -----

try:  # the optional faster producer client: measured too when it is installed
    import confluent_kafka  # noqa: F401

    FAST = {"STREAMMOE_KAFKA__PRODUCER_CLIENT": "confluent-kafka"}
except ImportError:
    FAST = {}

def cli_generate(bootstrap: str, topic: str, labels_topic: str, n: int, partitions: int, delay: int,
                 **extra_env: str) -> dict:
    """``streammoe generate`` as an operator runs it; records/s from its own report (the send
    loop) and from the wall clock of the whole command (interpreter start-up included)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    env.update(extra_env)
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "streammoe", "generate", "sea_a", "--n", str(n), "--seed", "1",
                          "--bootstrap-servers", bootstrap, "--topic", topic, "--labels", "delayed",
                          "--labels-topic", labels_topic, "--delay", str(delay), "--partitions", str(partitions)],
                         capture_output=True, text=True, env=env, cwd=REPO, timeout=600)
    wall = time.perf_counter() - t0
    if out.returncode != 0:
        raise RuntimeError(f"generate failed: {out.stdout[-2000:]}{out.stderr[-2000:]}")
    m = re.search(r"in ([0-9.]+) s", out.stdout)
    loop = float(m.group(1)) if m else wall
    return {"records": 2 * n, "loop_s": loop, "wall_s": wall, "rate": 2 * n / loop, "rate_wall": 2 * n / wall}


def consume_ceiling(bootstrap: str, topics: list, partitions: int, n: int) -> float:
    """Records/s of kafka-python fetching every partition of ``topics`` from the start and
    decoding each record (no model, no producing)."""
    from kafka import KafkaConsumer, TopicPartition

    from streammoe.service.schema import decode_label

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, max_poll_records=2000)
    tps = [TopicPartition(t, p) for t in topics for p in range(partitions)]
    consumer.assign(tps)
    consumer.seek_to_beginning(*tps)
    got, t0 = 0, None
    try:
        while got < n:
            for tp, recs in consumer.poll(timeout_ms=500).items():
                if t0 is None:
                    t0 = time.perf_counter()
                decode = decode_event if tp.topic == topics[0] else decode_label
                for r in recs:
                    decode(r.value)
                got += len(recs)
        return n / (time.perf_counter() - t0)
    finally:
        consumer.close()


def drain_all(procs: list, n: int, timeout: float = 900.0, stall: float = 15.0) -> dict:
    """Sample the processes' counters until ``n`` predictions and ``n`` labels learned (or no
    progress for ``stall`` s); events/s from the first prediction to the last label learned."""
    deadline = time.monotonic() + timeout
    t_first = t_last = None
    last = (-1.0, -1.0)
    t_progress = time.monotonic()
    while time.monotonic() < deadline:
        pred = sum(max(0.0, p.counter("streammoe_predictions_total")) for p in procs)
        learned = sum(max(0.0, p.counter("streammoe_learned_total")) for p in procs)
        now = time.perf_counter()
        if pred > 0 and t_first is None:
            t_first = now
        if (pred, learned) != last:
            last, t_last, t_progress = (pred, learned), now, time.monotonic()
        if pred >= n and learned >= n:
            break
        if t_first is not None and time.monotonic() - t_progress > stall:
            break
        time.sleep(0.05)
    dead = sum(max(0.0, p.counter("streammoe_dead_letters_total")) for p in procs)
    first_pred = (t_first - min(p.launched for p in procs)) if t_first else float("nan")
    return {"predicted": last[0], "learned": last[1], "dead": dead, "seconds": (t_last - t_first) if t_first else 0.0,
            "rate": last[0] / (t_last - t_first) if t_first and t_last > t_first else 0.0,
            "first_prediction_s": first_pred}


def startup(name: str, bootstrap: str, redis_url: str, topics: dict, params: dict, every: int, work: Path,
            **extra_env: str) -> dict:
    """Seconds from launching ``serve`` to: its HTTP endpoint answering, partitions owned, and
    the first prediction (numba cache warm: the earlier runs compiled everything)."""
    serve = ServeProcess(name, bootstrap, redis_url, topics, params, every, work, **extra_env)
    marks: dict = {}
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and "first_prediction" not in marks:
            owned = serve.counter("streammoe_owned_partitions")
            now = time.perf_counter() - serve.launched
            if owned >= 0:
                marks.setdefault("http_up", now)
            if owned >= 1:
                marks.setdefault("partitions_owned", now)
            if serve.counter("streammoe_predictions_total") > 0:
                marks["first_prediction"] = now
            time.sleep(0.02)
    finally:
        serve.stop()
    return marks


def shape(args) -> None:
    engine = args.engine or pick_engine()
    params = {"n_experts": args.experts, "engine": engine, "seed": 1}
    n, parts = args.n, args.partitions
    events = list(open_source("sea_a", n=n, seed=1))
    work = Path(tempfile.mkdtemp(prefix="smoe-bench-"))
    load_before = os.getloadavg()
    print(f"engine {engine}, {n} events, {parts} partitions, labels {args.delay} events late, workdir {work}",
          flush=True)
    r: dict = {}
    with TansuBroker(workdir=work) as broker, RedisServer(workdir=work, appendonly=True) as redis:
        create_topics(broker.bootstrap, {"in": parts, "lab": parts, "pred": parts, "dlq": 1, "sink": 1,
                                         "in-c": parts, "lab-c": parts, "pred-c": parts})
        r["generate"] = cli_generate(broker.bootstrap, "in", "lab", n, parts, args.delay)
        print(f"streammoe generate: {r['generate']['rate']:,.0f} records/s (send loop), "
              f"{r['generate']['rate_wall']:,.0f} records/s (whole command)", flush=True)
        if FAST:
            r["generate_fast"] = cli_generate(broker.bootstrap, "in-c", "lab-c", n, parts, args.delay, **FAST)
            print(f"streammoe generate, confluent-kafka: {r['generate_fast']['rate']:,.0f} records/s (send loop), "
                  f"{r['generate_fast']['rate_wall']:,.0f} records/s (whole command)", flush=True)
        r["consume"] = consume_ceiling(broker.bootstrap, ["in", "lab"], parts, 2 * n)
        print(f"kafka-python consume + decode: {r['consume']:,.0f} records/s", flush=True)
        r["produce"] = produce_ceiling(broker.bootstrap, "sink", n)
        print(f"kafka-python produce of predictions: {r['produce']:,.0f} records/s", flush=True)
        r["engine"] = model_rate(events, params, min(2000, n // 10))
        print(f"embedded engine, DriftMoE().predict_learn_many: {r['engine']:,.0f} events/s", flush=True)
        topics = {"input_topic": "in", "labels_topic": "lab", "predictions_topic": "pred", "deadletter_topic": "dlq"}
        runs = [("one", 1, {}), ("two", 2, {})] + ([("one_fast", 1, FAST), ("two_fast", 2, FAST)] if FAST else [])
        if args.baseline_repo:
            runs.insert(0, ("one_base", 1, {}))
        for label, count, env in runs:
            repo = args.baseline_repo if label == "one_base" else REPO
            procs = [ServeProcess(f"bench-{label}", broker.bootstrap, redis.url,
                                  dict(topics, predictions_topic="pred-c") if env else topics, params,
                                  args.checkpoint_events, work, tag=f"-{i}", repo=repo, **env) for i in range(count)]
            try:
                r[label] = drain_all(procs, n)
            finally:
                r[label]["exit"] = [p.stop() for p in procs]
            d = r[label]
            print(f"serve x{count}{' (confluent-kafka producer)' if env else ''}: {d['rate']:,.0f} events/s "
                  f"({d['predicted']:,.0f} predicted, {d['learned']:,.0f} "
                  f"learned, {d['dead']:,.0f} dead letters, {d['seconds']:.1f} s), first prediction "
                  f"{d['first_prediction_s']:.2f} s after launch", flush=True)
        r["startup"] = startup("bench-start", broker.bootstrap, redis.url, topics, params, args.checkpoint_events,
                               work)
        r["startup_short"] = startup("bench-start-short", broker.bootstrap, redis.url, topics, params,
                                     args.checkpoint_events, work, STREAMMOE_KAFKA__SESSION_TIMEOUT_MS="2000",
                                     STREAMMOE_KAFKA__HEARTBEAT_INTERVAL_MS="500")
        print(f"warm start-up (session 6 s): {r['startup']}; (session 2 s): {r['startup_short']}", flush=True)
    shutil.rmtree(work, ignore_errors=True)
    r["load"] = (load_before, os.getloadavg())
    report = render_shape(args, engine, r)
    print(report)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(report)


def render_shape(args, engine: str, r: dict) -> str:
    import kafka

    one, two, eng = r["one"], r["two"], r["engine"]
    cpu = platform.processor()
    if os.path.exists("/proc/cpuinfo"):
        cpu = next((ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name")), cpu)
    (b1, b5, b15), (a1, a5, a15) = r["load"]
    st, ss = r["startup"], r["startup_short"]
    g, nan = r["generate"], float("nan")

    def row(*cells: str) -> str:
        return "| " + " | ".join(cells) + " |"

    def boot(m: dict) -> str:
        return (f"partitions owned at {m.get('partitions_owned', nan):.2f} s, "
                f"HTTP up at {m.get('http_up', nan):.2f} s")

    rows = [
        row("embedded engine, `DriftMoE().predict_learn_many` on the same events (batches of 2,000, 1 BLAS thread)",
            f"{eng:,.0f} events/s", "1.00", "baseline"),
        row("one `serve` process draining the backlog (first prediction to last label learned)",
            f"{one['rate']:,.0f} events/s", f"{one['rate'] / eng:.2f} of the engine", ">= 0.50"),
        row("two `serve` processes in one consumer group", f"{two['rate']:,.0f} events/s",
            f"{two['rate'] / one['rate']:.2f} x one process", ">= 1.5"),
        row("warm start-up, launch to first prediction (`kafka.session_timeout_ms` 6,000)",
            f"{st.get('first_prediction', nan):.2f} s", boot(st), "<= 2 s"),
        row("warm start-up, `kafka.session_timeout_ms` 2,000", f"{ss.get('first_prediction', nan):.2f} s",
            boot(ss), "<= 2 s"),
        row(f"`streammoe generate` ({g['records']:,} records: events + labels), send loop",
            f"{g['rate']:,.0f} records/s", f"whole command {g['rate_wall']:,.0f} records/s ({g['wall_s']:.1f} s)",
            ">= 30,000"),
    ]
    if "one_base" in r:
        b = r["one_base"]
        rows.append(row("one `serve` process of the baseline checkout (`--baseline-repo`)",
                        f"{b['rate']:,.0f} events/s",
                        f"{b['rate'] / eng:.2f} of the engine; this branch {one['rate'] / b['rate']:.2f} x it", ""))
    if "one_fast" in r:
        o, t, gf = r["one_fast"], r["two_fast"], r["generate_fast"]
        rows += [
            row('one `serve` process, `kafka.producer_client = "confluent-kafka"` (optional)',
                f"{o['rate']:,.0f} events/s", f"{o['rate'] / eng:.2f} of the engine", ">= 0.50"),
            row("two `serve` processes, confluent-kafka producer", f"{t['rate']:,.0f} events/s",
                f"{t['rate'] / o['rate']:.2f} x one process", ">= 1.5"),
            row("`streammoe generate`, confluent-kafka producer, send loop", f"{gf['rate']:,.0f} records/s",
                f"whole command {gf['rate_wall']:,.0f} records/s ({gf['wall_s']:.1f} s)", ">= 30,000"),
        ]
    rows += [
        row("kafka-python consume + decode of both topics, no model (ceiling)", f"{r['consume']:,.0f} records/s",
            f"{r['consume'] / 2 / eng:.2f} of the engine (2 records per event)", ""),
        row("kafka-python produce of prediction-sized records (ceiling)", f"{r['produce']:,.0f} records/s",
            f"{r['produce'] / eng:.2f} of the engine", ""),
    ]
    table = "\n".join(rows)
    return f"""# `streammoe serve` at production shape: throughput, scaling, start-up

Command: `python benchmarks/serve_throughput.py --n {args.n}` ({time.strftime('%Y-%m-%d %H:%M')}).
Machine: {os.cpu_count()} CPU cores ({cpu}), shared; load average {b1:.1f} / {b5:.1f} / {b15:.1f} (1/5/15 min)
before the run, {a1:.1f} / {a5:.1f} / {a15:.1f} after.  kafka-python {kafka.__version__}, Tansu broker
(in-memory), redis-server with AOF.  Stream: SEA (`sea_a`, seed 1), {args.n:,} events written by
`streammoe generate --labels delayed --delay {args.delay} --partitions {args.partitions}`: {args.partitions} input
and {args.partitions} labels partitions, every label {args.delay} events after its event.  Model: DriftMoE,
{args.experts} experts, engine `{engine}`, checkpoint every {args.checkpoint_events:,} records.  Every figure below
was measured in this one run.

| measurement | figure | ratio | target |
|---|---:|---:|---|
{table}

Correctness in the same runs: one process predicted {one['predicted']:,.0f} and learned {one['learned']:,.0f} of
{args.n:,} ({one['dead']:,.0f} dead letters); two processes predicted {two['predicted']:,.0f} and learned
{two['learned']:,.0f} ({two['dead']:,.0f} dead letters).  Exit codes {one['exit']} / {two['exit']}.
"""


def classic(args) -> None:
    engine = args.engine or pick_engine()
    params = {"n_experts": args.experts, "engine": engine, "seed": 1}
    events = list(open_source("sea_a", n=args.n, seed=1))
    work = Path(tempfile.mkdtemp(prefix="smoe-bench-"))
    print(f"engine {engine}, {args.n} events, workdir {work}", flush=True)
    with TansuBroker(workdir=work) as broker, RedisServer(workdir=work, appendonly=True) as redis:
        names = ("in", "lab", "pred-default", "pred-gzip", "pred-gzip-nocrc", "dlq", "sink")
        create_topics(broker.bootstrap, {t: 1 for t in names})
        t0 = time.perf_counter()
        produce(broker.bootstrap, "in", events)
        print(f"produced the backlog in {time.perf_counter() - t0:.1f} s", flush=True)
        ceil = ceiling(broker.bootstrap, "in", args.n)
        print(f"ceiling (consume + decode): {ceil:,.0f} events/s", flush=True)
        model = model_rate(events, params, args.warmup)
        print(f"model alone (predict_learn_many): {model:,.0f} events/s", flush=True)

        sink = produce_ceiling(broker.bootstrap, "sink", args.n)
        print(f"produce ceiling (send + flush): {sink:,.0f} records/s", flush=True)

        runs = {}
        variants = (("default", {}), ("gzip", {"STREAMMOE_KAFKA__COMPRESSION_TYPE": "gzip"}),
                    ("gzip-nocrc", {"STREAMMOE_KAFKA__COMPRESSION_TYPE": "gzip",
                                    "STREAMMOE_SERVE__CHECK_CRCS": "false"}))
        for label, extra in variants:
            topics = {"input_topic": "in", "labels_topic": "lab", "predictions_topic": f"pred-{label}",
                      "deadletter_topic": "dlq"}
            serve = ServeProcess(f"bench-{label}", broker.bootstrap, redis.url, topics, params,
                                 args.checkpoint_events, work, **extra)
            try:
                thr = drain(serve, args.n, args.warmup)
                thr["checkpoints"] = serve.counter("streammoe_checkpoints_total")
            finally:
                thr["exit"] = serve.stop()
            runs[label] = thr
            print(f"serve ({label}): {thr['sustained']:,.0f} events/s sustained ({thr['overall']:,.0f} overall), "
                  f"{thr['checkpoints']:.0f} checkpoints, exit {thr['exit']}", flush=True)

        fractions = [float(f) for f in args.latency_fractions.split(",")]
        rates = [args.latency_rate] if args.latency_rate else [max(100.0, round(f * runs["default"]["sustained"], -2))
                                                              for f in fractions]
        latency_rows = []
        for k, rate in enumerate(rates):
            n_lat = int(rate * args.latency_seconds)
            warm = min(args.warmup, n_lat // 5)
            topics2 = {"input_topic": f"in-lat{k}", "labels_topic": f"lab-lat{k}", "predictions_topic": f"pred-lat{k}",
                       "deadletter_topic": "dlq"}
            create_topics(broker.bootstrap, {t: 1 for t in topics2.values()})
            serve = ServeProcess(f"bench-latency-{k}", broker.bootstrap, redis.url, topics2, params,
                                 args.checkpoint_events, work)
            try:
                while serve.counter("streammoe_owned_partitions") < 1:
                    time.sleep(0.1)
                lat_events = list(open_source("sea_a", n=n_lat, seed=2))
                sent = produce(broker.bootstrap, topics2["input_topic"], lat_events, rate=rate)
                lat = latencies(broker.bootstrap, topics2["predictions_topic"], warm, n_lat)
            finally:
                serve.stop()
            p50, p99, pmax = np.percentile(lat, 50), np.percentile(lat, 99), lat.max()
            latency_rows.append((rate, sent, n_lat, warm, p50, p99, pmax))
            print(f"latency at {sent:,.0f} events/s: p50 {p50:.1f} ms, p99 {p99:.1f} ms, max {pmax:.1f} ms",
                  flush=True)

    shutil.rmtree(work, ignore_errors=True)
    report = render(args, engine, ceil, sink, model, runs, latency_rows)
    print(report)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(report)




def render(args, engine, ceil, sink, model, runs, latency_rows) -> str:
    import kafka
    import redis

    cpu = platform.processor()
    if os.path.exists("/proc/cpuinfo"):
        cpu = next((ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name")), cpu)
    rows = []
    for label, thr in runs.items():
        what = {"default": "default settings", "gzip": "`kafka.compression_type = \"gzip\"`",
                "gzip-nocrc": "gzip and `serve.check_crcs = false`"}[label]
        rows.append(f"| `serve` sustained, {what} (after {args.warmup:,} warm-up events) | "
                    f"{thr['sustained']:,.0f} | {100 * thr['sustained'] / ceil:.0f}% |")
        rows.append(f"| `serve` whole backlog, {what} ({thr['seconds']:.1f} s, {thr['checkpoints']:.0f} checkpoints) | "
                    f"{thr['overall']:,.0f} | {100 * thr['overall'] / ceil:.0f}% |")
    table = "\n".join(rows)
    lat_table = "\n".join(f"| {sent:,.0f} | {n_lat - warm:,} | {p50:.1f} | {p99:.1f} | {pmax:.1f} |"
                          for rate, sent, n_lat, warm, p50, p99, pmax in latency_rows)
    return f"""# `streammoe serve` throughput and latency

Command: `python benchmarks/serve_throughput.py --n {args.n}` ({time.strftime('%Y-%m-%d')}).
Machine: {os.cpu_count()} CPU cores ({cpu}), shared with other work; Python {platform.python_version()},
kafka-python {kafka.__version__} (CRC32C in {crc32c_impl()}), redis-py {redis.__version__}, Tansu broker
(in-memory), redis-server with AOF.  Setup: one `serve` subprocess, one partition, DriftMoE with
{args.experts} experts, engine `{engine}`, inline labels (every event predicted then learned), checkpoint
every {args.checkpoint_events:,} events, SEA stream (3 features, 2 classes).

| measurement | events/s | share of the consume ceiling |
|---|---:|---:|
| kafka-python consume + decode (the ceiling) | {ceil:,.0f} | 100% |
| kafka-python produce of prediction-sized records alone | {sink:,.0f} | {100 * sink / ceil:.0f}% |
| model alone, `predict_learn_many` in batches of 2,000 (no Kafka) | {model:,.0f} | {100 * model / ceil:.0f}% |
{table}

Latency, event `ts` to prediction produced, default settings, with events arriving at a fixed rate
from a generator on the same 2 cores (the first events of each run excluded):

| arrival rate (events/s) | events | p50 (ms) | p99 (ms) | max (ms) |
|---:|---:|---:|---:|---:|
{lat_table}

Notes. The daemon produces from a child process (`serve.producer_process`, the default), so
kafka-python's per-record produce work runs on the second core. Without the `crc32c` package,
kafka-python checksums every record batch in pure Python (about 0.18 us per byte here): on the
consumer side that is what `serve.check_crcs = false` skips, and gzip shrinks what the producer
has to checksum. Installing `crc32c` should recover most of the difference without turning
checks off.
"""


if __name__ == "__main__":
    main()
