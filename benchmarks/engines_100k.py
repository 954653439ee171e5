"""Accuracy and speed of the two DriftMoE engines on the six paper streams (100k events each).

    python benchmarks/engines_100k.py [--n 100000] [--out benchmarks/results/engines_100k.json]

Both engines run the same algorithm on the same events (prequential, batches of 512); the array
engine's trees use river's statistics and split rule, so their accuracies should agree.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

from streammoe import DriftMoE
from streammoe.connectors import SYNTHETIC_STREAMS, open_source


def run(name: str, n: int, engine: str, seed: int) -> dict:
    events = list(open_source(name, n=n, seed=seed))
    xs, ys = [x for x, _ in events], [y for _, y in events]
    model, preds = DriftMoE(engine=engine, seed=seed), []
    t = time.perf_counter()
    for i in range(0, n, 512):
        preds += [p for p, _ in model.predict_learn_many(xs[i:i + 512], ys[i:i + 512], proba=False)]
    return {"accuracy": float(np.mean([p == y for p, y in zip(preds, ys)])),
            "events_per_s": n / (time.perf_counter() - t)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/engines_100k.json"))
    args = ap.parse_args()
    out = {}
    with threadpool_limits(1):
        for name in SYNTHETIC_STREAMS:
            out[name] = {engine: run(name, args.n, engine, args.seed) for engine in ("numba", "river")}
            print(name, out[name], flush=True)
    args.out.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
