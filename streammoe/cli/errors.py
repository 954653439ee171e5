"""Exit codes and the one error printer every ``streammoe`` command uses.

Codes: 0 success, 1 a runtime failure (a service unreachable, the daemon stopped), 2 a usage error
(bad options, an unknown source or model, a source that yields nothing usable).
"""
from __future__ import annotations

import typer

OK = 0
RUNTIME_ERROR = 1
USAGE_ERROR = 2


def fail(message: str, code: int = USAGE_ERROR) -> typer.Exit:
    """Print ``error: message`` on stderr and return the ``typer.Exit`` to raise with ``code``."""
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


def note(message: str) -> None:
    """A plain line on stderr (details under an error, progress when stderr is not a terminal)."""
    typer.echo(message, err=True)
