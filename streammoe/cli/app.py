"""The typer ``app`` with every command registered on it."""
from __future__ import annotations

import typer

from . import bench, replay, service

app = typer.Typer(
    name="streammoe",
    help="Streaming online learning with a mixture of drift-adaptive experts (DriftMoE).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


app.command()(replay.replay)
app.command()(bench.bench)
app.command()(service.serve)
app.command()(service.generate)
app.command()(service.inspect)


@app.command()
def version() -> None:
    """Print the versions of streammoe and of the libraries that decide its numbers."""
    from ..evaluation import versions

    for name, ver in versions().items():
        typer.echo(f"{name} {ver}")


def main() -> None:
    """Entry point of ``python -m streammoe``."""
    app(prog_name="streammoe")
