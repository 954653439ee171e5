"""Neural presets: the windowed path against the per-event path, events/s on one core.

Why: a pool of neural experts used to run every event through Python, expert by expert
(2-8k events/s).  ``DriftMoE.predict_learn_many`` now runs each router window through one
compiled pass per expert (:mod:`streammoe.experts.neural_window`), with identical results.
This measures both paths on the same events in the same process, alternating them ``--repeat``
times (the machine may be shared: compare the ratios, not absolute figures), and checks that
their predictions are identical.

* windowed: ``predict_learn_many`` over chunks of 512 events, as ``streammoe replay`` calls it;
* per-event: ``predict_proba_one`` then ``learn_one`` per event, which is what
  ``predict_learn_many`` did for these pools before.

Both run after a warm-up on the first 2,000 events (Numba compilation or cache loading).
events/s is given on wall time and on the process's CPU time (one thread: the CPU-time figure is
what one free core would give, less sensitive to other work on the machine).

    python benchmarks/neural_speed.py --n 50000 --repeat 3
"""
from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from streammoe.connectors.synthetic import SyntheticSource
from streammoe.presets import make_model

CHUNK = 512


def windowed(model, xs, ys) -> list:
    out = []
    for s in range(0, len(xs), CHUNK):
        out += [p for p, _ in model.predict_learn_many(xs[s:s + CHUNK], ys[s:s + CHUNK], proba=False)]
    return out


def per_event(model, xs, ys) -> list:
    return [model._predict_learn_one(x, y, proba=False)[0] for x, y in zip(xs, ys)]


def timed(run, preset: str, seed: int, xs, ys) -> tuple[list, float, float]:
    model = make_model(preset, seed=seed)
    wall, cpu = time.perf_counter(), time.process_time()
    preds = run(model, xs, ys)
    return preds, len(xs) / (time.perf_counter() - wall), len(xs) / (time.process_time() - cpu)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=50_000)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--streams", default="sea_a,led_a")
    ap.add_argument("--presets", default="driftmoe-neural")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "neural_speed.md"))
    args = ap.parse_args()
    rows = []
    for stream in args.streams.split(","):
        events = list(SyntheticSource(stream, n=args.n, seed=args.seed))
        xs, ys = [x for x, _ in events], [y for _, y in events]
        for preset in args.presets.split(","):
            for run in (windowed, per_event):  # warm-up: compilation / cache loading
                run(make_model(preset, seed=args.seed), xs[:2000], ys[:2000])
            fast, slow = {"wall": [], "cpu": []}, {"wall": [], "cpu": []}
            ratios, same = [], True
            for _ in range(args.repeat):
                pf, fw, fc = timed(windowed, preset, args.seed, xs, ys)
                ps, sw, sc = timed(per_event, preset, args.seed, xs, ys)
                same &= pf == ps
                fast["wall"].append(fw), fast["cpu"].append(fc)
                slow["wall"].append(sw), slow["cpu"].append(sc)
                ratios.append(fc / sc)
            acc = sum(p == y for p, y in zip(pf, ys)) / len(ys)
            rows.append((stream, preset, acc, same, fast, slow, ratios))
            print(stream, preset, f"windowed {statistics.median(fast['cpu']):,.0f} ev/s cpu, per-event "
                  f"{statistics.median(slow['cpu']):,.0f}, ratio {statistics.median(ratios):.2f}, same={same}")
    med = statistics.median
    lines = [f"# Neural presets: windowed vs per-event path (n={args.n}, seed {args.seed}, {args.repeat} "
             "alternating repeats, one thread)", "",
             "events/s: median over the repeats, on CPU time (wall time in brackets); ratio: median of the "
             "per-repeat CPU-time ratios.  `identical`: both paths gave the same prediction for every event.", "",
             "| stream | preset | accuracy | windowed, events/s | per-event, events/s | ratio | identical |",
             "|---|---|---:|---:|---:|---:|---|"]
    for stream, preset, acc, same, fast, slow, ratios in rows:
        lines.append(f"| {stream} | {preset} | {acc:.4f} | {med(fast['cpu']):,.0f} ({med(fast['wall']):,.0f}) | "
                     f"{med(slow['cpu']):,.0f} ({med(slow['wall']):,.0f}) | {med(ratios):.2f} | {same} |")
    Path(args.out).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
