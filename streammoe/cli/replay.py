"""``streammoe replay``: test-then-train over a stream, DriftMoE (and presets) beside river's baselines."""
from __future__ import annotations

import os
import re
import time
from enum import Enum
from pathlib import Path
from typing import Any, Optional

import typer

from ..presets import BASELINES, PRESETS
from .errors import fail, note
from .progress import Progress
from .sources import open_source

#: ``--compare`` runs river's baselines on the first this many events by default (ARF learns a few
#: hundred events/s on a slow machine: all of a 100,000-event replay would take minutes)
COMPARE_N = 10_000


class Mode(str, Enum):
    data = "data"
    task = "task"


class Engine(str, Enum):
    river = "river"
    numba = "numba"
    auto = "auto"


def _build(name: str, opts: dict[str, Any]) -> Any:
    """``--model`` names are the presets; ``driftmoe`` is shaped by --mode/--experts/--top-k/..."""
    from ..presets import make_model

    if name == "driftmoe":
        return make_model(name, seed=opts["seed"], mode=opts["mode"], n_experts=opts["experts"],
                          top_k=opts["top_k"], window=opts["window_router"], engine=opts["engine"])
    return make_model(name, seed=opts["seed"])


def _slug(text: str) -> str:
    """A file-system friendly version of a source spec (paths and ``river:Name`` included)."""
    stem = Path(text).stem if ("/" in text or "\\" in text or "." in text) else text
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", stem).strip("_") or "source"


def _default_out(source_name: str) -> Path:
    base = Path.cwd() / "streammoe-runs"
    stamp = time.strftime("%Y%m%d-%H%M%S")
    out = base / f"{_slug(source_name)}-{stamp}"
    k = 1
    while out.exists():  # two runs in the same second must not share a folder
        k += 1
        out = base / f"{_slug(source_name)}-{stamp}-{k}"
    return out


def _results_table(summary: dict[str, Any]) -> Any:
    from rich.table import Table

    source = summary["source"]
    compare = summary.get("compare")
    table = Table(title=f"Prequential replay of {source['name']} — {source['n']:,} events, seed {summary['seed']}")
    cols = ["model", "events", "accuracy", "kappa", "kappa-M", "kappa-T", "events/s"]
    if compare:
        cols.insert(3, f"acc. first {compare['n']:,}")
    for col in cols:
        table.add_column(col, justify="left" if col == "model" else "right")
    for name, m in summary["models"].items():
        row = [name, f"{m['n']:,}", f"{100 * m['accuracy']:.2f}%", f"{m['kappa']:.3f}", f"{m['kappa_m']:.3f}",
               f"{m['kappa_t']:.3f}", f"{m['events_per_s']:,.0f}"]
        if compare:
            first = m.get("at_mark") or (m if m["n"] == compare["n"] else None)
            row.insert(3, f"{100 * first['accuracy']:.2f}%" if first else "")
        table.add_row(*row)
    notes = [f"bad rows: {summary['bad_rows']}"]
    if summary.get("event_errors"):
        notes.append(f"events refused by a model: {summary['event_errors']}")
    if summary["bad_rows"] or summary.get("event_errors"):
        notes.append("details in errors.csv")
    if compare:
        notes.append(compare["note"])
    table.caption = " · ".join(notes)
    return table


def _print_bad_rows(bad_rows: list, total: int, printer: Any = note, limit: int = 5) -> None:
    """The first bad rows with their line number and reason (all of them are in errors.csv)."""
    for bad in bad_rows[:limit]:
        printer(f"  bad row, line {getattr(bad, 'line', '?')}: {getattr(bad, 'reason', bad)}")
    if total > limit:
        printer(f"  ... {total - limit:,} more in errors.csv")


def replay(
    source: str = typer.Argument(..., help="Built-in stream (led_a, led_g, sea_a, sea_g, rbf_m, rbf_f), "
                                           "a CSV/JSONL file, or river:Name (any river dataset/generator)."),
    n: Optional[int] = typer.Option(None, "--n", min=1, help="Number of events (built-in streams scale "
                                                              "their drift positions with it)."),
    seed: int = typer.Option(42, help="Seed of the stream and of every model."),
    mode: Mode = typer.Option(Mode.data, help="DriftMoE mode: data (top-k experts learn) or task (one "
                                              "expert per class)."),
    experts: int = typer.Option(12, min=1, help="Number of experts (data mode)."),
    top_k: int = typer.Option(3, "--top-k", min=1, help="Experts that learn each event (data mode)."),
    engine: Engine = typer.Option(Engine.auto, help="Expert engine: numba (compiled array trees), river (river's "
                                                    "trees, the reference) or auto (numba when it imports)."),
    window_router: int = typer.Option(256, "--window-router", min=1, help="Events per router update "
                                                                          "(data mode)."),
    model: str = typer.Option("driftmoe", "--model", help="Model(s), comma-separated, run side by side: "
                                                          + ", ".join(PRESETS)),
    target: Optional[str] = typer.Option(None, help="Target column of a CSV/JSONL file."),
    categorical: Optional[str] = typer.Option(None, "--categorical", help="Comma-separated feature columns "
                                              "to read as categories (text columns already are; use this for "
                                              "numeric-looking codes such as zip or product codes)."),
    compare: bool = typer.Option(False, help="Also run river baselines (" + ", ".join(BASELINES) + ") on the "
                                             "first --compare-n events, in parallel processes."),
    compare_n: int = typer.Option(COMPARE_N, "--compare-n", min=0, help="Events the baselines run on "
                                  "(0 = all); the table shows every model's accuracy on them."),
    out: Optional[Path] = typer.Option(None, help="Output folder (default: ./streammoe-runs/SOURCE-TIME/)."),
    metrics_window: Optional[int] = typer.Option(None, "--metrics-window", min=1, help="Events per metrics "
                                                 "window (default: n/100 clamped to 500..10000)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress and no table; print only the "
                                                           "output folder."),
) -> None:
    """Replay a stream test-then-train and report accuracy, kappas and speed.

    Every model predicts each event before learning it, all models on the same events.  Writes
    summary.json, windowed.csv, errors.csv and plot.png into the output folder.
    """
    names = [m.strip() for m in model.split(",") if m.strip()]
    unknown = [m for m in names if m not in PRESETS]
    if unknown or not names:
        raise fail(f"unknown model preset {','.join(unknown) or model!r}; choose one of: "
                   + ", ".join(sorted(PRESETS)))
    if mode is Mode.data and top_k > experts:
        raise fail(f"--top-k {top_k} is larger than --experts {experts}")
    types = {c.strip(): "categorical" for c in (categorical or "").split(",") if c.strip()} or None
    src = open_source(source, n, seed, target, types)
    opts = {"mode": mode.value, "experts": experts, "top_k": top_k, "engine": engine.value,
            "window_router": window_router, "seed": seed}
    try:
        models = {name: _build(name, opts) for name in names}
    except (ValueError, ImportError) as exc:
        raise fail(f"cannot build model {model!r}: {exc}") from None

    from .. import evaluation

    declared_n = getattr(src, "n", None)
    window = metrics_window or evaluation.default_window(declared_n)
    subset = None if not compare else (compare_n or None)
    if subset is not None and declared_n is not None and subset >= declared_n:
        subset = None  # the baselines see every event anyway
    baselines = _start_baselines(source, n if subset is None else subset, seed, target, window,
                                 types) if compare else None

    progress = Progress("replay", declared_n, enabled=not quiet)
    config = {"model": model, **opts, "target": target, "compare": compare, "compare_n": subset,
              "requested_n": n}
    with progress:
        runner = evaluation.Prequential(models, window=window, progress=progress.update, progress_every=250,
                                        mark=subset)
        result = runner.run(src, seed=seed, extra={"config": config})
    folder = out if out is not None else _default_out(result.summary["source"]["name"])
    if result.summary["source"]["n"] == 0:
        if baselines is not None:
            baselines.cancel()
        _no_events(source, result, folder)
    if baselines is not None:
        _merge(result, baselines.wait(quiet), subset)

    paths = evaluation.save_run(result, folder)
    if quiet:
        typer.echo(str(folder))
        return
    from rich.console import Console

    console = Console()
    if not console.is_terminal:  # a log or a pipe: no terminal width to fit, keep names whole
        console = Console(width=160)
    console.print(_results_table(result.summary))
    _print_bad_rows(result.bad_rows, result.summary["bad_rows"], lambda s: console.print(s, highlight=False))
    console.print(f"outputs: {', '.join(p.name for p in paths.values())} in {folder}", highlight=False,
                  soft_wrap=True)


def _no_events(source: str, result: Any, folder: Path) -> None:
    """No labelled event: say why (the first bad rows), keep every reason in errors.csv, exit 2."""
    from ..evaluation import write_errors_csv

    total = result.summary["bad_rows"]
    folder.mkdir(parents=True, exist_ok=True)
    path = write_errors_csv(result.bad_rows, result.event_errors, folder / "errors.csv")
    detail = f" ({total:,} bad rows; the first below, all in {path})" if total else ""
    exc = fail(f"source {source!r} produced no labelled events{detail}")
    _print_bad_rows(result.bad_rows, total)
    if not total and result.event_errors:
        note(f"  {result.event_errors[0]['reason']}")
    raise exc


class _Baselines:
    """River's baselines running in worker processes while the main process runs the models."""

    def __init__(self, pool: Any, futures: dict[str, Any], n: Optional[int]) -> None:
        self.pool, self.futures, self.n = pool, futures, n

    def cancel(self) -> None:
        for f in self.futures.values():
            f.cancel()
        self.pool.shutdown(wait=False, cancel_futures=True)

    def wait(self, quiet: bool) -> dict[str, Any]:
        """Every baseline's result; a plain line every few seconds while some are still running."""
        from concurrent.futures import FIRST_COMPLETED
        from concurrent.futures import wait as wait_futures

        t0 = time.monotonic()
        pending = set(self.futures.values())
        try:
            while pending:
                _, pending = wait_futures(pending, timeout=5.0, return_when=FIRST_COMPLETED)
                if pending and not quiet:
                    running = [name for name, f in self.futures.items() if f in pending]
                    note(f"waiting for river baselines ({', '.join(running)}): {time.monotonic() - t0:.0f} s")
            return {name: f.result() for name, f in self.futures.items()}
        except Exception as exc:
            raise fail(f"a river baseline failed: {type(exc).__name__}: {exc}", 1) from None
        finally:
            self.pool.shutdown(wait=True)


def _start_baselines(spec: str, n: Optional[int], seed: int, target: Optional[str], window: int,
                     feature_types: Optional[dict] = None) -> _Baselines:
    """Worker processes for the baselines (one per baseline, up to the cores but one); spawned, not
    forked, so that no thread state of torch or numba is copied into them."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    from ..evaluation import run_baselines

    names = list(BASELINES)
    workers = max(1, min(len(names), (os.cpu_count() or 1) - 1))  # one core stays with the main models
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"))
    # slowest first: ARF takes longest, so it starts at once; the quick trees follow or share a worker
    futures = {name: pool.submit(run_baselines, spec, n, seed, target, [name], window, feature_types)
               for name in names}
    return _Baselines(pool, futures, n)


def _merge(result: Any, baselines: dict[str, Any], subset: Optional[int]) -> None:
    """Add the baselines' figures and windows to the main run's result (models in --compare order)."""
    summary = result.summary
    for name, res in baselines.items():
        summary["models"][name] = res.summary["models"][name]
        result.windows.extend(res.windows)
    result.windows.sort(key=lambda w: w["window_end"])  # stable: models keep their order in each window
    n = summary["source"]["n"]
    first = n if subset is None else min(subset, n)
    summary["compare"] = {
        "models": list(baselines), "n": first,
        "note": (f"river baselines on all {n:,} events" if first == n else
                 f"river baselines on the first {first:,} events (--compare-n); 'acc. first {first:,}' compares "
                 "every model on those events")
                + "; baselines ran in parallel processes (events/s measured while sharing the cores)",
    }
