"""Event sources for replay and benchmarks: one entry point, ``open_source``.

>>> from streammoe.connectors import open_source
>>> src = open_source("sea_a", n=1000, seed=1)
>>> src.drift_positions, src.drift_width
([250, 500, 750], 1)
>>> sum(1 for _ in src)
1000

Specs: one of the six paper streams (``SYNTHETIC_STREAMS``), a ``.csv`` / ``.jsonl`` /
``.ndjson`` file (optionally ``.gz``), or ``river:<Name>`` for a river dataset or generator.
Kafka connectors live elsewhere; these sources are finite, replayable streams.
"""
from __future__ import annotations

import os
from typing import Mapping

from .base import BadRow, Source, check_n
from .files import FILE_SUFFIXES, CsvSource, JsonlSource, file_format
from .river_sources import PREFIX as RIVER_PREFIX
from .river_sources import RiverSource
from .synthetic import SYNTHETIC_STREAMS, SyntheticSource

__all__ = ["open_source", "Source", "BadRow", "SYNTHETIC_STREAMS"]


def _choices() -> str:
    suffixes = ", ".join(f"{s}[.gz]" for s in FILE_SUFFIXES)
    return (
        f"one of the synthetic streams {', '.join(SYNTHETIC_STREAMS)}; "
        f"a file path ending in {suffixes}; "
        f"or {RIVER_PREFIX}<Name> for a river dataset or generator "
        f"(e.g. {RIVER_PREFIX}Phishing, {RIVER_PREFIX}synth.Agrawal)"
    )


def open_source(
    spec: str | os.PathLike,
    *,
    n: int | None = None,
    seed: int = 42,
    target: str | None = None,
    feature_types: Mapping[str, str] | None = None,
) -> Source:
    """Open the event source ``spec`` names.

    n: number of events (synthetic streams default to 1,000,000, river generators to
       100,000; files and river datasets use their own length, cut to ``n``).
    seed: makes synthetic and river-generator streams reproducible (ignored by files and
       river datasets, whose order is fixed).
    target: the label column of a file (see :mod:`streammoe.connectors.files`).
    feature_types: ``{feature: "numeric" | "categorical" | "ignore"}`` for files and river
       sources.

    Raises ValueError for an unknown spec (listing the valid choices) or unusable input,
    FileNotFoundError for a file path that does not exist.
    """
    n = check_n(n)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValueError(f"seed must be an integer, got {seed!r}")
    text = os.fspath(spec)
    if not isinstance(text, str):
        raise ValueError(f"spec must be text or a path, got {type(spec).__name__}")
    if text in SYNTHETIC_STREAMS:
        _reject(text, target=target, feature_types=feature_types)
        return SyntheticSource(text, n=n, seed=seed)
    if text.startswith(RIVER_PREFIX):
        _reject(text, target=target)
        return RiverSource(text[len(RIVER_PREFIX):], n=n, seed=seed, feature_types=feature_types)
    fmt = file_format(text)
    if fmt == "csv":
        return CsvSource(text, n=n, target=target, feature_types=feature_types)
    if fmt == "jsonl":
        return JsonlSource(text, n=n, target=target, feature_types=feature_types)
    if os.path.isfile(text):
        raise ValueError(f"{text}: unsupported file type; {_choices()}")
    raise ValueError(f"unknown source {text!r}; valid sources are {_choices()}")


def _reject(spec: str, **options: object) -> None:
    """Options that mean nothing for ``spec`` are errors, not silently ignored."""
    given = [name for name, value in options.items() if value is not None]
    if given:
        raise ValueError(f"{', '.join(given)} does not apply to the source {spec!r}")
