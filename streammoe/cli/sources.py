"""``open_source`` for the commands: a source spec becomes a stream, or a usage error naming the choices."""
from __future__ import annotations

from typing import Any, Mapping, Optional

from .errors import USAGE_ERROR, fail


def open_source(spec: str, n: Optional[int] = None, seed: int = 42, target: Optional[str] = None,
                feature_types: Optional[Mapping[str, str]] = None) -> Any:
    """:func:`streammoe.connectors.open_source`, with an unknown or unreadable source turned into
    ``error: cannot open source ...`` and exit code 2 (the built-in streams listed)."""
    from .. import connectors

    try:
        if feature_types:
            return connectors.open_source(spec, n=n, seed=seed, target=target, feature_types=feature_types)
        return connectors.open_source(spec, n=n, seed=seed, target=target)
    except (ValueError, LookupError, OSError) as exc:
        message = str(exc) or type(exc).__name__
        choices = sorted(connectors.SYNTHETIC_STREAMS)
        if not all(c in message for c in choices):
            message += "; built-in streams: " + ", ".join(choices) + " (or a CSV/JSONL path, or river:Name)"
        raise fail(f"cannot open source {spec!r}: {message}", USAGE_ERROR) from None
