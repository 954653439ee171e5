"""End-to-end throughput and latency of ``streammoe serve`` on this machine.

One ``serve`` process (a subprocess, as deployed), one partition, a 12-expert DriftMoE with
the fastest engine available (``auto`` when this checkout has the numba engine, else
``river``), inline labels, checkpoint every 10,000 events, Redis with AOF on, Tansu as the
broker.  Four measurements, each alone on the machine:

1. **ceiling**: kafka-python consume + ``decode_event`` of the same backlog, no model;
2. **model**: ``DriftMoE.predict_learn_many`` on the same events in batches, no Kafka;
3. **throughput**: the daemon draining a backlog of ``--n`` events, sampled from its
   ``/metrics`` every 50 ms; "sustained" excludes the first ``--warmup`` events (compilation);
4. **latency**: a fresh daemon fed at a fixed rate (``--latency-rate``, default 25% and 50% of
   the measured throughput) for ``--latency-seconds``; latency is the daemon's ``latency_ms``
   field (event ``ts`` to prediction produced) read back from the predictions topic.  The
   generator runs on the same cores as the daemon, the broker and Redis.

Run: ``python benchmarks/serve_throughput.py [--n 100000] [--out benchmarks/results/serve_throughput.md]``
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
                 workdir: Path, **extra_env: str):
        self.port = free_port()
        env = dict(os.environ)
        env.update({
            "PYTHONPATH": os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]),
            "STREAMMOE_KAFKA__BOOTSTRAP_SERVERS": bootstrap, "STREAMMOE_KAFKA__GROUP_ID": name,
            "STREAMMOE_KAFKA__SESSION_TIMEOUT_MS": "6000", "STREAMMOE_KAFKA__HEARTBEAT_INTERVAL_MS": "1000",
            **{f"STREAMMOE_KAFKA__{k.upper()}": v for k, v in topics.items()},
            "STREAMMOE_REDIS__URL": redis_url, "STREAMMOE_MODEL__NAME": name,
            "STREAMMOE_MODEL__PARAMS": json.dumps(params),
            "STREAMMOE_CHECKPOINT__EVERY_EVENTS": str(every), "STREAMMOE_CHECKPOINT__EVERY_SECONDS": "3600",
            "STREAMMOE_HTTP__PORT": str(self.port), "STREAMMOE_LOG_LEVEL": "WARNING",
        })
        env.update(extra_env)
        self.log = open(workdir / f"serve-{name}.log", "wb")
        self.proc = subprocess.Popen([sys.executable, "-m", "streammoe", "serve"], env=env, cwd=REPO,
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
    ap.add_argument("--n", type=int, default=100_000, help="backlog events for the throughput run")
    ap.add_argument("--warmup", type=int, default=5_000, help="events excluded from 'sustained'")
    ap.add_argument("--experts", type=int, default=12)
    ap.add_argument("--engine", default=None, help="default: auto if the numba engine exists, else river")
    ap.add_argument("--checkpoint-events", type=int, default=10_000)
    ap.add_argument("--latency-rate", type=float, default=None, help="events/s (default: see --latency-fractions)")
    ap.add_argument("--latency-fractions", default="0.25,0.5",
                    help="latency runs at these fractions of the default run's sustained throughput")
    ap.add_argument("--latency-seconds", type=float, default=20.0)
    ap.add_argument("--out", type=Path, default=None, help="write a markdown report here")
    args = ap.parse_args()

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
