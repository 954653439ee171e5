"""Neural experts on their own: base trained online vs frozen after warm-up, and events/s on one core.

Why: a frozen base keeps the meaning of frozen adapter units stable (the usual LoRA argument for
continual learning), an online base follows drift.  This measures which one the registered
defaults should use, on the paper's six synthetic streams, for the MoRA flavour (rank-1 units,
top-2 of 8) and the LoRA flavour (rank-4 adapters, one active), and a plain online MLP
(no adapter) for reference.  Every expert sees the stream prequentially (predict, then learn),
directly through the Expert protocol, so the figures exclude the DriftMoE router.

    python benchmarks/neural_base.py --n 50000
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from streammoe.connectors.synthetic import SyntheticSource
from streammoe.experts.neural import AdapterMixtureExpert, LoRAExpert

CONFIGS = {
    "mlp (no adapter)": (AdapterMixtureExpert, {"units": 0, "grow": 0}),
    "mora, base online": (AdapterMixtureExpert, {"base": "online"}),
    "mora, base frozen after 1000": (AdapterMixtureExpert, {"base": "frozen", "warmup": 1000}),
    "lora, base online": (LoRAExpert, {"base": "online"}),
    "lora, base frozen after 1000": (LoRAExpert, {"base": "frozen", "warmup": 1000}),
}
STREAMS = ("sea_a", "sea_g", "led_a", "led_g", "rbf_m", "rbf_f")


def arrays(name: str, n: int, seed: int):
    events = list(SyntheticSource(name, n=n, seed=seed))
    names = sorted(events[0][0])
    classes = sorted({y for _, y in events})
    X = np.array([[x[k] for k in names] for x, _ in events])
    y = np.array([classes.index(t) for _, t in events])
    return X, y, len(classes)


def evaluate(cls, options: dict, X, y, C: int, seed: int) -> tuple[float, float, float]:
    expert = cls(seed=seed, **options)
    hits = np.zeros(len(y), dtype=bool)
    t = time.perf_counter()
    for i, (x, target) in enumerate(zip(X, y)):
        hits[i] = np.argmax(expert.predict_proba(x, C)) == target
        expert.learn(x, int(target))
    rate = len(y) / (time.perf_counter() - t)
    return float(hits.mean()), float(hits[-len(y) // 4:].mean()), rate


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=50_000)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "neural_base.md"))
    args = ap.parse_args()
    lines = [f"# Neural experts alone: base online vs frozen (n={args.n}, seed {args.seed}, one core)", "",
             "accuracy = prequential accuracy over the stream (last quarter in brackets); events/s = "
             "predict + learn per event through the Expert protocol.", "",
             "| stream | " + " | ".join(CONFIGS) + " |", "|---|" + "---|" * len(CONFIGS)]
    rates: dict[str, list[float]] = {k: [] for k in CONFIGS}
    for stream in STREAMS:
        X, y, C = arrays(stream, args.n, args.seed)
        cells = []
        for label, (cls, options) in CONFIGS.items():
            acc, last, rate = evaluate(cls, options, X, y, C, args.seed)
            rates[label].append(rate)
            cells.append(f"{acc:.4f} ({last:.3f})")
        lines.append(f"| {stream} | " + " | ".join(cells) + " |")
        print(lines[-1], flush=True)
    lines.append("| events/s (median) | " + " | ".join(f"{np.median(r):.0f}" for r in rates.values()) + " |")
    text = "\n".join(lines) + "\n"
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
