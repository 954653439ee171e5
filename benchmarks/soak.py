"""Soak test of ``streammoe serve``: one million events, memory and throughput over time.

Why: a daemon that runs for weeks must not grow without bound (pending labels, prediction
buffers, tree nodes, metrics label sets, Python object churn) and must keep its pace.  This
script runs the real daemon (a subprocess, as deployed) against Tansu and Redis (AOF on) while a
generator feeds ``--n`` SEA events at a fixed rate with labels arriving ``--delay`` events later on
the labels topic, and samples once per ``--sample`` seconds:

* resident memory (RSS) of the daemon and of its producer child process, from ``/proc``;
* records consumed, predictions, events learned, dead letters, pending labels (its ``/metrics``).

Pass criteria (printed, and the exit status is 1 when one fails):

* memory flat: the daemon's RSS (with its children) never exceeds the level reached after the
  warm-up (``--warmup`` events) by more than 10%;
* throughput stable: every slice of 10% of the events is predicted at a rate within 25% of the
  median slice (the generator's fixed rate is the ceiling, so the daemon must simply keep up);
* zero dead letters, every event predicted, every label learned, nothing left pending.

Output: ``soak.md`` (table + verdict), ``soak.json`` (every sample) and ``soak.png`` (RSS and
throughput over events) in ``--out``.  Linux only (RSS is read from ``/proc``).

    python benchmarks/soak.py --n 1000000 --rate 15000
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from serve_throughput import ServeProcess, pick_engine  # noqa: E402

from streammoe.connectors import open_source  # noqa: E402
from streammoe.service.generate import generate  # noqa: E402
from streammoe.testing import RedisServer, TansuBroker, create_topics  # noqa: E402

PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024 if hasattr(os, "sysconf") else 4


def rss_mb(pid: int) -> float:
    """Resident memory of ``pid`` and all its descendants, in MiB (0 when it is gone)."""
    total_kb, todo, seen = 0, [pid], set()
    while todo:
        p = todo.pop()
        if p in seen:
            continue
        seen.add(p)
        try:
            with open(f"/proc/{p}/statm") as f:
                total_kb += int(f.read().split()[1]) * PAGE_KB
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as f:
                    todo.extend(int(c) for c in f.read().split())
        except (OSError, ValueError):
            continue
    return total_kb / 1024.0


def feed(bootstrap: str, events: list, rate: float, delay: int, report: dict) -> None:
    """Send ``events`` at ``rate`` events/s with labels ``delay`` events late (runs in a thread)."""
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, batch_size=256 * 1024)
    try:
        rep = generate(events, producer, "in", partitions=1, labels="delayed", labels_topic="lab",
                       delay=delay, rate=rate)
        report.update(events=rep.events, labels=rep.labels, seconds=rep.seconds)
    except Exception as exc:  # reported by the main thread, which decides the verdict
        report["error"] = repr(exc)
    finally:
        producer.close()


def sample_loop(serve: ServeProcess, n: int, every: float, timeout: float) -> list[dict]:
    """Sample until every event is predicted and every label learned (or ``timeout`` seconds)."""
    samples: list[dict] = []
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < timeout:
        s = {
            "t": time.perf_counter() - t0,
            "rss_mb": rss_mb(serve.proc.pid),
            "predictions": serve.counter("streammoe_predictions_total"),
            "learned": serve.counter("streammoe_learned_total"),
            "dead_letters": serve.counter("streammoe_dead_letters_total"),
            "pending": serve.counter("streammoe_pending_labels"),
        }
        samples.append(s)
        if serve.proc.poll() is not None:
            raise RuntimeError(f"the daemon exited with status {serve.proc.returncode}")
        if s["predictions"] >= n and s["learned"] >= n and s["pending"] == 0:
            break  # (the pending gauge is refreshed every serve.metrics_interval_s, after the counters)
        time.sleep(every)
    return samples


def verdict(samples: list[dict], n: int, warmup: int, slices: int = 10) -> dict:
    """The three soak criteria, computed from the samples."""
    warm = next((s for s in samples if s["predictions"] >= warmup), samples[-1])
    after = [s for s in samples if s["t"] >= warm["t"]]
    peak = max(s["rss_mb"] for s in after)
    growth = (peak - warm["rss_mb"]) / warm["rss_mb"]
    rates = []
    for k in range(slices):
        lo, hi = n * k // slices, n * (k + 1) // slices
        a = next(s for s in samples if s["predictions"] >= lo)
        b = next((s for s in samples if s["predictions"] >= hi), samples[-1])
        if b["t"] > a["t"]:
            rates.append((b["predictions"] - a["predictions"]) / (b["t"] - a["t"]))
    rates_sorted = sorted(rates)
    median = rates_sorted[len(rates_sorted) // 2]
    worst = max(abs(r - median) / median for r in rates)
    last = samples[-1]
    return {
        "rss_after_warmup_mb": warm["rss_mb"], "rss_peak_mb": peak, "rss_growth": growth,
        "memory_flat": growth < 0.10,
        "slice_rates": rates, "median_rate": median, "worst_slice_deviation": worst,
        "throughput_stable": worst < 0.25,
        "predictions": last["predictions"], "learned": last["learned"], "dead_letters": last["dead_letters"],
        "pending_at_end": last["pending"],
        "clean": last["dead_letters"] == 0 and last["predictions"] >= n and last["learned"] >= n
        and last["pending"] == 0,
    }


def plot(samples: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ev = [s["predictions"] for s in samples]
    fig, (a1, a2) = plt.subplots(2, 1, figsize=(8, 5.5), sharex=True)
    a1.plot(ev, [s["rss_mb"] for s in samples])
    a1.set_ylabel("daemon RSS (MiB)")
    a1.set_ylim(bottom=0)
    rate = [0.0] + [(b["predictions"] - a["predictions"]) / max(1e-9, b["t"] - a["t"])
                    for a, b in zip(samples, samples[1:])]
    a2.plot(ev, rate)
    a2.set_ylabel("predictions / s")
    a2.set_xlabel("events predicted")
    a1.set_title("streammoe serve soak")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def render(args, engine: str, fed: dict, v: dict) -> str:
    ok = lambda b: "pass" if b else "FAIL"  # noqa: E731
    slices = " / ".join(f"{r:,.0f}" for r in v["slice_rates"])
    return f"""# `streammoe serve` soak: {args.n:,} events

Command: `python benchmarks/soak.py --n {args.n} --rate {args.rate:g} --delay {args.delay}` ({time.strftime('%Y-%m-%d')}).
Machine: {os.cpu_count()} CPU cores (load average {os.getloadavg()[0]:.2f} at the end, the soak included); Python {platform.python_version()}. One `serve` subprocess, one
partition, DriftMoE with {args.experts} experts (engine `{engine}`), labels on the labels topic {args.delay} events
late, checkpoint every {args.checkpoint_events:,} events, Redis with AOF, Tansu broker (in memory); SEA
stream with drifts at 25/50/75%. The generator sent {fed.get('events', 0):,} events and {fed.get('labels', 0):,}
labels in {fed.get('seconds', 0):.0f} s.

| criterion | measured | verdict |
|---|---|---|
| memory flat (growth of the daemon's RSS after {args.warmup:,} warm-up events < 10%) | {v['rss_after_warmup_mb']:.0f} MiB after warm-up, peak {v['rss_peak_mb']:.0f} MiB ({100 * v['rss_growth']:+.1f}%) | {ok(v['memory_flat'])} |
| throughput stable (every 10% slice within 25% of the median) | median {v['median_rate']:,.0f} predictions/s, worst slice {100 * v['worst_slice_deviation']:.1f}% off | {ok(v['throughput_stable'])} |
| clean input: zero dead letters, all predicted and learned, none pending | {v['dead_letters']:.0f} dead letters, {v['predictions']:,.0f} predictions, {v['learned']:,.0f} learned, {v['pending_at_end']:.0f} pending | {ok(v['clean'])} |

Predictions/s per 10% slice of the stream: {slices}.
The generator's rate is the ceiling: a daemon that keeps up predicts at the arrival rate.
RSS covers the daemon and its producer child process. Samples: `soak.json`; plot: `soak.png`.
"""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--rate", type=float, default=15_000.0, help="events/s sent by the generator")
    ap.add_argument("--delay", type=int, default=100, help="label delay in events")
    ap.add_argument("--warmup", type=int, default=100_000, help="events before the memory baseline")
    ap.add_argument("--experts", type=int, default=12)
    ap.add_argument("--checkpoint-events", type=int, default=50_000)
    ap.add_argument("--sample", type=float, default=1.0, help="seconds between samples")
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "soak")
    args = ap.parse_args()
    if not os.path.exists("/proc/self/statm"):
        sys.exit("soak.py reads RSS from /proc: run it on Linux")

    engine = pick_engine()
    params = {"n_experts": args.experts, "engine": engine, "seed": 1}
    print(f"generating {args.n:,} events...", flush=True)
    events = list(open_source("sea_a", n=args.n, seed=1))
    work = Path(tempfile.mkdtemp(prefix="smoe-soak-"))
    fed: dict = {}
    with TansuBroker(workdir=work) as broker, RedisServer(workdir=work, appendonly=True) as redis:
        create_topics(broker.bootstrap, {"in": 1, "lab": 1, "pred": 1, "dlq": 1})
        topics = {"input_topic": "in", "labels_topic": "lab", "predictions_topic": "pred", "deadletter_topic": "dlq"}
        serve = ServeProcess("soak", broker.bootstrap, redis.url, topics, params, args.checkpoint_events, work)
        try:
            while serve.counter("streammoe_owned_partitions") < 1:
                if serve.proc.poll() is not None:
                    raise RuntimeError(f"the daemon exited with status {serve.proc.returncode}")
                time.sleep(0.1)
            feeder = threading.Thread(target=feed, args=(broker.bootstrap, events, args.rate, args.delay, fed),
                                      daemon=True)
            feeder.start()
            timeout = 3 * args.n / args.rate + 120
            samples = sample_loop(serve, args.n, args.sample, timeout)
            feeder.join(60)
        finally:
            serve.stop()
    shutil.rmtree(work, ignore_errors=True)
    if "error" in fed:
        raise RuntimeError(f"the generator failed: {fed['error']}")

    v = verdict(samples, args.n, args.warmup)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "soak.json").write_text(json.dumps({"args": {k: str(val) for k, val in vars(args).items()},
                                                    "verdict": v, "samples": samples}, indent=1))
    plot(samples, args.out / "soak.png")
    report = render(args, engine, fed, v)
    (args.out / "soak.md").write_text(report)
    print(report)
    return 0 if (v["memory_flat"] and v["throughput_stable"] and v["clean"]) else 1


if __name__ == "__main__":
    sys.exit(main())
