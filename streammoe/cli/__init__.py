"""The ``streammoe`` command line: ``replay``, ``bench``, ``serve``, ``generate``, ``inspect``, ``version``.

Each command is a thin function that turns options into a call of a library module and that module's
errors into one ``error: ...`` line and an exit code (:mod:`streammoe.cli.errors`).  Nothing heavy
(torch, river, numba, Kafka, matplotlib) is imported until a command runs, so ``--help`` is instant.
"""
from __future__ import annotations

from .app import app, main

__all__ = ["app", "main"]
