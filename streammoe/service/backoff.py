"""Capped exponential backoff for reaching a dependency (Redis) that went away.

Why a schedule object rather than a sleeping retry loop: the daemon must keep polling Kafka
while it waits (or the group would evict it), so it asks :meth:`Backoff.ready` each loop
instead of blocking; blocking callers use :meth:`Backoff.delay` with ``time.sleep``.
"""
from __future__ import annotations

import time
from typing import Optional

__all__ = ["Backoff"]


class Backoff:
    """Waits ``base``, ``2 * base``, ``4 * base``, ... seconds, never more than ``cap``, after
    consecutive failures; :meth:`success` resets it.  No jitter: one daemon retries one
    Redis, there is no herd to spread."""

    def __init__(self, base: float, cap: float):
        if not (base > 0 and cap >= base):
            raise ValueError(f"backoff needs 0 < base <= cap, got base={base!r}, cap={cap!r}")
        self.base, self.cap = float(base), float(cap)
        self.failures = 0
        self.failing_since: Optional[float] = None
        self.next_try = 0.0

    @property
    def failing(self) -> bool:
        return self.failures > 0

    def delay(self) -> float:
        """The wait after the current number of failures (0 when nothing failed)."""
        if not self.failures:
            return 0.0
        return min(self.cap, self.base * 2.0 ** min(self.failures - 1, 60))

    def failure(self, now: Optional[float] = None) -> float:
        """Count a failure; returns how long to wait before the next attempt."""
        now = time.monotonic() if now is None else now
        if self.failing_since is None:
            self.failing_since = now
        self.failures += 1
        wait = self.delay()
        self.next_try = now + wait
        return wait

    def success(self) -> Optional[float]:
        """Reset; returns for how long it had been failing (``None`` if it was not)."""
        since, self.failing_since = self.failing_since, None
        self.failures = 0
        self.next_try = 0.0
        return None if since is None else time.monotonic() - since

    def ready(self, now: Optional[float] = None) -> bool:
        """Whether the next attempt may be made now."""
        return (time.monotonic() if now is None else now) >= self.next_try
