"""Waiting on a running daemon by what it has done, not by wall time.

A test or benchmark on a busy or slow machine must not fail because the work took longer: it
gives up only when nothing has changed for a while.
"""
from __future__ import annotations

import time
from typing import Any, Callable

__all__ = ["processed", "wait_progressing"]


def wait_progressing(done: Callable[[], bool], progress: Callable[[], object], stall_s: float = 180.0,
                     interval: float = 0.05) -> bool:
    """Poll ``done`` until it is true; give up (returning False) only when ``progress()`` has not
    changed for ``stall_s`` seconds.  A slow or busy machine just takes longer; a stuck run
    still fails, after ``stall_s`` without progress (make it cover a cold start)."""
    last, since = progress(), time.monotonic()
    while True:
        if done():
            return True
        now = time.monotonic()
        mark = progress()
        if mark != last:
            last, since = mark, now
        elif now - since > stall_s:
            return False
        time.sleep(interval)


def processed(*daemons: Any) -> tuple[int, int]:
    """(input records, label records) consumed by the partitions these daemons own now."""
    ev = lab = 0
    for d in daemons:
        for info in d.snapshot().values():
            ev += info["stats"]["events"]
            lab += info["stats"]["labels"]
    return ev, lab
