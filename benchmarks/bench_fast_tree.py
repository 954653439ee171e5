"""Micro-benchmark of the fast engine's core: the windowed DriftMoE loop over a TreePool.

Measures steady-state events/s of ``run_window`` (12 trees, top-3, windows of 256 events, the
router weights drawn once per event as softmax(logits / 0.8) of random logits, since only the
tree work is timed here) on SEA (3 features, 2 classes) and LED (24 features, 10 classes, 10%
noise), and separately the first call (Numba compile, or cache load when the on-disk cache is
warm).  Run:  python benchmarks/bench_fast_tree.py [--events 200000] [--river 20000] [--cold]

``--river N`` also times river's HoeffdingTreeClassifier alone on N events for scale;
``--cold`` compiles into a fresh, temporary Numba cache so the first call shows compile time;
``--exact`` runs the pool with ``river_exact=True``.
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time

import numpy as np
from river.datasets import synth


def make_stream(name: str, n: int) -> tuple[np.ndarray, np.ndarray]:
    gen = (synth.SEA(variant=0, seed=1) if name == "sea"
           else synth.LED(seed=1, noise_percentage=0.1, irrelevant_features=True))
    X, Y = [], []
    for x, y in gen.take(n):
        X.append(list(x.values()))
        Y.append(int(y))
    return np.asarray(X, dtype=np.float64), np.asarray(Y, dtype=np.int64)


def router_weights(n: int, E: int, seed: int) -> np.ndarray:
    logits = np.random.default_rng(seed).normal(size=(n, E))
    z = np.exp((logits - logits.max(axis=1, keepdims=True)) / 0.8)
    return z / z.sum(axis=1, keepdims=True)


def bench(name: str, n: int, E: int = 12, k: int = 3, window: int = 256, combine: str = "top1",
          exact: bool = False) -> dict:
    from streammoe.experts.fast_loop import run_window
    from streammoe.experts.fast_tree import TreePool

    X, Y = make_stream(name, n)
    W = router_weights(n, E, seed=7)
    C = int(Y.max()) + 1
    t0 = time.perf_counter()
    warm = TreePool(E, X.shape[1], C, grace_period=50, delta=1e-7, river_exact=exact)
    run_window(warm, W[:window], X[:window], Y[:window], k, combine)
    first_call = time.perf_counter() - t0
    pool = TreePool(E, X.shape[1], C, grace_period=50, delta=1e-7, river_exact=exact)
    correct = 0
    t0 = time.perf_counter()
    for s in range(0, n, window):
        r = run_window(pool, W[s:s + window], X[s:s + window], Y[s:s + window], k, combine)
        correct += int((r.y_pred == Y[s:s + window]).sum())
    dt = time.perf_counter() - t0
    return {"stream": name, "events": n, "events_per_s": n / dt, "first_call_s": first_call,
            "accuracy": correct / n, "nodes": [pool.n_nodes(t) for t in range(E)],
            "bytes_per_tree": pool.nbytes_per_tree()}


def bench_river(name: str, n: int) -> float:
    from river import tree

    gen = (synth.SEA(variant=0, seed=1) if name == "sea"
           else synth.LED(seed=1, noise_percentage=0.1, irrelevant_features=True))
    data = list(gen.take(n))
    ht = tree.HoeffdingTreeClassifier(grace_period=50, delta=1e-7)
    t0 = time.perf_counter()
    for x, y in data:
        ht.predict_one(x)
        ht.learn_one(x, y)
    return n / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=200_000)
    ap.add_argument("--combine", default="top1", choices=("top1", "mixture"))
    ap.add_argument("--river", type=int, default=0, help="also time one river tree on this many events")
    ap.add_argument("--cold", action="store_true", help="compile into a fresh Numba cache")
    ap.add_argument("--exact", action="store_true", help="river_exact=True")
    args = ap.parse_args()
    if args.cold:
        os.environ["NUMBA_CACHE_DIR"] = tempfile.mkdtemp(prefix="streammoe-numba-")
    for name in ("sea", "led"):
        r = bench(name, args.events, combine=args.combine, exact=args.exact)
        print(f"{name}: {r['events_per_s']:,.0f} events/s over {r['events']:,} events "
              f"(12 trees, top-3, {args.combine}{', river_exact' if args.exact else ''}); "
              f"first call {r['first_call_s']:.2f} s; "
              f"accuracy {r['accuracy']:.4f}; nodes/tree {r['nodes']}; {r['bytes_per_tree']:,} B/tree")
        if args.river:
            rate = bench_river(name, args.river)
            print(f"{name}: river HoeffdingTreeClassifier alone (1 tree): {rate:,.0f} events/s")


if __name__ == "__main__":
    main()
