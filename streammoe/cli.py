"""The ``streammoe`` command line.

Why it is shaped like this: each command is a thin function that turns options into a call of a
library module (evaluation, connectors, model...) and turns that module's errors into clear messages
and exit codes (0 ok, 2 usage error).  Commands added later (serve, generate, bench, inspect) follow
the same pattern and register on the same ``app``.
"""
from __future__ import annotations

import re
import sys
import time
from contextlib import contextmanager
from enum import Enum
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

import typer
from rich.console import Console
from rich.table import Table

from . import evaluation

app = typer.Typer(
    name="streammoe",
    help="Streaming online learning with a mixture of drift-adaptive experts (DriftMoE).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

USAGE_ERROR = 2


class Mode(str, Enum):
    data = "data"
    task = "task"


class Engine(str, Enum):
    river = "river"
    numba = "numba"
    auto = "auto"


def _driftmoe(opts: dict[str, Any]) -> Any:
    from .model import DriftMoE

    return DriftMoE(mode=opts["mode"], n_experts=opts["experts"], top_k=opts["top_k"],
                    window=opts["window_router"], seed=opts["seed"], engine=opts["engine"])


def _preset(name: str) -> Callable[[dict[str, Any]], Any]:
    def build(opts: dict[str, Any]) -> Any:
        from .presets import make_model

        return make_model(name, seed=opts["seed"])

    return build


def _model_presets() -> dict[str, Callable[[dict[str, Any]], Any]]:
    from .presets import PRESETS

    return {"driftmoe": _driftmoe, **{name: _preset(name) for name in PRESETS}}


#: ``--model`` names: ``driftmoe`` (shaped by --mode/--experts/--top-k/--engine/--window-router)
#: and every entry of ``streammoe.PRESETS`` (used as defined, with --seed).
MODEL_PRESETS: dict[str, Callable[[dict[str, Any]], Any]] = _model_presets()


def _usage_error(console: Console, message: str) -> typer.Exit:
    console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    return typer.Exit(USAGE_ERROR)


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


@contextmanager
def _progress_bar(console: Console, enabled: bool, total: Optional[int]
                  ) -> Iterator[Optional[Callable[[evaluation.ProgressInfo], None]]]:
    """A rich progress bar fed by the runner's progress callback (or nothing when disabled)."""
    if not enabled:
        yield None
        return
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                               TimeRemainingColumn)

    columns = [TextColumn("[bold]replay"), BarColumn(), MofNCompleteColumn(),
               TextColumn("{task.fields[rate]}"), TextColumn("{task.fields[acc]}"),
               TimeElapsedColumn(), TimeRemainingColumn()]
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task("replay", total=total, rate="", acc="")

        def update(info: evaluation.ProgressInfo) -> None:
            acc = " ".join(f"{name} {100 * a:.2f}%" for name, a in info.accuracy.items())
            progress.update(task, completed=info.events, rate=f"{info.events_per_s:,.0f} ev/s", acc=acc)

        yield update


def _results_table(summary: dict[str, Any]) -> Table:
    source = summary["source"]
    table = Table(title=f"Prequential replay of {source['name']} — {source['n']:,} events, seed {summary['seed']}")
    for col in ("model", "accuracy", "kappa", "kappa-M", "kappa-T", "events/s"):
        table.add_column(col, justify="left" if col == "model" else "right")
    for name, m in summary["models"].items():
        table.add_row(name, f"{100 * m['accuracy']:.2f}%", f"{m['kappa']:.3f}", f"{m['kappa_m']:.3f}",
                      f"{m['kappa_t']:.3f}", f"{m['events_per_s']:,.0f}")
    notes = [f"bad rows: {summary['bad_rows']}"]
    if summary.get("event_errors"):
        notes.append(f"events refused by a model: {summary['event_errors']}")
    if summary["bad_rows"] or summary.get("event_errors"):
        notes.append("details in errors.csv")
    table.caption = " · ".join(notes)
    return table


@app.command()
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
                                                          + ", ".join(MODEL_PRESETS)),
    target: Optional[str] = typer.Option(None, help="Target column of a CSV/JSONL file."),
    categorical: Optional[str] = typer.Option(None, "--categorical", help="Comma-separated feature columns "
                                              "to read as categories (text columns already are; use this for "
                                              "numeric-looking codes such as zip or product codes)."),
    compare: bool = typer.Option(False, help="Also run river baselines (ARF with 10 trees, Hoeffding "
                                             "tree, Hoeffding adaptive tree) on the same events."),
    out: Optional[Path] = typer.Option(None, help="Output folder (default: ./streammoe-runs/SOURCE-TIME/)."),
    metrics_window: Optional[int] = typer.Option(None, "--metrics-window", min=1, help="Events per metrics "
                                                 "window (default: n/100 clamped to 500..10000)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar and no table; print only the "
                                                           "output folder."),
) -> None:
    """Replay a stream test-then-train and report accuracy, kappas and speed.

    Every model predicts each event before learning it, all models on the same events.  Writes
    summary.json, windowed.csv, errors.csv and plot.png into the output folder.
    """
    out_console = Console()
    err_console = Console(stderr=True)
    names = [m.strip() for m in model.split(",") if m.strip()]
    unknown = [m for m in names if m not in MODEL_PRESETS]
    if unknown or not names:
        model = ",".join(unknown) or model
        raise _usage_error(err_console, f"unknown model preset {model!r}; choose one of: "
                                        + ", ".join(sorted(MODEL_PRESETS)))
    if mode is Mode.data and top_k > experts:
        raise _usage_error(err_console, f"--top-k {top_k} is larger than --experts {experts}")
    opts = {"mode": mode.value, "experts": experts, "top_k": top_k, "engine": engine.value,
            "window_router": window_router, "seed": seed}
    try:
        models = {name: MODEL_PRESETS[name](opts) for name in names}
    except (ValueError, ImportError) as exc:
        raise _usage_error(err_console, f"cannot build model {model!r}: {exc}")
    if compare:
        models.update(evaluation.river_baselines(seed))
    src = _open_source(err_console, source, n, seed, target,
                       {c.strip(): "categorical" for c in (categorical or "").split(",") if c.strip()} or None)

    show_progress = not quiet and err_console.is_terminal
    config = {"model": model, **opts, "target": target, "compare": compare, "requested_n": n}
    with _progress_bar(err_console, show_progress, getattr(src, "n", None)) as on_progress:
        runner = evaluation.Prequential(models, window=metrics_window, progress=on_progress,
                                        progress_every=250)
        result = runner.run(src, seed=seed, extra={"config": config})
    if result.summary["source"]["n"] == 0:
        raise _usage_error(err_console, f"source {source!r} produced no labelled events"
                           + (f" ({len(result.bad_rows)} bad rows, see below)" if result.bad_rows else ""))

    folder = out if out is not None else _default_out(result.summary["source"]["name"])
    paths = evaluation.save_run(result, folder)
    if quiet:
        typer.echo(str(folder))
        return
    out_console.print(_results_table(result.summary))
    for bad in result.bad_rows[:5]:
        out_console.print(f"  bad row, line {getattr(bad, 'line', '?')}: {getattr(bad, 'reason', bad)}",
                          highlight=False)
    out_console.print(f"outputs: {', '.join(p.name for p in paths.values())} in {folder}", highlight=False,
                      soft_wrap=True)


def _open_source(console: Console, spec: str, n: Optional[int], seed: int, target: Optional[str],
                 feature_types: Optional[dict] = None) -> Any:
    """Open a stream through the connectors; an unknown or unreadable source is a usage error."""
    from . import connectors

    try:
        return connectors.open_source(spec, n=n, seed=seed, target=target, feature_types=feature_types)
    except (ValueError, LookupError, OSError) as exc:
        message = str(exc) or type(exc).__name__
        choices = _builtin_streams(connectors)
        if choices and not all(c in message for c in choices):
            message += "; built-in streams: " + ", ".join(choices) + " (or a CSV/JSONL path, or river:Name)"
        raise _usage_error(console, f"cannot open source {spec!r}: {message}")


def _builtin_streams(connectors: Any) -> list[str]:
    for attr in ("STREAMS", "SYNTHETIC_STREAMS", "BUILTIN_STREAMS", "streams"):
        value = getattr(connectors, attr, None)
        if callable(value):
            value = value()
        if isinstance(value, (list, tuple, dict, set, frozenset)) and value:
            return sorted(map(str, value))
    return []


@app.command()
def version() -> None:
    """Print the versions of streammoe and of the libraries that decide its numbers."""
    for name, ver in evaluation.versions().items():
        typer.echo(f"{name} {ver}")


from .cli_service import register as _register_service  # noqa: E402  (serve, generate, inspect)
_register_service(app)
from .cli_bench import register as _register_bench  # noqa: E402  (bench)
_register_bench(app)


def main() -> None:
    """Entry point for ``python -m streammoe``."""
    app(prog_name="streammoe")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
