"""Errors that stop the daemon (``serve`` exits 1 with the message)."""
from __future__ import annotations

__all__ = ["DaemonError", "StateRefusedError"]


class DaemonError(RuntimeError):
    """The daemon cannot (continue to) run; the message says why and what to do."""


class StateRefusedError(DaemonError):
    """The stored state of a partition failed its integrity (HMAC) or format check."""
