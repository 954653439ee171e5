"""Progress of a long command on stderr: a rich bar on a terminal, a plain line every few seconds
otherwise (a log file, a CI job, a pipe), nothing when disabled."""
from __future__ import annotations

import sys
import threading
import time
from typing import Any, Optional

#: seconds between two plain progress lines when stderr is not a terminal
PLAIN_EVERY_S = 5.0


class Progress:
    """``with Progress("replay", total) as p: ... p.update(info)`` where ``info`` is an
    :class:`streammoe.evaluation.ProgressInfo`."""

    def __init__(self, label: str, total: Optional[int], enabled: bool = True,
                 every_s: float = PLAIN_EVERY_S, stream: Any = None) -> None:
        self.label, self.total, self.enabled, self.every_s = label, total, enabled, every_s
        self.stream = stream if stream is not None else sys.stderr
        self._bar: Any = None
        self._task: Any = None
        self._last = 0.0
        self._t0 = 0.0
        self._events = 0
        self._stop = threading.Event()
        self._ticker: Optional[threading.Thread] = None
        self._lock = threading.Lock()

    def __enter__(self) -> "Progress":
        if self.enabled and getattr(self.stream, "isatty", lambda: False)():
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn
            from rich.progress import Progress as Bar

            columns = [TextColumn(f"[bold]{self.label}"), BarColumn(), MofNCompleteColumn(),
                       TextColumn("{task.fields[rate]}"), TextColumn("{task.fields[acc]}"),
                       TimeElapsedColumn(), TimeRemainingColumn()]
            self._bar = Bar(*columns, console=Console(file=self.stream), transient=False)
            self._bar.__enter__()
            self._task = self._bar.add_task(self.label, total=self.total, rate="", acc="")
        self._last = self._t0 = time.monotonic()
        if self.enabled and self._bar is None:  # a line every few seconds even while nothing finishes
            self._ticker = threading.Thread(target=self._tick, name="progress", daemon=True)
            self._ticker.start()
        return self

    def _tick(self) -> None:
        """While no update comes (the first window compiles, a slow model), say that time passes."""
        while not self._stop.wait(self.every_s / 2):
            with self._lock:
                now = time.monotonic()
                if now - self._last >= self.every_s:
                    self._last = now
                    of = f"/{self.total:,}" if self.total else ""
                    what = " (compiling the engine's kernels on a first run, or a slow model)" if not self._events \
                        else ""
                    print(f"{self.label}: {self._events:,}{of} events, {now - self._t0:.0f} s{what}",
                          file=self.stream, flush=True)

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        if self._ticker is not None:
            self._ticker.join()
            self._ticker = None
        if self._bar is not None:
            self._bar.__exit__(*exc)
            self._bar = None

    def update(self, info: Any) -> None:
        if not self.enabled:
            return
        acc = " ".join(f"{name} {100 * a:.2f}%" for name, a in info.accuracy.items())
        if self._bar is not None:
            self._bar.update(self._task, completed=info.events, rate=f"{info.events_per_s:,.0f} ev/s", acc=acc)
            return
        with self._lock:
            self._events = info.events
            now = time.monotonic()
            if now - self._last < self.every_s and not info.done:
                return
            self._last = now
        of = f"/{self.total:,}" if self.total else ""
        print(f"{self.label}: {info.events:,}{of} events, {info.elapsed_s:.0f} s, {info.events_per_s:,.0f} ev/s; "
              f"accuracy {acc}", file=self.stream, flush=True)
