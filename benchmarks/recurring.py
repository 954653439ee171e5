"""Recurring-concept benchmark: accuracy and recovery after each drift, A -> B -> A streams included.

Why: the drift-aware pool (``driftmoe-adaptive``) freezes what it learned before a drift so that
a concept that comes back is recalled instead of relearned.  This script measures that claim
against the reference DriftMoE and river's ARF on

* the paper's abrupt streams ``sea_a`` (functions 1 -> 2 -> 4 -> 1: it ends on a recurring
  concept) and ``led_a`` (no recurrence), at ``--n`` events;
* three A -> B -> A streams built here (``--segment`` events per segment; concept A's generator
  simply continues after B, so A's second visit draws new events from the same concept):
  ``sea_aba`` (SEA function 1 -> 4 -> 1), ``led_aba`` (LED with 7 drifting attributes, two
  different permutations) and ``agrawal_aba`` (Agrawal function 1 -> 5 -> 1).

Recovery per drift is computed by :func:`streammoe.evaluation.recovery_after_drifts` (events
after the drift until windowed accuracy is back within 1 point of its pre-drift level, window
resolution); the script also reports the accuracy of the first evaluation window after each drift.

Each (stream, model) pair runs in its own process (``--jobs``); accuracy figures do not depend on
the machine, events/s do.  Output: one JSON per pair and ``report.md`` in ``--out``.

    python benchmarks/recurring.py --n 50000 --segment 10000 --jobs 2
"""
from __future__ import annotations

import argparse
import json
import multiprocessing
import time
from pathlib import Path
from typing import Any, Iterator

DEFAULT_STREAMS = ("sea_a", "sea_g", "led_a", "led_g", "rbf_m", "rbf_f", "sea_aba", "led_aba", "agrawal_aba")
DEFAULT_MODELS = ("driftmoe-data", "driftmoe-adaptive", "driftmoe-hetero", "driftmoe-neural", "ARF")
#: presets whose pool is plain trees without a policy run on the compiled engine (same algorithm,
#: same results, faster); pools with a policy or neural experts run per event on the list pool
FAST_ENGINE = {"driftmoe-data": "auto", "driftmoe-task": "auto"}


class RecurringSource:
    """A -> B -> A stream of ``3 * segment`` events (re-iterable, deterministic)."""

    def __init__(self, name: str, segment: int, seed: int):
        if name not in ("sea_aba", "led_aba", "agrawal_aba"):
            raise ValueError(f"unknown recurring stream {name!r}")
        self.name, self.segment, self.seed = name, int(segment), int(seed)
        self.n = 3 * self.segment
        self.drift_positions = [self.segment, 2 * self.segment]
        self.drift_width = 1
        self.errors: list = []

    def _concepts(self):
        from river.datasets import synth

        s = self.seed
        if self.name == "sea_aba":
            return synth.SEA(variant=0, noise=0.1, seed=s), synth.SEA(variant=3, noise=0.1, seed=s + 1)
        if self.name == "led_aba":
            return tuple(synth.LEDDrift(seed=s + k, noise_percentage=0.1, irrelevant_features=True,
                                        n_drift_features=7) for k in (0, 1))
        return (synth.Agrawal(classification_function=0, seed=s),
                synth.Agrawal(classification_function=4, seed=s + 1))

    def __iter__(self) -> Iterator[tuple[dict, Any]]:
        a, b = (iter(c) for c in self._concepts())
        for gen in (a, b, a):
            for _ in range(self.segment):
                x, y = next(gen)
                yield {f"x{k}": float(v) for k, v in x.items()}, y


def make_source(name: str, n: int, segment: int, seed: int):
    if name.endswith("_aba"):
        return RecurringSource(name, segment, seed)
    from streammoe.connectors.synthetic import SyntheticSource

    return SyntheticSource(name, n=n, seed=seed)


def make_model(name: str, seed: int):
    if name == "ARF":
        from river import forest

        return forest.ARFClassifier(n_models=10, seed=seed)
    from streammoe.presets import make_model as preset

    return preset(name, seed=seed, **({"engine": FAST_ENGINE[name]} if name in FAST_ENGINE else {}))


def run_pair(args: tuple[str, str, int, int, int, str]) -> dict:
    """Evaluate one model on one stream; writes and returns a compact JSON record."""
    stream, model_name, n, segment, seed, out = args
    from streammoe.evaluation import Prequential

    source = make_source(stream, n, segment, seed)
    model = make_model(model_name, seed)
    t = time.perf_counter()
    result = Prequential({model_name: model}).run(source, seed=seed)
    wall = time.perf_counter() - t
    summary = result.summary["models"][model_name]
    windows = result.windows
    record = {
        "stream": stream, "model": model_name, "n": result.summary["source"]["n"], "seed": seed, "wall_s": wall,
        "window": result.summary["window"], "accuracy": summary["accuracy"], "kappa": summary["kappa"],
        "events_per_s": summary["events_per_s"], "recovery": summary["recovery"],
        "accuracy_after_drift": [
            {"drift_position": p, "accuracy": next((w["accuracy"] for w in windows if w["window_start"] >= p), None)}
            for p in result.summary["source"]["drift_positions"]
        ],
        "windows": [round(w["accuracy"], 4) for w in windows],
        "drift_log": [dict(e) for e in getattr(model, "drift_log", [])],
        "n_experts": int(getattr(model, "n_experts_", 0) or 0),
    }
    Path(out).mkdir(parents=True, exist_ok=True)
    (Path(out) / f"{stream}__{model_name}.json").write_text(json.dumps(record, indent=1))
    return record


def report(records: list[dict], args) -> str:
    lines = [f"# Recurring-concept benchmark (seed {args.seed}, n={args.n} for paper streams, "
             f"segment={args.segment} for A->B->A)", "",
             "recovery = events after each drift until windowed accuracy is within 1 pt of its pre-drift "
             "level (window resolution; '-' = not recovered before the next drift); after = accuracy of "
             "the first evaluation window after each drift (n/100 events, at least 500).", "",
             "| stream | model | accuracy | events/s | recovery per drift | after per drift | pool at the end |",
             "|---|---|---|---|---|---|---|"]
    for r in sorted(records, key=lambda r: (args.streams.index(r["stream"]), args.models.index(r["model"]))):
        rec = ", ".join("-" if d["events_to_recover"] is None else str(d["events_to_recover"]) for d in r["recovery"])
        aft = ", ".join("-" if d["accuracy"] is None else f"{d['accuracy']:.3f}" for d in r["accuracy_after_drift"])
        pool = f"{r['n_experts']} experts, {sum(e['action'] == 'freeze' for e in r['drift_log'])} freezes" \
            if r["n_experts"] else ""
        lines.append(f"| {r['stream']} | {r['model']} | {r['accuracy']:.4f} | {r['events_per_s']:.0f} | {rec} | "
                     f"{aft} | {pool} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=200_000, help="events of the paper streams")
    ap.add_argument("--segment", type=int, default=20_000, help="events per segment of the A->B->A streams")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--streams", nargs="+", default=list(DEFAULT_STREAMS))
    ap.add_argument("--models", nargs="+", default=list(DEFAULT_MODELS))
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "recurring"))
    ap.add_argument("--report-only", action="store_true", help="rebuild report.md from the JSON records in --out")
    args = ap.parse_args()
    pairs = [] if args.report_only else \
        [(s, m, args.n, args.segment, args.seed, args.out) for s in args.streams for m in args.models]
    if args.jobs > 1:
        with multiprocessing.get_context("spawn").Pool(args.jobs, maxtasksperchild=1) as pool:
            records = pool.map(run_pair, pairs, chunksize=1)
    else:
        records = [run_pair(p) for p in pairs]
    # the report covers every record in --out, so a partial rerun (some streams / models) updates it
    records = [json.loads(f.read_text()) for f in sorted(Path(args.out).glob("*__*.json"))]
    args.streams = list(dict.fromkeys(list(args.streams) + [r["stream"] for r in records]))
    args.models = list(dict.fromkeys(list(args.models) + [r["model"] for r in records]))
    text = report(records, args)
    (Path(args.out) / "report.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
