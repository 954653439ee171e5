"""Research candidates for the default model, measured by :mod:`benchmarks.quality` (``--models NAME``).

Each entry builds a fresh model for a seed; overrides (``NAME@key=value``) go to ``DriftMoE``.
"""
from __future__ import annotations

from typing import Any, Callable

CANDIDATES: dict[str, Callable[..., Any]] = {}
