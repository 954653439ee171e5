"""``streammoe serve``: consume events, predict, learn, checkpoint to Redis - the main loop.

What happens, in order:

1. Start: connect to Redis (PING), check the topics exist (the labels topic must have as
   many partitions as the input topic: they are co-partitioned), build the producer, join
   the consumer group on the input and labels topics with the *range* assignor - which
   hands partition *p* of both topics to the same daemon - and serve ``/healthz`` and
   ``/metrics``.
2. Assignment (a rebalance callback): for each input partition, claim a new fencing epoch,
   load its checkpoint (models, pending events, offsets) and seek both partitions to the
   stored offsets (none stored: ``kafka.auto_offset_reset``).
3. Loop: poll a batch; queue records per partition; release them in event-time order
   (:mod:`.align`) to the partition's :class:`~.owner.PartitionOwner`, which decodes,
   dead-letters, predicts and learns; predictions and dead letters are produced
   asynchronously, by default from a child process (:mod:`.sender`). A partition whose
   ``checkpoint.every_events`` or ``every_seconds`` is reached is checkpointed: producer flushed
   first (predictions are at-least-once), then one
   fenced atomic Redis commit (learning is exactly-once).
   A partition whose stored state fails its HMAC check (``redis.hmac_key``: tampered, or
   signed with another key) or is not a valid state is *refused*: nothing of it is loaded
   (no pickle is ever involved), reset or overwritten, the error is logged and counted
   (``streammoe_state_refused``), and the daemon stops with :class:`StateRefusedError`
   (``serve`` exits 1) - silently starting that partition afresh would throw away its
   model and relearn from the stored offsets as if nothing happened.
4. Revocation, SIGTERM (:meth:`Daemon.stop`): finish the run in progress, checkpoint, close
   the consumer (leaving the group).  A checkpoint refused by the fencing epoch means a newer
   owner took the partition: its model is dropped and its records are ignored.

Redis is the source of truth for offsets; committing them to Kafka as well
(``serve.commit_kafka_offsets``) only feeds lag tools.

Checkpoints - when they are due, how a failed one is retried, the store calls that block - are
:mod:`.checkpointing`'s job; the loop asks it once per step.

Redis unreachable (restarted, failed over, network cut) - the daemon waits, it does not exit:

* A checkpoint that fails with a connection error is counted
  (``streammoe_checkpoint_failures``, ``streammoe_store_retries{op="checkpoint"}``), logged,
  and retried after a capped exponential backoff (``redis.retry_base_s`` doubling up to
  ``redis.retry_cap_s``).  Meanwhile the daemon keeps polling Kafka (it stays in its group)
  but processes nothing, so the work at risk stays bounded by one checkpoint interval.  When a
  retry succeeds, processing resumes where it stopped.
* Did the failed commit land?  The daemon cannot know (Redis may have run the script and died
  before answering) and does not need to: the retry commits a superset of the same changes -
  every changed part as a whole blob, absolute offsets, the pending events added and removed
  since the last *acknowledged* commit - and each of those writes is idempotent, so applying
  the lost commit zero or one time before the retry ends in the same stored state.  Nothing is
  learned twice, nothing is reloaded, no prediction is made again.
* The commit requires the stored epoch to equal the owner's: if Redis came back *without* the
  data (no AOF/snapshot, or flushed), the commit is refused (``StateLostError``) and the daemon
  stops with an error rather than writing a partial state over nothing.
* Claiming a partition (on assignment) retries with the same backoff for at most
  ``redis.retry_max_s``, then the daemon stops with an error.  A claim that landed but whose
  answer was lost only makes the epoch skip a number; fencing needs it to grow, nothing more.
"""
from __future__ import annotations

import logging
import threading
import time
from typing import Any, Callable, Optional

from .align import EVENTS, LABELS, Aligner
from .checkpointing import Checkpointer
from .deadletter import encode_dead_letter
from .errors import DaemonError, StateRefusedError
from .logs import log_event
from .metrics import DaemonMetrics, HttpServer
from .owner import OwnerConfig, PartitionOwner, state_name
from .schema import DeadLetter
from .settings import Settings

__all__ = ["Daemon", "DaemonError", "StateRefusedError", "make_store"]

log = logging.getLogger("streammoe.serve")

#: Room left for headers and the record envelope when a dead letter's value must be cut.
_DLQ_HEADROOM = 64 * 1024


def make_store(settings: Settings, ping: bool = True) -> Any:
    """A :class:`~streammoe.state.redis_store.RedisStore` with a bounded retry policy (and, with
    ``ping``, one round trip to check that Redis answers).

    redis-py's default retry spends seconds per refused connection; a daemon should fail a
    checkpoint quickly and try again at the next one instead."""
    import redis
    from redis.backoff import ExponentialBackoff
    from redis.retry import Retry

    from ..state.redis_store import RedisStore

    kw = settings.redis.client_kwargs()
    kw["retry"] = Retry(ExponentialBackoff(cap=1.0, base=0.05), 2)
    if settings.redis.cluster:
        from ..state.redis_store import cluster_client

        client = cluster_client(settings.redis.url, **kw)  # connects now: may raise StoreUnavailableError
    else:
        client = redis.Redis.from_url(settings.redis.url, **kw)
    hmac_key = settings.redis.hmac_key.get_secret_value() if settings.redis.hmac_key else None
    store = RedisStore(client, prefix=settings.redis.key_prefix, hmac_key=hmac_key,
                       pending_max=settings.limits.pending_max_count)
    if ping:
        store.ping()
    return store


def _default_model_factory(params: dict) -> tuple[Callable[[], Any], Callable[[dict], Any]]:
    from ..model import DriftMoE

    try:
        DriftMoE(**params)
    except (TypeError, ValueError) as exc:
        raise DaemonError(f"model.params {params} are not valid DriftMoE parameters: {exc}") from exc
    return (lambda: DriftMoE(**params)), DriftMoE.from_parts


class _Sink:
    """Owner output -> Kafka producer, counting what is sent and remembering failures."""

    def __init__(self, daemon: "Daemon"):
        self._d = daemon
        s = daemon.settings
        self._pred_topic = s.kafka.predictions_topic
        self._dlq_topic = s.kafka.deadletter_topic
        self._dlq_max = max(1024, s.kafka.max_request_size - _DLQ_HEADROOM)

    def prediction(self, partition: int, key: Optional[bytes], value: bytes, latency_s: float) -> None:
        # Input partition p -> predictions partition p mod n: the predictions of one input
        # partition stay in order, and the producer skips its partitioner.
        d = self._d
        d._producer.send(self._pred_topic, value, key, partition % d._pred_partitions)
        d.metrics.latency.observe(max(latency_s, 0.0))

    def dead(self, dl: DeadLetter, key: Optional[bytes] = None) -> None:
        d = self._d
        rec = encode_dead_letter(dl, key=key, max_value_bytes=self._dlq_max)
        d._producer.send(self._dlq_topic, rec.value, rec.key, None, rec.headers)
        d.metrics.dead_letters.labels(dl.reason_code.value).inc()


def _listener(daemon: "Daemon") -> Any:
    """A kafka-python rebalance listener for ``daemon`` (kafka-python insists on its ABC)."""
    from kafka import ConsumerRebalanceListener

    class Listener(_ListenerMethods, ConsumerRebalanceListener):
        pass

    return Listener(daemon)


class _ListenerMethods:
    """kafka-python rebalance listener forwarding to the daemon (runs on kafka's IO thread
    while the main thread waits inside ``poll``)."""

    def __init__(self, daemon: "Daemon"):
        self._d = daemon

    def on_partitions_revoked(self, revoked: Any) -> None:
        self._d._on_revoked(revoked, lost=False)

    def on_partitions_assigned(self, assigned: Any) -> None:
        self._d._on_assigned(assigned)

    def on_partitions_lost(self, lost: Any) -> None:
        self._d._on_revoked(lost, lost=True)


class _GcTuning:
    """Fewer, cheaper garbage collections while serving.

    Why: the daemon allocates several short-lived objects per record (Kafka records, decoded
    events, prediction dicts) while it holds many long-lived ones (models, pending events,
    imported modules).  With CPython's default thresholds the cyclic collector then runs a full
    collection every few thousand records and walks everything alive: measured, it took about
    40% of the loop's time on a 4-partition backlog.  Freezing what exists after start-up moves
    it out of the collector's reach (``gc.freeze``), and a larger first-generation threshold
    makes collections rarer; reference counting still frees almost everything at once.
    Undone at shutdown (the daemon may run inside a larger program, e.g. tests)."""

    THRESHOLD0 = 50_000

    def apply(self) -> "_GcTuning":
        import gc

        self._old = gc.get_threshold()
        gc.freeze()
        gc.set_threshold(max(self._old[0], self.THRESHOLD0), *self._old[1:])
        return self

    def restore(self) -> None:
        import gc

        gc.set_threshold(*self._old)
        gc.unfreeze()


class Daemon:
    """One ``serve`` process (or thread): see the module docstring.

    ``consumer_overrides`` / ``producer_overrides`` go to kafka-python on top of the
    settings (tests pass short group timeouts); ``store`` replaces the Redis store built from
    the settings; ``model_factory(params) -> (new_model, model_from_parts)`` replaces
    DriftMoE.  Use :meth:`run` (blocks) or :meth:`start_thread`; stop with :meth:`stop`.
    """

    def __init__(self, settings: Settings, *, consumer_overrides: Optional[dict] = None,
                 producer_overrides: Optional[dict] = None, store: Any = None,
                 model_factory: Optional[Callable[[dict], tuple]] = None):
        self.settings = settings
        self._consumer_overrides = dict(consumer_overrides or {})
        self._producer_overrides = dict(producer_overrides or {})
        self.store = store
        new_model, from_parts = (model_factory or _default_model_factory)(dict(settings.model.params))
        self._from_parts = from_parts
        try:
            self.cfg = OwnerConfig.from_settings(settings, new_model)
        except ValueError as exc:  # e.g. model.params the keyed pool cannot run
            raise DaemonError(str(exc)) from exc
        self.metrics = DaemonMetrics()
        self.owners: dict[int, PartitionOwner] = {}
        self.fenced: set[int] = set()
        self._aligners: dict[int, Aligner] = {}
        self._fetched: dict[Any, Optional[int]] = {}
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._checkpoint_on_stop = True
        self._started = threading.Event()
        self._state = "created"
        self._fatal: Optional[BaseException] = None
        self._send_errors = 0
        self._send_error: Optional[str] = None
        self._last_loop = time.monotonic()
        self._rate_mark = (time.monotonic(), 0)
        self._poll_clock = 0.0
        self._next_refresh = 0.0
        self._thread: Optional[threading.Thread] = None
        self._consumer: Any = None
        self._producer: Any = None
        self.http: Optional[HttpServer] = None
        self._sink = _Sink(self)
        self.checkpoints = Checkpointer(
            settings, self.metrics, sink=self._sink, flush=self._flush, on_fenced=self._drop_fenced,
            offsets_for=self._kafka_offsets if settings.serve.commit_kafka_offsets else None,
            stopping=self._stop.is_set)
        self.checkpoints.store = store
        self.error: Optional[BaseException] = None
        self._blas_limit: Any = None
        self._gc: Optional[_GcTuning] = None
        self._warmup: Optional[threading.Thread] = None
        self._pred_partitions = 1

    # --- lifecycle -------------------------------------------------------------------------
    def start(self) -> "Daemon":
        """Connect everything and join the group (returns before the first assignment)."""
        from kafka import KafkaConsumer
        from kafka.coordinator.assignors.range import RangePartitionAssignor

        from .sender import make_sender

        s = self.settings
        topics = [s.kafka.input_topic] + ([s.kafka.labels_topic] if s.kafka.labels_topic else [])
        try:
            if self.store is None:
                # Redis may come up after the daemon (compose, restarts): wait for it with the backoff
                # (a Redis Cluster client connects while it is made, so making it is retried too)
                store = self.checkpoints.retrying("connect", lambda: make_store(s))
                self.store = self.checkpoints.store = store
            # the sender child starts (interpreter, imports) while we build the consumer
            self._producer = make_sender(s.kafka.producer_kwargs(**self._producer_overrides),
                                         in_child=s.serve.producer_process, wait=False,
                                         client=s.kafka.producer_client)
            kw = s.kafka.consumer_kwargs(**{"partition_assignment_strategy": (RangePartitionAssignor,),
                                            "fetch_max_wait_ms": s.serve.fetch_max_wait_ms,
                                            "check_crcs": s.serve.check_crcs,
                                            **self._consumer_overrides})
            self._consumer = KafkaConsumer(**kw)
            self._check_topics()
            self._consumer.subscribe(topics=topics, listener=_listener(self))
            if s.http.enabled:
                self.http = HttpServer(s.http.host, s.http.port, self.metrics, self.health).start()
            self._limit_blas_threads()
            self._producer.wait_ready()
            self._warmup = threading.Thread(target=self._warm_model, name="streammoe-warmup", daemon=True)
            self._warmup.start()
            self._gc = _GcTuning().apply()
        except BaseException:
            self._close_clients()
            raise
        self._state = "running"
        self._started.set()
        log_event(log, logging.INFO, "serving", topics=topics, group=s.kafka.group_id,
                  http=self.http.url if self.http else None, model=s.model.name)
        return self

    def _warm_model(self) -> None:
        """Run a throw-away model over a few synthetic events while the group join is pending.

        Why: the first ``predict_learn_many`` of a process loads the compiled kernels from
        numba's cache (about a second); the broker holds the first JoinGroup for a while
        anyway (Tansu: half the session timeout; Kafka: ``group.initial.rebalance.delay.ms``),
        so loading them then takes that second off the time to the first prediction.  The
        model is discarded and seeds its own RNG, so nothing here changes any result; the
        assignment waits for it (:meth:`_assign`), so it never runs beside a real model."""
        try:
            model = self.cfg.new_model()
            xs = [{"f0": float(i % 7) / 7.0, "f1": float(i % 3)} for i in range(64)]
            model.predict_learn_many(xs, [i % 2 for i in range(64)])
            model.learn_batch(xs[:8], [i % 2 for i in range(8)])
        except Exception:  # only a warm-up: whatever fails here, the real path reports
            log.debug("model warm-up failed", exc_info=True)

    def _limit_blas_threads(self) -> None:
        n = self.settings.serve.blas_threads
        if n is None:
            return
        try:
            from threadpoolctl import threadpool_limits
        except ImportError:
            log_event(log, logging.WARNING, "threadpoolctl is not installed, so serve.blas_threads is not "
                      "applied; set OPENBLAS_NUM_THREADS / OMP_NUM_THREADS before starting instead",
                      blas_threads=n)
            return
        self._blas_limit = threadpool_limits(limits=n, user_api="blas")

    def _check_topics(self) -> None:
        k = self.settings.kafka
        known = self._consumer.topics()
        missing = [t for t in (k.input_topic, k.labels_topic, k.predictions_topic, k.deadletter_topic)
                   if t and t not in known]
        if missing:
            raise DaemonError(f"topic(s) {', '.join(missing)} do not exist on {k.bootstrap_servers}; create "
                              f"them first (the labels topic with as many partitions as the input topic)")
        self._pred_partitions = max(1, len(self._consumer.partitions_for_topic(k.predictions_topic) or ()))
        if k.labels_topic:
            n_in = len(self._consumer.partitions_for_topic(k.input_topic) or ())
            n_lab = len(self._consumer.partitions_for_topic(k.labels_topic) or ())
            if n_in != n_lab:
                raise DaemonError(f"labels topic {k.labels_topic!r} has {n_lab} partitions but input topic "
                                  f"{k.input_topic!r} has {n_in}; they must be equal (a label goes to the "
                                  f"partition number of its event)")

    def run(self) -> None:
        """Serve until :meth:`stop` (or a fatal error, re-raised after cleaning up)."""
        if not self._started.is_set():
            self.start()
        ok = False
        try:
            while not self._stop.is_set():
                self._step()
            ok = True
        except BaseException as exc:
            self.error = exc
            log.error("stopping after an error: %s", exc, exc_info=True,
                      extra={"fields": {"error": type(exc).__name__}})
            raise
        finally:
            self._shutdown(checkpoint=ok and self._checkpoint_on_stop)

    def start_thread(self) -> "Daemon":
        """Run in a background thread (tests, examples); errors end up in :attr:`error`."""
        def target() -> None:
            try:
                self.run()
            except BaseException:
                pass  # kept in self.error and logged by run()

        self.start()
        self._thread = threading.Thread(target=target, name="streammoe-serve", daemon=True)
        self._thread.start()
        return self

    def stop(self, checkpoint: bool = True) -> None:
        """Ask the loop to finish its current run and stop.  ``checkpoint=False`` stops
        without the final checkpoint (what a crash leaves behind; used by tests)."""
        self._checkpoint_on_stop = checkpoint
        self._stop.set()

    def join(self, timeout: Optional[float] = None) -> bool:
        """Wait for the background thread; True if it ended."""
        if self._thread is None:
            return True
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def _shutdown(self, checkpoint: bool) -> None:
        self._state = "stopping"
        try:
            with self._lock:
                try:
                    if checkpoint and self.owners:
                        self.checkpoints.checkpoint(list(self.owners.values()), reason="shutdown")
                        if self.checkpoints.failing:
                            checkpoint = False
                            log_event(log, logging.ERROR, "final checkpoint failed: Redis is unreachable; the next "
                                      "owner re-processes from the last checkpoint")
                except Exception as exc:
                    checkpoint = False
                    if self.error is None:
                        self.error = exc
                    log.error("final checkpoint failed: %s", exc, exc_info=True)
                for p in list(self.owners):
                    self._forget(p)
        finally:
            self._close_clients()
            if self._gc is not None:
                self._gc.restore()
                self._gc = None
            if self._blas_limit is not None:
                self._blas_limit.restore_original_limits()
                self._blas_limit = None
            self._state = "stopped"
            log_event(log, logging.INFO, "stopped", checkpointed=checkpoint)

    def _close_clients(self) -> None:
        """Close the consumer (leaving the group; nothing owned is left to revoke), the
        producer (flushing what is queued) and the HTTP server; each at most once."""
        consumer, self._consumer = self._consumer, None
        producer, self._producer = self._producer, None
        http, self.http = self.http, None
        try:
            if consumer is not None:
                consumer.close()
        finally:
            try:
                if producer is not None:
                    producer.close(timeout=10)
            finally:
                if http is not None:
                    http.stop()

    # --- the loop --------------------------------------------------------------------------
    def _step(self) -> None:
        """One turn of the loop: poll -> align and process -> checkpoint."""
        records = self._poll()
        ck = self.checkpoints
        with self._lock:
            self._enqueue(records)
            if ck.failing:  # nothing is processed until Redis is back
                ck.retry_if_ready(self.owners.values())
            else:
                self._process()
            self._producer.ship()
            ck.checkpoint_due(self.owners.values())
        offsets = ck.kafka_offsets()
        if offsets:
            self._consumer.commit_async(offsets=offsets)
        self._last_loop = time.monotonic()
        if self._last_loop >= self._next_refresh:
            self.refresh_metrics()
            self._next_refresh = self._last_loop + self.settings.serve.metrics_interval_s

    def _poll(self) -> dict:
        backoff = self.checkpoints.backoff
        busy = any(a.events or a.labels for a in list(self._aligners.values()))
        timeout = 20 if busy else self.settings.serve.poll_timeout_ms
        if backoff.failing:  # nothing to process until Redis is back: poll until the next retry
            timeout = int(min(self.settings.serve.poll_timeout_ms,
                              max(1.0, 1000 * (backoff.next_try - time.monotonic()))))
        t_poll = time.monotonic()
        records = self._consumer.poll(timeout_ms=timeout)
        # the aligner's waits count time spent waiting for records, not time spent processing
        self._poll_clock += time.monotonic() - t_poll
        if self._fatal is not None:
            raise self._fatal
        return records

    def _enqueue(self, records: dict) -> None:
        k = self.settings.kafka
        limit = self.settings.serve.max_queued_records
        for tp, recs in records.items():
            aligner = self._aligners.get(tp.partition)
            if aligner is None or not recs:
                continue  # not ours (any more): the next owner reads them from its checkpoint
            side = EVENTS if tp.topic == k.input_topic else LABELS
            aligner.push(side, recs)
            self._fetched[tp] = recs[-1].offset + 1
            # Bound memory while one side waits for the other: drop what is over the limit
            # and fetch it again later.  (Not pause/resume: kafka-python 3.0.12 can leave a
            # resumed partition unfetched for good when records were parked while paused.)
            back = aligner.truncate(side, limit)
            if back is not None:
                self._consumer.seek(tp, back)
                self._fetched[tp] = back

    def _process(self) -> None:
        k = self.settings.kafka
        max_batch = k.max_poll_records
        for p in sorted(self.owners):
            owner, aligner = self.owners.get(p), self._aligners.get(p)
            if owner is None or aligner is None:
                continue
            tp_in, tp_lab = self._tps(p)
            every = self.settings.checkpoint.every_events
            while not self._stop.is_set():
                # a run ends where the next checkpoint is due, so checkpoints land every N records
                room = max(1, min(max_batch, every - owner.events_since_checkpoint))
                run = aligner.next_run(lambda: self._caught_up(tp_lab), lambda: self._caught_up(tp_in),
                                       self._poll_clock, room)
                if run is None:
                    break
                side, recs = run
                if side == EVENTS:
                    n = owner.handle_events(recs, self._sink, defer=True)
                else:
                    n = owner.handle_labels(recs, self._sink, defer=True)
                self.metrics.records.labels(side).inc(n)
                due = self.checkpoints.due([owner])
                if due or owner.deferred >= max_batch:
                    self._flush_owner(owner)
                if due:
                    self.checkpoints.checkpoint([owner], reason="policy")
                    if p not in self.owners:
                        break  # fenced
                    if self.checkpoints.failing:
                        return  # Redis is unreachable: process nothing more until a retry succeeds
            if p in self.owners:
                self._flush_owner(owner)

    def _flush_owner(self, owner: PartitionOwner) -> None:
        """Run the model work the owner queued (one batch per polled batch, see
        :meth:`PartitionOwner.flush`) and count what it predicted and learned."""
        before = (owner.stats.predicted, owner.stats.learned)
        owner.flush(self._sink)
        self.metrics.predictions.inc(owner.stats.predicted - before[0])
        self.metrics.learned.inc(owner.stats.learned - before[1])

    def _tps(self, p: int) -> tuple:
        from kafka import TopicPartition

        k = self.settings.kafka
        return (TopicPartition(k.input_topic, p),
                TopicPartition(k.labels_topic, p) if k.labels_topic else None)

    def _caught_up(self, tp: Any) -> bool:
        """Everything the broker had for ``tp`` at the last fetch has been read."""
        if tp is None:
            return True
        try:
            hw = self._consumer.highwater(tp)
        except Exception:  # not assigned (any more)
            return True
        if hw is None:
            return False
        nxt = self._fetched.get(tp)
        return hw == 0 if nxt is None else nxt >= hw

    # --- checkpoints -----------------------------------------------------------------------
    def _flush(self) -> None:
        errors, first = self._producer.flush()
        if errors:
            self._send_errors += errors
            self._send_error = self._send_error or first
        if self._send_errors:
            raise DaemonError(f"{self._send_errors} prediction/dead-letter record(s) could not be produced "
                              f"(first error: {self._send_error!r}); stopping without a checkpoint so a "
                              f"restart re-processes them")

    def _kafka_offsets(self, owner: PartitionOwner) -> dict:
        """The checkpointed offsets of ``owner`` as kafka-python wants them (for lag tools)."""
        from kafka import OffsetAndMetadata

        out = {}
        for tp, key in zip(self._tps(owner.partition), (owner.input_key, owner.labels_key)):
            if tp is not None and key in owner.offsets:
                out[tp] = OffsetAndMetadata(owner.offsets[key], "", -1)
        return out

    def _drop_fenced(self, owner: PartitionOwner, exc: BaseException) -> None:
        p = owner.partition
        self.metrics.fenced.inc()
        self.fenced.add(p)
        log_event(log, logging.ERROR, f"lost ownership, dropping the partition's model: {exc}",
                  partition=p, epoch=owner.epoch)
        self._forget(p)
        self._park(*[tp for tp in self._tps(p) if tp is not None])

    def _park(self, *tps: Any) -> None:
        """Stop reading partitions we hold but must not process: their records are ignored
        (no owner) and the position jumps to the end so little is fetched in vain.  Not
        ``pause``: see :meth:`_enqueue`."""
        for tp in tps:
            try:
                self._consumer.seek_to_end(tp)
            except Exception:  # no longer assigned
                pass

    def _forget(self, p: int) -> None:
        self.owners.pop(p, None)
        aligner = self._aligners.pop(p, None)
        if aligner is not None:
            aligner.clear()
        for tp in self._tps(p):
            self._fetched.pop(tp, None)
        self.metrics.forget_partition(p, (self.settings.kafka.input_topic, self.settings.kafka.labels_topic))

    # --- rebalances (called on kafka's IO thread while the main thread is inside poll) -----
    def _on_assigned(self, assigned: Any) -> None:
        try:
            with self._lock:
                self._assign(set(assigned))
        except BaseException as exc:  # surfaced by the main loop after poll returns
            self._fatal = exc
            raise

    def _assign(self, assigned: set) -> None:
        if self._warmup is not None:
            self._warmup.join()
        k = self.settings.kafka
        inputs = sorted(tp.partition for tp in assigned if tp.topic == k.input_topic)
        label_parts = {tp.partition for tp in assigned if tp.topic == k.labels_topic}
        for tp in assigned:
            if tp.topic == k.labels_topic and tp.partition not in inputs:
                log_event(log, logging.WARNING, "labels partition assigned without its input partition; "
                          "not consuming it", partition=tp.partition)
                self._park(tp)
        for p in inputs:
            if p in self.owners:
                continue
            try:
                owner = self.checkpoints.retrying(
                    "claim", lambda: PartitionOwner.open(self.store, self.cfg, p, self._from_parts), partition=p)
            except (ValueError, KeyError) as exc:  # StateFormatError (HMAC, not our format) is a ValueError
                self._refuse_state(p, exc)
            with_labels = k.labels_topic is not None and p in label_parts
            if k.labels_topic is not None and not with_labels:
                log_event(log, logging.WARNING, "input partition assigned without its labels partition; "
                          "delayed labels of this partition cannot be joined here", partition=p)
            self.owners[p] = owner
            self._aligners[p] = Aligner(with_labels, self.settings.serve.align_idle_ms / 1000.0,
                                        event_watermark=owner.event_time_ms,
                                        max_wait_s=self.settings.serve.align_max_wait_ms / 1000.0)
            self.fenced.discard(p)
            tp_in, tp_lab = self._tps(p)
            self._seek(tp_in, owner.offsets.get(owner.input_key))
            if with_labels:
                self._seek(tp_lab, owner.offsets.get(owner.labels_key))
            log_event(log, logging.INFO, "partition assigned", partition=p, epoch=owner.epoch,
                      offsets=dict(owner.offsets), models=len(owner.models), pending=len(owner.pending))
        self.metrics.partitions.set(len(self.owners))

    def _refuse_state(self, p: int, exc: BaseException) -> None:
        """Stop on a partition whose stored state cannot be trusted (see the module docstring)."""
        name = state_name(self.cfg.base_name, self.cfg.input_topic, p)
        key = self.store.key(name) if hasattr(self.store, "key") else name
        self.metrics.state_refused.inc()
        msg = (f"refusing the stored state of partition {p} (Redis key {key!r}): {exc}. Nothing was loaded, "
               f"reset or overwritten. If redis.hmac_key changed, start with the key that signed the state; "
               f"if the state was tampered with, restore it from a backup (deleting the key starts the "
               f"partition from scratch and loses its model)")
        log_event(log, logging.CRITICAL, msg, partition=p, error=type(exc).__name__)
        raise StateRefusedError(msg) from exc

    def _seek(self, tp: Any, offset: Optional[int]) -> None:
        if offset is not None:
            self._consumer.seek(tp, offset)
        elif self.settings.kafka.auto_offset_reset == "latest":
            self._consumer.seek_to_end(tp)
        else:
            self._consumer.seek_to_beginning(tp)
        self._fetched[tp] = offset

    def _on_revoked(self, revoked: Any, lost: bool) -> None:
        from ..state.redis_store import StoreUnavailableError

        k = self.settings.kafka
        try:
            with self._lock:
                parts = sorted({tp.partition for tp in revoked if tp.topic in (k.input_topic, k.labels_topic)})
                owners = [self.owners[p] for p in parts if p in self.owners]
                if owners:
                    try:
                        self.checkpoints.checkpoint(owners, reason="lost" if lost else "revoked")
                    except (DaemonError, StoreUnavailableError) as exc:
                        log_event(log, logging.ERROR, f"could not checkpoint revoked partitions: {exc}",
                                  partitions=parts)
                for p in parts:
                    self._forget(p)
                self.metrics.partitions.set(len(self.owners))
                if owners:
                    log_event(log, logging.INFO, "partitions revoked", partitions=[o.partition for o in owners],
                              lost=lost)
        except BaseException as exc:
            self._fatal = exc
            raise

    # --- observability ---------------------------------------------------------------------
    def refresh_metrics(self) -> None:
        """Update the gauges (expert shares, drift events, lag, pending, checkpoint age)."""
        import numpy as np

        m = self.metrics
        now = time.monotonic()
        with self._lock:
            total = 0
            n_models = 0
            for p, owner in self.owners.items():
                st = owner.stats
                total += st.events
                label = str(p)
                if st.scored:
                    m.accuracy.labels(label).set(st.correct / st.scored)
                m.pending.labels(label).set(len(owner.pending))
                m.early_labels.labels(label).set(len(owner.early))
                m.checkpoint_age.labels(label).set(now - owner.last_checkpoint if owner.changed else 0.0)
                usage = None
                actions: dict[str, int] = {}
                if owner.pool is not None and owner.pool.model is not None:  # keyed pool: usage per key
                    n_models += owner.pool.n_keys
                    usage = owner.pool.model.usage.sum(axis=0).astype(float)
                for model in owner.models.values():
                    n_models += 1
                    u = np.asarray(model.expert_usage(), dtype=float)
                    usage = u if usage is None or len(usage) != len(u) else usage + u
                    for entry in getattr(model, "drift_log", ()):
                        a = str(entry.get("action", "?"))
                        actions[a] = actions.get(a, 0) + 1
                if usage is not None and usage.sum() > 0:
                    share = usage / usage.sum()
                    for e, v in enumerate(share):
                        m.expert_share.labels(label, str(e)).set(float(v))
                for a, n in actions.items():
                    m.drift_events.labels(label, a).set(n)
                tp_in, tp_lab = self._tps(p)
                for tp, key in ((tp_in, owner.input_key), (tp_lab, owner.labels_key)):
                    if tp is None:
                        continue
                    try:
                        hw = self._consumer.highwater(tp)
                    except Exception:
                        hw = None
                    if hw is not None:
                        m.lag.labels(tp.topic, label).set(max(0, hw - owner.offsets.get(key, 0)))
            m.models.set(n_models)
            m.partitions.set(len(self.owners))
        t0, n0 = self._rate_mark
        if now > t0:
            m.events_per_second.set(max(0.0, (total - n0) / (now - t0)) if total >= n0 else 0.0)
        self._rate_mark = (now, total)

    def health(self) -> tuple[bool, dict]:
        """``(healthy, details)`` for ``/healthz``: running, polling, no fenced partition, and
        checkpoints succeeding."""
        now = time.monotonic()
        loop_age = now - self._last_loop
        stall_limit = max(30.0, 3 * self.settings.kafka.max_poll_interval_ms / 1000.0)
        ckpt_limit = max(60.0, 10 * self.settings.checkpoint.every_seconds)
        problems = []
        if self._state != "running":
            problems.append(self._state)
        if loop_age > stall_limit:
            problems.append(f"main loop silent for {loop_age:.0f} s")
        if self.fenced:
            problems.append(f"fenced partitions {sorted(self.fenced)}: another owner took them")
        since = self.checkpoints.backoff.failing_since
        if since is not None and now - since > ckpt_limit:
            problems.append(f"Redis unreachable for {now - since:.0f} s (checkpoints waiting)")
        info = {"status": "ok" if not problems else "unhealthy", "problems": problems,
                "partitions": sorted(self.owners), "fenced": sorted(self.fenced),
                "last_loop_age_s": round(loop_age, 3)}
        return not problems, info

    def snapshot(self) -> dict:
        """A consistent view of what this daemon owns (for tests and ``inspect``-like tools)."""
        with self._lock:
            return {p: {"epoch": o.epoch, "offsets": dict(o.offsets), "pending": len(o.pending),
                        "stats": o.stats.to_json(), "models": len(o.models)}
                    for p, o in self.owners.items()}
