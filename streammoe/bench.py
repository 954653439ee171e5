"""``streammoe bench``: speed, accuracy and memory of the engines side by side, on the same events.

Every model sees the same events of each stream, in one process, one after another (not
interleaved, so each gets the caches to itself).  For each model a throwaway instance first
runs the first ``warmup`` events (Numba compilation or loading of its disk cache happens
there; reported as warm-up), then a fresh instance runs all events, timed as the steady state.
Figures are reported with ratios against the baselines measured in the same run, because
absolute events/s depend on the machine and on whatever else it is doing.

Memory is reported two ways that need no instrumentation of the timed loop: the size of the
model's saved state (what a store holds; per expert for DriftMoE), and the process's peak
resident set size at the end of the whole run.
"""
from __future__ import annotations

import json
import os
import pickle
import platform
import resource
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from . import presets

CHUNK = 512  # events handed to predict_learn_many at once (the replay runner's chunk)


@dataclass
class Row:
    stream: str
    model: str
    n: int
    accuracy: float
    events_per_s: float
    warmup_s: float
    state_bytes: int
    bytes_per_expert: float | None = None
    notes: str = ""
    extra: dict = field(default_factory=dict)


def _one_by_one(model: Any) -> Any:
    """``model`` as river's own loops call it: without its batch call, the evaluation runner calls
    ``predict_one`` / ``learn_one`` once per event (DriftMoE's compiled per-event path)."""
    model.predict_learn_many = None
    return model


#: the rows of ``streammoe bench``: name -> factory(seed), every model built from :mod:`streammoe.presets`
BENCH_MODELS: dict[str, Callable[[int], Any]] = {
    "DriftMoE numba": lambda seed: presets.make_model("driftmoe", seed=seed, engine="numba"),
    "DriftMoE river": lambda seed: presets.make_model("driftmoe", seed=seed, engine="river"),
    "river ARF (10 trees)": presets.BASELINES["ARF"],
    "river HoeffdingTree": presets.BASELINES["HoeffdingTree"],
    "DriftMoE numba (per event)":
        lambda seed: _one_by_one(presets.make_model("driftmoe", seed=seed, engine="numba")),
}


def _model_factories(seed: int) -> dict[str, Callable[[], Any]]:
    return {name: (lambda make=make: make(seed)) for name, make in BENCH_MODELS.items()}


def _state_bytes(model: Any) -> tuple[int, float | None]:
    parts = getattr(model, "state_parts", None)
    if parts is None:  # river models: their pickled size is what a user would store
        return len(pickle.dumps(model)), None
    blobs = parts()
    experts = [len(b) for k, b in blobs.items() if k.startswith("expert/")]
    return sum(len(b) for b in blobs.values()), (float(np.mean(experts)) if experts else None)


def _run(model: Any, name: str, xs: list, ys: list, mark: int | None = None) -> dict:
    """One model over the events through the evaluation runner (prequential, the same chunks as
    ``replay``); returns the model's summary (accuracy, events/s of its own calls, ``at_mark``)."""
    from .evaluation import Prequential

    runner = Prequential({name: model}, window=max(1, len(xs)), chunk=CHUNK, mark=mark)
    return runner.run(list(zip(xs, ys))).summary["models"][name]


def bench_stream(stream: str, n: int, seed: int, models: list[str], warmup: int,
                 slow_n: int | None = None, log: Callable[[str], None] = print) -> list[Row]:
    """Benchmark the named models on ``n`` events of ``stream`` (slow models on the first ``slow_n``)."""
    from .connectors import open_source

    events = list(open_source(stream, n=n, seed=seed))
    xs, ys = [x for x, _ in events], [y for _, y in events]
    factories = _model_factories(seed)
    rows = []
    for name in models:
        m = n if (slow_n is None or name == "DriftMoE numba") else min(n, slow_n)
        w = min(warmup, m if name == "DriftMoE numba" else m // 10)  # only the numba engine compiles
        t0 = time.perf_counter()  # warm-up: a throwaway model compiles / loads every kernel it needs
        if w:
            _run(factories[name](), name, xs[:w], ys[:w])
        warm_s = time.perf_counter() - t0
        model = factories[name]()
        first = slow_n if (slow_n and m > slow_n) else None
        res = _run(model, name, xs[:m], ys[:m], mark=first)
        total, per_expert = _state_bytes(model)
        rows.append(Row(stream, name, m, float(res["accuracy"]), float(res["events_per_s"]) or float("inf"),
                        warm_s, total, per_expert))
        if first:  # accuracy on the events the slow models saw, for a like-for-like gap
            rows[-1].extra["accuracy_first"] = {"n": int(slow_n), "accuracy": float(res["at_mark"]["accuracy"])}
        r = rows[-1]
        log(f"  {stream:6s} {name:22s} n={m:>8,d} acc={100 * r.accuracy:6.2f}%  {r.events_per_s:>10,.0f} ev/s"
            f"  warm-up {warm_s:5.2f}s")
    return rows


def bench_keyed(n_keys: int, events_per_key: int, seed: int, device: str,
                log: Callable[[str], None] = print) -> Row | None:
    """Throughput of ``n_keys`` independent models (SEA, keys interleaved) in one KeyedDriftMoE."""
    try:
        from .gpu.backend import resolve_device
        from .keyed import KeyedDriftMoE
    except ImportError as exc:  # pragma: no cover - the gpu package is part of streammoe
        log(f"  keyed: unavailable ({exc})")
        return None
    from .connectors import open_source

    if device == "cuda" and resolve_device("auto") != "cuda":
        return None
    n = n_keys * events_per_key
    events = list(open_source("sea_a", n=n, seed=seed))
    names = sorted(events[0][0])
    X = np.array([[x[f] for f in names] for x, _ in events])
    Y = np.array([y for _, y in events], dtype=np.int64)
    keys = np.arange(n, dtype=np.int64) % n_keys
    model = KeyedDriftMoE(n_keys, len(names), 2, seed=seed, device=device)
    step = n_keys * 64
    t0 = time.perf_counter()
    model.learn_predict_window(keys[:step], X[:step], Y[:step])
    warm = time.perf_counter() - t0
    correct = 0
    t1 = time.perf_counter()
    for s in range(step, n, step):
        res = model.learn_predict_window(keys[s:s + step], X[s:s + step], Y[s:s + step])
        correct += int((res.y_pred == Y[s:s + step]).sum())
    steady = time.perf_counter() - t1
    row = Row("sea_a", f"KeyedDriftMoE {n_keys} keys ({device})", n, correct / max(1, n - step),
              (n - step) / steady, warm, 0, None, notes=f"{events_per_key} events per key")
    log(f"  keyed  {row.model:22s} n={n:>8,d} acc={100 * row.accuracy:6.2f}%  {row.events_per_s:>10,.0f} ev/s"
        f"  warm-up {warm:5.2f}s")
    return row


def ratios(rows: list[Row]) -> dict[str, dict[str, float]]:
    """events/s of the numba engine over each other model, per stream (same run)."""
    out: dict[str, dict[str, float]] = {}
    for stream in sorted({r.stream for r in rows if not r.model.startswith("Keyed")}):
        fast = next((r for r in rows if r.stream == stream and r.model == "DriftMoE numba"), None)
        if fast is None:
            continue
        out[stream] = {r.model: fast.events_per_s / r.events_per_s for r in rows
                       if r.stream == stream and r is not fast and not r.model.startswith("Keyed")}
        river = next((r for r in rows if r.stream == stream and r.model == "DriftMoE river"), None)
        if river is not None:
            same = fast.extra.get("accuracy_first", {})
            fast_acc = same["accuracy"] if same.get("n") == river.n else fast.accuracy
            out[stream]["accuracy gap vs river engine (pt)"] = 100 * (fast_acc - river.accuracy)
    return out


def markdown(rows: list[Row], info: dict) -> str:
    lines = [f"# streammoe bench — {info['date']}", "",
             f"Machine: {info['machine']}; Python {info['python']}; seed {info['seed']}; one process, "
             "models run one after another on the same events; BLAS and Numba limited to one thread."
             + (f" Load average (1/5/15 min) at the end of the run: {', '.join(map(str, info['load_average_at_end']))}"
                " (the run itself counts about 1; above that, other jobs shared the cores: compare ratios"
                " within a run rather than absolute events/s)."
                if info.get("load_average_at_end") else ""), "",
             "| stream | model | events | accuracy | events/s (steady) | warm-up s | state bytes | bytes/expert |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        per = f"{r.bytes_per_expert:,.0f}" if r.bytes_per_expert else ""
        lines.append(f"| {r.stream} | {r.model} | {r.n:,} | {100 * r.accuracy:.2f}% | {r.events_per_s:,.0f} | "
                     f"{r.warmup_s:.2f} | {r.state_bytes:,} | {per} |")
    lines += ["", "Speed-up of the numba engine (events/s ratio, same run):", ""]
    for stream, rs in info["ratios"].items():
        parts = [f"{k}: {v:.1f}x" if "gap" not in k else f"{k}: {v:+.2f}" for k, v in rs.items()]
        lines.append(f"- {stream}: " + "; ".join(parts))
    lines += ["", f"Peak RSS of the whole run: {info['peak_rss_mb']:.0f} MiB", ""]
    return "\n".join(lines)


def run_bench(streams: list[str], n: int, seed: int, out: Path, models: list[str] | None = None,
              warmup: int = 10000, slow_n: int | None = None, keys: int = 1000, keyed_events: int = 200,
              log: Callable[[str], None] = print) -> dict:
    os.environ.setdefault("NUMBA_NUM_THREADS", "1")
    from threadpoolctl import threadpool_limits

    from .evaluation import versions

    models = models or list(_model_factories(seed))
    rows: list[Row] = []
    with threadpool_limits(1):
        for stream in streams:
            rows += bench_stream(stream, n, seed, models, warmup, slow_n, log)
        if keys:
            for device in ("cpu", "cuda"):
                row = bench_keyed(keys, keyed_events, seed, device, log)
                if row is not None:
                    rows.append(row)
    load = os.getloadavg() if hasattr(os, "getloadavg") else None  # other jobs on the machine skew events/s
    info = {"date": time.strftime("%Y-%m-%d %H:%M"), "machine": f"{platform.machine()}, {os.cpu_count()} cores",
            "load_average_at_end": [round(v, 2) for v in load] if load else None,
            "python": platform.python_version(), "seed": seed, "n": n, "versions": versions(),
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "ratios": ratios(rows)}
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench.json").write_text(json.dumps({"info": info, "rows": [r.__dict__ for r in rows]}, indent=2))
    (out / "bench.md").write_text(markdown(rows, info))
    return {"info": info, "rows": rows}
