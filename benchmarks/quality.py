"""Model-quality benchmark: which single configuration beats river's ARF, on every kind of stream, and how fast.

Why: a user runs one model, not "the best preset per stream".  This script measures every candidate
on the same eleven streams, seeds and events as river's ARF(10) and HoeffdingTree, side by side in one
prequential run (so speed ratios are measured under the same load), and checks the targets of the
default model: mean accuracy >= ARF's on most streams and >= the reference DriftMoE's on all, >= 20x
ARF's events/s and >= HoeffdingTree's, state <= 1/10 of ARF's, recovery after each drift <= ARF's.

Streams (``--n`` events; the A -> B -> A streams use ``--n // 3`` events per segment; river's bundled
real data sets keep their own length and fixed order, so on them the seed only changes the models):

* the six paper streams ``sea_a sea_g led_a led_g rbf_m rbf_f`` (:mod:`streammoe.connectors.synthetic`);
* the recurring streams ``sea_aba led_aba`` (:class:`benchmarks.recurring.RecurringSource`);
* ``phishing bananas imagesegments`` (river.datasets, shipped with river: no download).

Models (``--models``): ``default`` (``DriftMoE()`` with no arguments), every preset of
:mod:`streammoe.presets`, a preset with overrides (``driftmoe-data@top_k=12,combine=mixture``), a
research candidate from :mod:`benchmarks.quality_candidates`, and river's ``ARF`` (10 trees),
``HT`` (HoeffdingTree), ``SRP`` (10) and ``LB`` (LeveragingBagging, 10).  ``SRP`` and ``LB`` are slow:
they run on the first ``--n-slow`` events of the stream (ARF and HT run beside them there too, so
their ratios are still side by side); the report marks them.

Metrics per (stream, seed, model): accuracy, balanced accuracy, Cohen's kappa, events/s, the speed
ratio against ARF and HT of the same run, the state size (``state_parts()`` bytes for DriftMoE, which
is what ``save`` writes; the pickle for river models) and recovery after each drift
(:func:`streammoe.evaluation.recovery_after_drifts`).  One JSON per (stream, seed, model) lands in
``--out``; ``report.md`` is rebuilt from every record there, so partial reruns (one new candidate,
say) update it and reuse the stored ARF runs.  A model whose run had no ARF beside it gets its ARF
ratio through HoeffdingTree (``model/HT`` of its run times ``HT/ARF`` of ARF's run), marked ``~``.

    nice -n 19 python benchmarks/quality.py --n 20000 --seeds 1 2 3 --jobs 1
    nice -n 19 python benchmarks/quality.py --models default driftmoe-data HT --default default
"""
from __future__ import annotations

import argparse
import ast
import json
import multiprocessing
import pickle
import re
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Optional

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:  # run as a script: the sibling modules (recurring, quality_candidates)
    sys.path.insert(0, str(HERE))

PAPER_STREAMS = ("sea_a", "sea_g", "led_a", "led_g", "rbf_m", "rbf_f")
RECURRING_STREAMS = ("sea_aba", "led_aba")
REAL_STREAMS = {"phishing": "Phishing", "bananas": "Bananas", "imagesegments": "ImageSegments"}
STREAMS = PAPER_STREAMS + RECURRING_STREAMS + tuple(REAL_STREAMS)
PRESET_MODELS = ("driftmoe-data", "driftmoe-task", "driftmoe-adaptive", "driftmoe-hetero", "driftmoe-neural")
RIVER_MODELS = ("ARF", "HT", "SRP", "LB")
SLOW_MODELS = ("SRP", "LB")
DEFAULT_MODELS = ("default",) + PRESET_MODELS + RIVER_MODELS
REFERENCE = "driftmoe-data"


# ----------------------------------------------------------------------------- streams
def make_source(stream: str, n: int, seed: int):
    """The event source of ``stream`` (see the module docstring for the lengths)."""
    if stream in PAPER_STREAMS:
        from streammoe.connectors.synthetic import SyntheticSource

        return SyntheticSource(stream, n=n, seed=seed)
    if stream in RECURRING_STREAMS:
        from recurring import RecurringSource

        return RecurringSource(stream, segment=max(1, n // 3), seed=seed)
    if stream in REAL_STREAMS:
        from streammoe.connectors import open_source

        return open_source("river:" + REAL_STREAMS[stream], seed=seed)
    raise ValueError(f"unknown stream {stream!r}; choose from {', '.join(STREAMS)}")


class _Head:
    """The first ``n`` events of a source, keeping its drift positions that fall inside them."""

    def __init__(self, source, n: int):
        self.source, self.n = source, n
        self.name = getattr(source, "name", type(source).__name__)
        self.drift_positions = [p for p in (getattr(source, "drift_positions", None) or []) if p < n]
        self.drift_width = getattr(source, "drift_width", 0)
        self.errors = getattr(source, "errors", [])

    def __iter__(self):
        for i, event in enumerate(self.source):
            if i >= self.n:
                return
            yield event


# ----------------------------------------------------------------------------- models
def parse_spec(spec: str) -> tuple[str, dict[str, Any]]:
    """``name@key=value,key=value`` -> (name, overrides); values are Python literals or plain words."""
    name, _, rest = spec.partition("@")
    overrides: dict[str, Any] = {}
    for item in filter(None, rest.split(",")):
        key, _, value = item.partition("=")
        try:
            overrides[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            overrides[key] = value
    return name, overrides


def make_model(spec: str, seed: int):
    """A fresh model for ``spec`` (see ``--models``)."""
    name, overrides = parse_spec(spec)
    if name == "ARF":
        from river import forest

        return forest.ARFClassifier(n_models=10, seed=seed)
    if name == "HT":
        from river import tree

        return tree.HoeffdingTreeClassifier()
    if name == "SRP":
        from river import ensemble

        return ensemble.SRPClassifier(n_models=10, seed=seed)
    if name == "LB":
        from river import ensemble, tree

        return ensemble.LeveragingBaggingClassifier(model=tree.HoeffdingTreeClassifier(), n_models=10, seed=seed)
    if name == "default":
        from streammoe import DriftMoE

        return DriftMoE(seed=seed, **overrides)
    from streammoe.presets import PRESETS
    from streammoe.presets import make_model as preset

    if name in PRESETS:
        return preset(name, seed=seed, **overrides)
    from quality_candidates import CANDIDATES

    if name in CANDIDATES:
        return CANDIDATES[name](seed=seed, **overrides)
    raise ValueError(f"unknown model {spec!r}: default, {', '.join(PRESETS)}, {', '.join(RIVER_MODELS)} "
                     f"or a candidate ({', '.join(CANDIDATES)})")


def state_bytes(model) -> int:
    """Bytes of the model's saved state: ``state_parts`` for DriftMoE (what ``save`` writes), the
    pickle for river models (river has no other format; it is what a user would store)."""
    parts = getattr(model, "state_parts", None)
    if callable(parts):
        return sum(len(v) for v in parts().values())
    return len(pickle.dumps(model, protocol=pickle.HIGHEST_PROTOCOL))


def safe(spec: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.=-]+", "_", spec)


# ----------------------------------------------------------------------------- one run
def run_group(stream: str, seed: int, n: int, specs: list[str], out: str, slow: bool) -> list[dict]:
    """One prequential run of ``specs`` side by side on one stream; one JSON record per model."""
    from streammoe.evaluation import Prequential

    source = make_source(stream, n, seed)
    if slow:
        source = _Head(source, n)
    models = {spec: make_model(spec, seed) for spec in specs}
    warm_up(stream, seed, specs)
    t = time.perf_counter()
    result = Prequential(models).run(source, seed=seed)
    wall = time.perf_counter() - t
    summary = result.summary
    speeds = {m: s["events_per_s"] for m, s in summary["models"].items()}
    records = []
    for spec, s in summary["models"].items():
        rec = {
            "stream": stream, "seed": seed, "model": spec, "n": summary["source"]["n"], "slow_run": slow,
            "wall_s": wall, "window": summary["window"],
            "accuracy": s["accuracy"], "balanced_accuracy": s["balanced_accuracy"], "kappa": s["kappa"],
            "events_per_s": s["events_per_s"], "same_run_events_per_s": speeds,
            "state_bytes": state_bytes(models[spec]), "recovery": s["recovery"],
            "drift_positions": summary["source"]["drift_positions"],
            "n_experts": int(getattr(models[spec], "n_experts_", 0) or 0),
            "versions": summary["versions"],
        }
        records.append(rec)
        Path(out).mkdir(parents=True, exist_ok=True)
        tag = "__slow" if slow else ""
        (Path(out) / f"{stream}__s{seed}__{safe(spec)}{tag}.json").write_text(json.dumps(rec, indent=1))
    return records


def warm_up(stream: str, seed: int, specs: list[str], events: int = 600) -> None:
    """Run a throwaway copy of each streammoe model on a few events of another seed first, so that the
    timed run does not pay Numba's loading or compiling of kernels (river models need no warm-up)."""
    from itertools import islice

    for spec in specs:
        if parse_spec(spec)[0] in RIVER_MODELS:
            continue
        model = make_model(spec, seed)
        batch = list(islice(iter(make_source(stream, max(events, 3), seed + 1000)), events))
        model.predict_learn_many([x for x, _ in batch], [y for _, y in batch], proba=False)


def run_job(job: tuple) -> list[dict]:
    stream, seed, n, specs, out, slow = job
    t = time.perf_counter()
    records = run_group(stream, seed, n, specs, out, slow)
    accs = ", ".join(f"{r['model']} {r['accuracy']:.4f}" for r in records)
    print(f"[{time.perf_counter() - t:7.1f}s] {stream} seed {seed} n={records[0]['n']}{' (slow)' if slow else ''}: "
          f"{accs}", flush=True)
    return records


# ----------------------------------------------------------------------------- report
def _mean(values) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.fmean(values) if values else None


def load_records(out: str) -> list[dict]:
    return [json.loads(f.read_text()) for f in sorted(Path(out).glob("*__s*__*.json"))]


def _speed_ratio(rec: dict, ref: str, by_key: dict) -> tuple[float | None, bool]:
    """``rec``'s events/s over ``ref``'s in the same run; through HT (approximate) when ``ref`` was absent."""
    same = rec["same_run_events_per_s"]
    if ref in same and same[ref] > 0:
        return rec["events_per_s"] / same[ref], True
    ref_rec = by_key.get((rec["stream"], rec["seed"], ref, rec["slow_run"]))
    if ref_rec and "HT" in same and same["HT"] > 0 and ref_rec["same_run_events_per_s"].get("HT"):
        ref_over_ht = ref_rec["events_per_s"] / ref_rec["same_run_events_per_s"]["HT"]
        return (rec["events_per_s"] / same["HT"]) / ref_over_ht, False
    return None, False


def _median_known(values) -> Optional[float]:
    """Median of the values that are not ``None`` (``None`` when there are none)."""
    known = [x for x in values if x is not None]
    return statistics.median(known) if known else None


def _fmt(v, spec=".4f") -> str:
    return "-" if v is None else format(v, spec)


def report(records: list[dict], default: str, streams: list[str], models: list[str]) -> str:
    """Markdown: per-stream tables, and the targets checked for ``default``."""
    by_key = {(r["stream"], r["seed"], r["model"], r["slow_run"]): r for r in records}
    present_streams = [s for s in streams if any(r["stream"] == s for r in records)]
    present_models = [m for m in models if any(r["model"] == m for r in records)]
    present_models += sorted({r["model"] for r in records} - set(present_models))

    def runs(stream, model):
        main = [r for r in records if r["stream"] == stream and r["model"] == model and not r["slow_run"]]
        return main or [r for r in records if r["stream"] == stream and r["model"] == model and r["slow_run"]]

    seeds = sorted({r["seed"] for r in records})
    ns = sorted({(r["stream"], r["n"]) for r in records if not r["slow_run"]})
    lines = ["# Model quality: every candidate against river's ARF(10), side by side", "",
             f"seeds {', '.join(map(str, seeds))}; events per stream: "
             + ", ".join(f"{s} {n}" for s, n in dict(ns).items()) + ". Accuracy, balanced accuracy and kappa are "
             "means over seeds; speed ratios are medians over seeds of events/s divided by ARF's / HoeffdingTree's "
             "(HT) events/s in the same run (`~`: ARF was not in that run, ratio taken through HT); state = saved "
             "bytes / ARF's pickled bytes. Models marked `*` ran only on the first events of the stream (the "
             "`n` column), with ARF and HT beside them.", ""]
    summary_rows = []
    for stream in present_streams:
        lines += [f"## {stream}", "",
                  "| model | n | accuracy | balanced acc. | kappa | events/s | x ARF | x HT | state / ARF | "
                  "recovery per drift (events) |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
        for model in present_models:
            rs = runs(stream, model)
            if not rs:
                continue
            slow = rs[0]["slow_run"]
            ratios_arf = [_speed_ratio(r, "ARF", by_key) for r in rs]
            ratios_ht = [_speed_ratio(r, "HT", by_key)[0] for r in rs]
            arf_r = [x for x, _ in ratios_arf if x is not None]
            exact = all(e for _, e in ratios_arf)
            arf_state = [by_key.get((r["stream"], r["seed"], "ARF", r["slow_run"])) for r in rs]
            st = [r["state_bytes"] / a["state_bytes"] for r, a in zip(rs, arf_state) if a]
            rec = rs[0]["recovery"]
            recov = ", ".join("-" if d["events_to_recover"] is None else str(d["events_to_recover"]) for d in rec)
            lines.append(
                f"| {model}{'*' if slow else ''} | {rs[0]['n']} | {_fmt(_mean(r['accuracy'] for r in rs))} | "
                f"{_fmt(_mean(r['balanced_accuracy'] for r in rs))} | {_fmt(_mean(r['kappa'] for r in rs))} | "
                f"{_fmt(statistics.median(r['events_per_s'] for r in rs), '.0f')} | "
                f"{'' if exact or not arf_r else '~'}{_fmt(statistics.median(arf_r) if arf_r else None, '.1f')} | "
                f"{_fmt(_median_known(ratios_ht), '.2f')} | "
                f"{_fmt(statistics.median(st) if st else None, '.3f')} | {recov or 'no drift positions'} |")
        lines.append("")
        summary_rows.append(stream)

    # one line per model: mean accuracy per stream, and how often it reaches ARF / the reference
    lines += ["## Leaderboard (mean accuracy per stream)", "",
              "`>=ARF`, `>=ref`: streams where the model's mean accuracy reaches ARF's / the reference's, out of "
              "the streams it ran on; `mean` = mean over those streams; `min xARF`, `min xHT`: its slowest "
              "speed ratio over streams and seeds.", "",
              "| model | " + " | ".join(present_streams) + " | mean | >=ARF | >=ref | min xARF | min xHT |",
              "|---|" + "---:|" * (len(present_streams) + 5)]
    for model in present_models:
        cells, got, ge_a, ge_r, xa_all, xh_all = [], [], 0, 0, [], []
        for s in present_streams:
            rs = runs(s, model)
            if not rs:
                cells.append("")
                continue
            acc = _mean(r["accuracy"] for r in rs)
            got.append(acc)
            slow = rs[0]["slow_run"]  # SRP / LB: against ARF on the same (shorter) run
            aa = _mean(r["accuracy"] for r in records
                       if r["stream"] == s and r["model"] == "ARF" and r["slow_run"] == slow)
            ra = _mean(r["accuracy"] for r in records
                       if r["stream"] == s and r["model"] == REFERENCE and r["slow_run"] == slow)
            ge_a += aa is not None and acc >= aa
            ge_r += ra is not None and acc >= ra
            xa_all += [x for x, _ in (_speed_ratio(r, "ARF", by_key) for r in rs) if x is not None]
            xh_all += [x for x in (_speed_ratio(r, "HT", by_key)[0] for r in rs) if x is not None]
            cells.append(f"{acc:.4f}")
        slow_model = parse_spec(model)[0] in SLOW_MODELS
        lines.append(f"| {model}{'*' if slow_model else ''} | " + " | ".join(cells)
                     + f" | {_fmt(_mean(got))} | {ge_a}/{len(got)} | "
                     f"{ge_r}/{len(got)} | {_fmt(min(xa_all) if xa_all else None, '.1f')} | "
                     f"{_fmt(min(xh_all) if xh_all else None, '.2f')} |")
    lines.append("")

    # targets for the default
    lines += [f"## Targets for `{default}`", ""]
    d_streams = [s for s in present_streams if runs(s, default)]
    beats_arf, beats_ref, fast_arf, fast_ht, small, rec_ok, rec_total = [], [], [], [], [], 0, 0
    rows = ["| stream | default acc. | ARF acc. | reference acc. | >= ARF | >= reference | x ARF | x HT | "
            "state / ARF | recovery <= ARF |", "|---|---:|---:|---:|---|---|---:|---:|---:|---|"]
    for s in d_streams:
        d, a, ref = runs(s, default), runs(s, "ARF"), runs(s, REFERENCE)
        da, aa, ra = _mean(r["accuracy"] for r in d), _mean(r["accuracy"] for r in a), _mean(r["accuracy"] for r in ref)
        ge_arf = aa is not None and da >= aa
        ge_ref = ra is not None and da >= ra
        beats_arf.append(ge_arf)
        beats_ref.append(ge_ref)
        xa = [x for x, _ in (_speed_ratio(r, "ARF", by_key) for r in d) if x is not None]
        xh = [x for x in (_speed_ratio(r, "HT", by_key)[0] for r in d) if x is not None]
        xa_m = min(xa) if xa else None
        xh_m = min(xh) if xh else None
        fast_arf.append(xa_m is not None and xa_m >= 20)
        fast_ht.append(xh_m is not None and xh_m >= 1)
        states = [r["state_bytes"] / ar["state_bytes"] for r in d
                  for ar in [by_key.get((r["stream"], r["seed"], "ARF", r["slow_run"]))] if ar]
        small.append(bool(states) and max(states) <= 0.1)
        ok = tot = 0
        for r in d:
            ar = by_key.get((r["stream"], r["seed"], "ARF", r["slow_run"]))
            if not ar:
                continue
            for dd, aa_ in zip(r["recovery"], ar["recovery"]):
                if aa_["events_to_recover"] is None and dd["events_to_recover"] is None:
                    continue
                tot += 1
                ok += dd["events_to_recover"] is not None and (aa_["events_to_recover"] is None
                                                              or dd["events_to_recover"] <= aa_["events_to_recover"])
        rec_ok, rec_total = rec_ok + ok, rec_total + tot
        rows.append(f"| {s} | {_fmt(da)} | {_fmt(aa)} | {_fmt(ra)} | {'yes' if ge_arf else 'no'} | "
                    f"{'yes' if ge_ref else 'no'} | {_fmt(xa_m, '.1f')} | {_fmt(xh_m, '.2f')} | "
                    f"{_fmt(max(states) if states else None, '.3f')} | {ok}/{tot} |")
    lines += rows + ["",
                     f"- mean accuracy >= ARF(10): **{sum(beats_arf)} of {len(d_streams)}** streams (target: 9 of 11)",
                     f"- mean accuracy >= the reference `{REFERENCE}`: **{sum(beats_ref)} of {len(d_streams)}** "
                     f"(target: all)",
                     f"- events/s >= 20x ARF (slowest seed): {sum(fast_arf)} of {len(d_streams)}; >= HoeffdingTree: "
                     f"{sum(fast_ht)} of {len(d_streams)}",
                     f"- state <= 1/10 of ARF's: {sum(small)} of {len(d_streams)}",
                     f"- recovery <= ARF's: {rec_ok} of {rec_total} drifts (seeds x drifts; drifts neither model "
                     f"recovered from are left out)", ""]
    return "\n".join(lines)


# ----------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=200_000, help="events of the synthetic streams (A->B->A: n/3 per segment)")
    ap.add_argument("--n-slow", type=int, default=5_000, help="events for SRP and LB (with ARF and HT beside them)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    ap.add_argument("--streams", nargs="+", default=list(STREAMS))
    ap.add_argument("--models", nargs="+", default=list(DEFAULT_MODELS))
    ap.add_argument("--default", default="default", help="the model whose targets the summary checks")
    ap.add_argument("--no-arf", action="store_true",
                    help="leave ARF out of the runs (reuse ARF's stored records in --out; ratios go through HT)")
    ap.add_argument("--jobs", type=int, default=1, help="(stream, seed) runs in parallel processes")
    ap.add_argument("--out", default=str(HERE / "results" / "quality"))
    ap.add_argument("--report-only", action="store_true", help="rebuild report.md from the records in --out")
    args = ap.parse_args(argv)
    for s in args.streams:
        if s not in STREAMS:
            ap.error(f"unknown stream {s!r}; choose from {', '.join(STREAMS)}")

    fast = [m for m in args.models if parse_spec(m)[0] not in SLOW_MODELS]
    slow = [m for m in args.models if parse_spec(m)[0] in SLOW_MODELS]
    base = [] if args.no_arf else ["ARF"]
    fast = list(dict.fromkeys(fast + base + ["HT"]))
    if args.no_arf and "ARF" in fast:
        fast.remove("ARF")
    jobs = []
    if not args.report_only:
        for stream in args.streams:
            for seed in args.seeds:
                jobs.append((stream, seed, args.n, fast, args.out, False))
                if slow:
                    n_slow = min(args.n_slow, args.n) if stream not in REAL_STREAMS else args.n_slow
                    jobs.append((stream, seed, n_slow, list(dict.fromkeys(slow + ["ARF", "HT"])), args.out, True))
    if args.jobs > 1 and len(jobs) > 1:
        with multiprocessing.get_context("spawn").Pool(args.jobs, maxtasksperchild=1) as pool:
            list(pool.imap_unordered(run_job, jobs, chunksize=1))
    else:
        for job in jobs:
            run_job(job)
    records = load_records(args.out)
    text = report(records, args.default, list(STREAMS), list(dict.fromkeys(list(args.models) + list(DEFAULT_MODELS))))
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "report.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
