"""``streammoe bench``: events/s, accuracy, warm-up and memory of the engines and river's baselines."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from .errors import USAGE_ERROR, fail
from .sources import open_source

SLOW_DEFAULT = 20_000


def bench(
    streams: str = typer.Option("sea_a,led_a", help="Comma-separated built-in streams."),
    n: int = typer.Option(100_000, "--n", min=1000, help="Events per stream for the numba engine."),
    slow_n: Optional[int] = typer.Option(SLOW_DEFAULT, "--slow-n", min=1000,
                                         help="Events for the slow models (river engine, ARF, HoeffdingTree); "
                                              "0 = same as --n."),
    seed: int = typer.Option(42, help="Seed of streams and models."),
    models: Optional[str] = typer.Option(None, help="Comma-separated subset of: 'DriftMoE numba', 'DriftMoE "
                                                    "river', 'river ARF (10 trees)', 'river HoeffdingTree', "
                                                    "'DriftMoE numba (per event)'."),
    keys: int = typer.Option(1000, help="Keys for the keyed-pool throughput row (0 = skip)."),
    keyed_events: int = typer.Option(200, "--keyed-events", min=64, help="Events per key in the keyed row."),
    out: Path = typer.Option(Path("benchmarks/results"), help="Folder for bench.json and bench.md."),
) -> None:
    """Events/s, accuracy, warm-up and memory of the engines and river's baselines, side by side."""
    from rich.console import Console
    from rich.table import Table

    from .. import bench as b

    console = Console()
    names = [m.strip() for m in models.split(",")] if models else None
    known = list(b.BENCH_MODELS)
    if names and (bad := [m for m in names if m not in known]):
        raise fail(f"unknown model(s) {bad}; choose from {known}", USAGE_ERROR)
    stream_names = [s.strip() for s in streams.split(",") if s.strip()]
    for stream in stream_names:  # an unknown stream is a usage error before anything runs
        open_source(stream, n, seed)
    result = b.run_bench(stream_names, n, seed, out, names,
                         slow_n=slow_n or None, keys=keys, keyed_events=keyed_events, log=console.print)
    table = Table(title="streammoe bench (steady-state events/s; warm-up timed separately)")
    for col in ("stream", "model", "events", "accuracy", "events/s", "warm-up s", "bytes/expert"):
        table.add_column(col, justify="left" if col in ("stream", "model") else "right")
    for r in result["rows"]:
        table.add_row(r.stream, r.model, f"{r.n:,}", f"{100 * r.accuracy:.2f}%", f"{r.events_per_s:,.0f}",
                      f"{r.warmup_s:.2f}", f"{r.bytes_per_expert:,.0f}" if r.bytes_per_expert else "")
    console.print(table)
    for stream, rs in result["info"]["ratios"].items():
        console.print(f"{stream}: " + "; ".join(f"{k} {v:.1f}x" if "gap" not in k else f"{k} {v:+.2f}"
                                                for k, v in rs.items()))
    console.print(f"wrote {out / 'bench.json'} and {out / 'bench.md'}")

