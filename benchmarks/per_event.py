"""Per-event speed inside river's ``evaluate.progressive_val_score``: DriftMoE's compiled
per-event path against river's HoeffdingTreeClassifier and against the reference-style loop
(``engine='river'``), side by side in one process on the same events.

Why this benchmark: river users call ``predict_one`` / ``learn_one`` once per event, so the
windowed ``predict_learn_many`` speed-up does not reach them; the targets (issue 13) are at
least HoeffdingTree's events/s and at least 10x the reference-style loop.

    PYTHONPATH=$PWD python benchmarks/per_event.py --n 20000 --out benchmarks/results/per_event.md

Each model first runs a short warm-up on a throwaway instance (Numba compilation or its disk
cache), then fresh instances are timed, taking turns slice by slice (see :func:`measure`).  The
reference-style loop is slow; ``--slow-n`` runs it on the first events only (by default it runs
on all of them, like for like).
"""
from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

os.environ.setdefault("NUMBA_NUM_THREADS", "1")


def _models(seed: int) -> dict:
    from river import tree

    from streammoe.model import DriftMoE

    return {
        "DriftMoE numba (per event)": lambda: DriftMoE(engine="numba", seed=seed),
        "river HoeffdingTree": lambda: tree.HoeffdingTreeClassifier(),
        "DriftMoE river (reference loop)": lambda: DriftMoE(engine="river", seed=seed),
    }


def measure(stream: str, n: int, slow_n: int, seed: int, warmup: int = 2000, rounds: int = 20) -> list[dict]:
    """Each model's events/s and accuracy on the stream's first ``n`` events (``slow_n`` for the
    reference loop).  The models take turns, ``rounds`` slices of the stream each, every slice
    through ``progressive_val_score`` with the model and its metric carried over: a load that
    comes and goes on a shared machine then weighs on every model alike."""
    from river import evaluate, metrics

    from streammoe.connectors import open_source

    events = list(open_source(stream, n=n, seed=seed))
    models, spans = {}, {}
    for name, make in _models(seed).items():
        m = n if "reference" not in name else min(n, slow_n)
        evaluate.progressive_val_score(events[:min(warmup, m // 10 or 1)], make(), metrics.Accuracy())
        models[name] = (make(), metrics.Accuracy(), m)
        spans[name] = 0.0
    for r in range(rounds):
        for name, (model, metric, m) in models.items():
            part = events[m * r // rounds:m * (r + 1) // rounds]
            t0 = time.perf_counter()
            evaluate.progressive_val_score(part, model, metric)
            spans[name] += time.perf_counter() - t0
    rows = []
    for name, (model, metric, m) in models.items():
        rows.append({"stream": stream, "model": name, "n": m, "accuracy": metric.get(),
                     "events_per_s": m / spans[name]})
        print(f"  {stream:6s} {name:32s} n={m:>7,d} acc={100 * metric.get():6.2f}% {m / spans[name]:>9,.0f} ev/s",
              flush=True)
    return rows


def markdown(rows: list[dict], n: int, slow_n: int, seed: int) -> str:
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    lines = [f"# Per-event speed in river's progressive_val_score — {time.strftime('%Y-%m-%d %H:%M')}", "",
             f"Machine: {platform.machine()}, {os.cpu_count()} cores; Python {platform.python_version()}; seed {seed}; "
             f"{n:,} events per stream (the reference loop: the first {slow_n:,}); one process, the models taking "
             "turns over 20 slices of the stream, each after a warm-up on a throwaway instance."
             + (f" Load average at the end: {', '.join(f'{v:.2f}' for v in load)} (compare ratios, not events/s)."
                if load else ""), "",
             "| stream | model | events | accuracy | events/s |", "|---|---|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['stream']} | {r['model']} | {r['n']:,} | {100 * r['accuracy']:.2f}% | "
                     f"{r['events_per_s']:,.0f} |")
    lines += ["", "Ratios of the compiled per-event path (events/s, same run):", ""]
    for stream in dict.fromkeys(r["stream"] for r in rows):
        got = {r["model"]: r["events_per_s"] for r in rows if r["stream"] == stream}
        fast = got["DriftMoE numba (per event)"]
        lines.append(f"- {stream}: {fast / got['river HoeffdingTree']:.2f}x river HoeffdingTree; "
                     f"{fast / got['DriftMoE river (reference loop)']:.1f}x the reference-style loop")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--streams", default="sea_a,led_a")
    ap.add_argument("--n", type=int, default=20_000)
    ap.add_argument("--slow-n", type=int, default=0, help="events for the reference loop (0: all)")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/per_event.md"))
    args = ap.parse_args()
    args.slow_n = args.slow_n or args.n
    from threadpoolctl import threadpool_limits

    rows = []
    with threadpool_limits(1):
        for stream in args.streams.split(","):
            rows += measure(stream.strip(), args.n, args.slow_n, args.seed)
    text = markdown(rows, args.n, args.slow_n, args.seed)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
