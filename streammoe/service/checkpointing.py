"""Checkpointing of the daemon's partitions: commit when due, retry while Redis is away, and
the blocking store calls that must wait for it.

Why a module of its own: the main loop (:mod:`.daemon`) should read poll -> align -> process ->
checkpoint; *how* a checkpoint is made safe is a separate concern with its own state (the
backoff, the Kafka offsets waiting to be committed) - the way quixstreams keeps its
``checkpointing`` package apart from the application loop.

What a checkpoint is: flush the producer first (predictions and dead letters are
at-least-once: nothing is committed past an undelivered record), then one fenced, atomic Redis
commit per changed partition (:meth:`~.owner.PartitionOwner.checkpoint`: models, offsets,
pending events, early labels, counters), then - optionally - the same offsets to Kafka for lag
tools (Redis stays the source of truth).

Redis unreachable: the failure is counted (``streammoe_checkpoint_failures``,
``streammoe_store_retries{op}``), logged, and retried after a capped exponential backoff
(``redis.retry_base_s`` doubling up to ``redis.retry_cap_s``); the other partitions are not
tried (they share the one Redis).  While :attr:`Checkpointer.failing` the daemon keeps polling
but processes nothing, so the work at risk stays bounded by one checkpoint interval.  Retrying
is safe whether or not the failed commit landed: it writes a superset of the same changes
(whole parts, absolute offsets, pending adds and removes since the last acknowledged commit),
and every write is idempotent.  Redis back *without* the state (``StateLostError``) stops the
daemon; a commit refused by the fencing epoch hands the partition to ``on_fenced``.
"""
from __future__ import annotations

import logging
import time
from typing import Any, Callable, Iterable, Optional

from .backoff import Backoff
from .errors import DaemonError
from .logs import log_event

__all__ = ["Checkpointer", "CheckpointError"]

log = logging.getLogger("streammoe.serve")


class CheckpointError(DaemonError):
    """A checkpoint must not be written (Redis lost the state, or records were not delivered)."""


class Checkpointer:
    """Commits partition owners (see the module docstring).

    ``sink`` receives what a commit dead-letters (events evicted by the store's pending
    bound); ``flush()`` flushes the producer (raising when records could not be delivered);
    ``on_fenced(owner, exc)`` drops a partition another owner took; ``offsets_for(owner)``
    gives the ``{TopicPartition: next offset}`` to commit to Kafka after a checkpoint
    (``None``: do not commit offsets to Kafka); ``stopping()`` ends a blocking retry early.
    """

    def __init__(self, settings: Any, metrics: Any, *, sink: Any, flush: Callable[[], None],
                 on_fenced: Callable[[Any, BaseException], None],
                 offsets_for: Optional[Callable[[Any], dict]] = None,
                 stopping: Callable[[], bool] = lambda: False):
        self.settings = settings
        self.metrics = metrics
        self.store: Any = None
        self.backoff = Backoff(settings.redis.retry_base_s, settings.redis.retry_cap_s)
        self._sink = sink
        self._flush = flush
        self._on_fenced = on_fenced
        self._offsets_for = offsets_for
        self._stopping = stopping
        self._kafka_offsets: dict = {}

    # --- queries -------------------------------------------------------------------------------
    @property
    def failing(self) -> bool:
        """Redis is unreachable: process nothing until :meth:`retry_if_ready` succeeds."""
        return self.backoff.failing

    def due(self, owners: Iterable[Any], now: Optional[float] = None) -> list:
        """The owners whose ``checkpoint.every_events`` / ``every_seconds`` is reached."""
        ck = self.settings.checkpoint
        return [o for o in owners if o.due(ck.every_events, ck.every_seconds, now)]

    # --- checkpoints -----------------------------------------------------------------------------
    def checkpoint_due(self, owners: Iterable[Any]) -> None:
        """Checkpoint the owners that are due (nothing while Redis is unreachable)."""
        if self.failing:
            return
        due = self.due(owners, time.monotonic())
        if due:
            self.checkpoint(due, reason="policy")

    def checkpoint(self, owners: list, reason: str) -> None:
        """Flush the producer, then commit each changed owner, stopping at the first that
        cannot reach Redis (the backoff schedules the retry)."""
        from ..state.redis_store import FencedError, StateLostError, StoreUnavailableError

        self._flush()
        for owner in owners:
            if not owner.changed:
                continue
            t0 = time.perf_counter()
            try:
                owner.checkpoint(self.store, self._sink)
            except FencedError as exc:
                self._on_fenced(owner, exc)
                continue
            except StateLostError as exc:
                raise CheckpointError(f"{exc}; stopping without writing so nothing partial is stored (run Redis "
                                      f"with persistence, e.g. appendonly yes)") from exc
            except StoreUnavailableError as exc:
                self.metrics.checkpoint_failures.inc()
                self.failed("checkpoint", exc, partition=owner.partition, reason=reason)
                return
            dt = time.perf_counter() - t0
            self.succeeded()
            self.metrics.checkpoints.inc()
            self.metrics.checkpoint_seconds.observe(dt)
            if self._offsets_for is not None:
                self._kafka_offsets.update(self._offsets_for(owner))
            log_event(log, logging.DEBUG, "checkpoint", partition=owner.partition, epoch=owner.epoch,
                      offsets=dict(owner.offsets), pending=len(owner.pending), seconds=round(dt, 4), reason=reason)

    def retry_if_ready(self, owners: Iterable[Any]) -> None:
        """When the backoff expired: commit what is waiting, or (nothing to commit, e.g. the
        partition was revoked meanwhile) just PING, so processing resumes either way."""
        from ..state.redis_store import StoreUnavailableError

        if not (self.failing and self.backoff.ready()):
            return
        changed = [o for o in owners if o.changed]
        if changed:
            self.checkpoint(changed, reason="retry")
            return
        try:
            self.store.ping()
        except StoreUnavailableError as exc:
            self.failed("ping", exc)
            return
        self.succeeded()

    def kafka_offsets(self) -> dict:
        """Take the offsets checkpointed since the last call (for ``consumer.commit_async``)."""
        offsets, self._kafka_offsets = self._kafka_offsets, {}
        return offsets

    # --- blocking store calls ---------------------------------------------------------------
    def retrying(self, op: str, fn: Callable[[], Any], **fields: Any) -> Any:
        """``fn()``, retried with the backoff while Redis is unreachable, for at most
        ``redis.retry_max_s`` (then the last error is raised); for calls that must block
        (connect, claim).  Refused credentials are raised at once: retrying cannot fix them."""
        from ..state.redis_store import StoreAuthError, StoreUnavailableError

        deadline = time.monotonic() + self.settings.redis.retry_max_s
        while True:
            try:
                out = fn()
            except StoreAuthError:
                raise
            except StoreUnavailableError as exc:
                if self._stopping() or time.monotonic() >= deadline:
                    raise
                time.sleep(min(self.failed(op, exc, **fields), max(0.0, deadline - time.monotonic())))
                continue
            self.succeeded()
            return out

    # --- outcome bookkeeping -----------------------------------------------------------------
    def failed(self, op: str, exc: BaseException, **fields: Any) -> float:
        """Count and log a failed Redis operation; returns the wait before the next attempt."""
        wait = self.backoff.failure()
        self.metrics.store_retries.labels(op).inc()
        log_event(log, logging.WARNING, f"Redis unreachable, {op} will be retried: {exc}", op=op,
                  attempt=self.backoff.failures, retry_in_s=round(wait, 3), **fields)
        return wait

    def succeeded(self) -> None:
        failures = self.backoff.failures
        down = self.backoff.success()
        if down is not None:
            log_event(log, logging.INFO, "Redis reachable again, resuming", failed_attempts=failures,
                      outage_s=round(down, 3))
