"""Everything one daemon holds for one input partition it owns: models, pending events,
offsets, and the checkpoint that moves them to Redis in one atomic, fenced step.

Why one owner per partition: a partition is the unit Kafka hands to a consumer, and its
records arrive in order, so the state built from them (the partition's model - or its
keyed models - and the events waiting for labels) can be checkpointed together with the
offsets of the input *and* labels partitions in a single ``RedisStore.commit``.  After a
crash or a rebalance the next owner claims a higher epoch (the old one can no longer
write), loads that checkpoint and seeks to its offsets: no event is learned twice, none is
skipped, and the final state equals that of an uninterrupted run.

Redis layout (one state hash per partition, see :mod:`streammoe.state.redis_store`):

* model parts as ``DriftMoE.state_parts`` names; keyed models (``serve.model_per = "key"``)
  either as one keyed pool (``serve.keyed_engine = "pool"``: a :class:`KeyedDriftMoE`, parts
  under ``pool/``, see :mod:`streammoe.service.keyed_pool`) or one DriftMoE per key under
  ``k/<url-quoted key>/<part>`` (``"models"``); either way all keys of a partition commit atomically;
* extras: ``daemon`` (counters, stream time, event watermark, pending sequence: JSON),
  ``guard:<key>`` (the feature set / label type an event must match: JSON) and ``early``
  (labels that came before their event, :mod:`.early`: JSON);
* offsets ``<topic>:<partition>`` for the input and labels partitions.

Checks made on decoded events, in order (each failure is a dead letter with its reason):
``too_many_keys`` (a new key beyond ``serve.max_keys_per_partition``), ``wrong_features``
(``serve.feature_policy = "strict"``: the features of the model's first event, exactly),
``unknown_label`` (outside ``serve.classes``, or of another type than the model's first
label - ``1`` vs ``"1"`` vs ``true`` would otherwise silently be three classes, or merge).
The guard is fixed by the first *event* of a model, not by what the model happens to have
learned when a batch starts, so decisions do not depend on batch boundaries.
"""
from __future__ import annotations

import json
import logging
import os
import socket
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Protocol
from urllib.parse import quote, unquote

from .. import __version__
from ..state.redis_store import CommitResult
from .early import EarlyLabel, EarlyLabels
from .keyed_pool import KeyedPool, pool_params, split_pool_parts
from .pending import PendingEvent, PendingLabels
from .schema import DeadLetter, DecodeLimits, Event, ReasonCode, decode_event, decode_label, encode_prediction

__all__ = ["OwnerConfig", "PartitionOwner", "Sink", "Guard", "state_name", "part_prefix", "split_part",
           "DAEMON_EXTRA", "GUARD_EXTRA", "EARLY_EXTRA"]

log = logging.getLogger("streammoe.serve")

DAEMON_EXTRA = "daemon"
GUARD_EXTRA = "guard:"
EARLY_EXTRA = "early"
_DAEMON_FORMAT = "streammoe/daemon@1"
_LABEL_TYPES = {"bool": bool, "int": int, "str": str}
#: kinds of queued model work: (kind, model key, x, y, record, event | pending event, pending seq)
_PREDICT = "predict"
_LEARN = "learn"


class Sink(Protocol):
    """Where an owner's output goes (the daemon: a Kafka producer)."""

    def prediction(self, partition: int, key: Optional[bytes], value: bytes, latency_s: float) -> None: ...

    def dead(self, dl: DeadLetter, key: Optional[bytes] = None) -> None: ...


def state_name(base: str, topic: str, partition: int) -> str:
    """Redis model name of one input partition."""
    return f"{base}/{topic}/{int(partition)}"


def part_prefix(key: Optional[str]) -> str:
    """Prefix of a keyed model's parts inside its partition's hash ('' for the unkeyed model)."""
    return "" if key is None else f"k/{quote(key, safe='')}/"


def split_part(name: str) -> tuple[Optional[str], str]:
    """Inverse of :func:`part_prefix`: ``(key, part name)``."""
    if name.startswith("k/"):
        _, enc, rest = name.split("/", 2)
        return unquote(enc), rest
    return None, name


@dataclass(frozen=True)
class OwnerConfig:
    """The settings an owner needs (built once by the daemon from :class:`Settings`)."""

    base_name: str
    input_topic: str
    labels_topic: Optional[str]
    new_model: Callable[[], Any]
    limits: DecodeLimits = field(default_factory=DecodeLimits)
    pending_max: int = 100_000
    pending_ttl_s: float = 3600.0
    pending_max_bytes: Optional[int] = 64 * 1024 * 1024
    early_max: int = 10_000
    early_max_bytes: int = 4 * 1024 * 1024
    keyed: bool = False
    max_keys: int = 10_000
    strict_features: bool = True
    classes: Optional[tuple] = None
    #: keyed models as one KeyedDriftMoE per partition (``serve.keyed_engine = "pool"``), built
    #: with these KeyedDriftMoE keywords; ``None``: a dict of ``new_model()`` per key
    pool_params: Optional[dict] = None

    @classmethod
    def from_settings(cls, settings: Any, new_model: Callable[[], Any]) -> "OwnerConfig":
        serve = settings.serve
        pooled = serve.model_per == "key" and serve.keyed_engine == "pool"
        if pooled and serve.feature_policy != "strict":
            raise ValueError("serve.keyed_engine = 'pool' needs serve.feature_policy = 'strict' "
                             "(the pool's keys share one fixed feature layout)")
        return cls(
            base_name=settings.model.name, input_topic=settings.kafka.input_topic,
            labels_topic=settings.kafka.labels_topic, new_model=new_model,
            limits=DecodeLimits(**{k: getattr(settings.limits, k) for k in DecodeLimits.model_fields}),
            pending_max=settings.limits.pending_max_count, pending_ttl_s=settings.limits.pending_ttl_s,
            pending_max_bytes=settings.limits.pending_max_bytes,
            early_max=settings.limits.early_labels_max_count, early_max_bytes=settings.limits.early_labels_max_bytes,
            keyed=serve.model_per == "key", max_keys=serve.max_keys_per_partition,
            strict_features=serve.feature_policy == "strict",
            classes=tuple(serve.classes) if serve.classes is not None else None,
            pool_params=pool_params(dict(settings.model.params)) if pooled else None,
        )


@dataclass
class Guard:
    """What later events of one model must match: set by its first event / first label."""

    features: Optional[frozenset] = None
    label_type: Optional[type] = None
    dirty: bool = False

    def to_blob(self) -> bytes:
        body = {"features": sorted(self.features) if self.features is not None else None,
                "label_type": self.label_type.__name__ if self.label_type else None}
        return json.dumps(body, separators=(",", ":")).encode()

    @classmethod
    def from_blob(cls, blob: bytes) -> "Guard":
        d = json.loads(blob)
        return cls(frozenset(d["features"]) if d["features"] is not None else None,
                   _LABEL_TYPES.get(d["label_type"]) if d["label_type"] else None)


@dataclass
class OwnerStats:
    """Counters of one partition (kept across restarts in the ``daemon`` extra)."""

    events: int = 0        # input records consumed
    labels: int = 0        # label records consumed
    predicted: int = 0
    learned: int = 0       # inline + joined delayed labels
    joined: int = 0        # delayed labels joined with their event
    scored: int = 0        # predictions compared with their label (prequential)
    correct: int = 0
    dead: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> dict:
        return {k: getattr(self, k) for k in ("events", "labels", "predicted", "learned", "joined", "scored",
                                               "correct")} | {"dead": dict(self.dead)}

    @classmethod
    def from_json(cls, d: dict) -> "OwnerStats":
        return cls(**{k: int(d.get(k, 0)) for k in ("events", "labels", "predicted", "learned", "joined",
                                                     "scored", "correct")},
                   dead={str(k): int(v) for k, v in d.get("dead", {}).items()})


def _same_label(a: Any, b: Any) -> bool:
    return type(a) is type(b) and a == b


class PartitionOwner:
    """Models, pending events and offsets of one input partition (see the module docstring).

    Not thread-safe: the daemon calls it from one thread (or under its lock).
    """

    def __init__(self, cfg: OwnerConfig, partition: int, epoch: int, *, models: Optional[dict] = None,
                 guards: Optional[dict] = None, offsets: Optional[dict] = None,
                 pending: Optional[PendingLabels] = None, stream_time: float = float("-inf"),
                 stats: Optional[OwnerStats] = None, stored_parts: Optional[dict] = None,
                 early: Optional[EarlyLabels] = None, event_time_ms: Optional[int] = None,
                 pool: Optional[KeyedPool] = None):
        self.cfg = cfg
        self.partition = int(partition)
        self.epoch = int(epoch)
        self.name = state_name(cfg.base_name, cfg.input_topic, partition)
        self.input_key = f"{cfg.input_topic}:{self.partition}"
        self.labels_key = f"{cfg.labels_topic}:{self.partition}" if cfg.labels_topic else None
        self.models: dict[Optional[str], Any] = dict(models or {})
        #: serve.keyed_engine = "pool": all keyed models of the partition (``models`` stays empty)
        self.pool = pool if pool is not None else (
            KeyedPool(cfg.pool_params, cfg.classes) if cfg.keyed and cfg.pool_params is not None else None)
        self.guards: dict[Optional[str], Guard] = dict(guards or {})
        self.offsets: dict[str, int] = dict(offsets or {})
        self.pending = pending or PendingLabels(cfg.pending_max, cfg.pending_ttl_s,
                                                max_bytes=cfg.pending_max_bytes)
        self.stream_time = stream_time
        #: timestamp (ms) of the newest event read on the input partition: labels stamped before it
        #: whose event is not pending are proven unknown (see :mod:`.early`)
        self.event_time_ms = event_time_ms
        self.early = early or EarlyLabels(cfg.early_max, cfg.early_max_bytes, cfg.pending_ttl_s)
        self.stats = stats or OwnerStats()
        # part names stored in Redis per model key (to remove parts a shrinking pool dropped)
        self._stored: dict[Optional[str], set[str]] = {k: set(v) for k, v in (stored_parts or {}).items()}
        self._changed = False
        self._ops: list[tuple] = []  # model work queued for flush(), in record order
        # Pending events that left the set (evicted, expired) while their prediction was still
        # queued: the model may yet refuse them, so their dead letter waits for the prediction
        # (pending seq -> (event, reason code, why)); see _dead_pending and _finish.
        self._queued_seqs: set[int] = set()
        self._left_while_queued: dict[int, tuple] = {}
        self.events_since_checkpoint = 0
        self.last_checkpoint = time.monotonic()
        self.last_checkpoint_wall: Optional[float] = None
        self._class_set = {(type(c), c) for c in cfg.classes} if cfg.classes is not None else None

    # --- loading ---------------------------------------------------------------------------
    @classmethod
    def open(cls, store: Any, cfg: OwnerConfig, partition: int, model_from_parts: Callable[[dict], Any]
             ) -> "PartitionOwner":
        """Become the owner of ``partition``: claim a new epoch (fencing out the previous
        owner), then load its last checkpoint and pending events."""
        name = state_name(cfg.base_name, cfg.input_topic, partition)
        epoch = store.claim(name)
        ck = store.load(name)
        pool_parts, plain = split_pool_parts(ck.parts.items())
        pool = None
        if pool_parts:
            if cfg.pool_params is None:
                raise ValueError(f"partition {partition} holds a keyed pool (serve.keyed_engine = 'pool'); "
                                 f"this daemon runs another engine")
            pool = KeyedPool.from_parts(pool_parts, cfg.pool_params, cfg.classes)
        elif plain and cfg.pool_params is not None:
            raise ValueError(f"partition {partition} holds per-key DriftMoE models (serve.keyed_engine = "
                             f"'models'); this daemon runs the keyed pool")
        by_key: dict[Optional[str], dict[str, bytes]] = {}
        for pname, blob in plain.items():
            key, part = split_part(pname)
            by_key.setdefault(key, {})[part] = blob
        models = {key: model_from_parts(parts) for key, parts in by_key.items()}
        guards: dict[Optional[str], Guard] = {}
        daemon: dict = {}
        early = EarlyLabels.from_blob(ck.extra.get(EARLY_EXTRA), cfg.early_max, cfg.early_max_bytes,
                                      cfg.pending_ttl_s)
        for xname, blob in ck.extra.items():
            if xname == DAEMON_EXTRA:
                daemon = json.loads(blob)
            elif xname.startswith(GUARD_EXTRA):
                enc = xname[len(GUARD_EXTRA):]
                guards[unquote(enc) if enc else None] = Guard.from_blob(blob)
        pending = PendingLabels.restore(store.pending_load(name), cfg.pending_max, cfg.pending_ttl_s,
                                        int(daemon.get("pending_seq", 0)), cfg.pending_max_bytes)
        st = daemon.get("stream_time")
        et = daemon.get("event_time_ms")
        owner = cls(cfg, partition, epoch, models=models, guards=guards, offsets=ck.offsets, pending=pending,
                    stream_time=float(st) if st is not None else float("-inf"),
                    stats=OwnerStats.from_json(daemon.get("stats", {})),
                    stored_parts={k: set(v) for k, v in by_key.items()}, early=early,
                    event_time_ms=int(et) if et is not None else None, pool=pool)
        owner.last_checkpoint_wall = ck.ts
        return owner

    # --- queries ---------------------------------------------------------------------------
    @property
    def changed(self) -> bool:
        """Whether anything happened since the last checkpoint."""
        return self._changed

    def next_offset(self, topic_key: Optional[str]) -> Optional[int]:
        return self.offsets.get(topic_key) if topic_key else None

    # --- events ----------------------------------------------------------------------------
    def handle_events(self, records: list, sink: Sink, *, defer: bool = False) -> int:
        """Decode, check, predict (and learn inline labels) for input records, in order.
        Returns how many records were consumed (duplicates of processed offsets skipped).

        With ``defer`` the model work is queued and done by the next :meth:`flush` (the daemon
        flushes once per polled batch, see :meth:`flush` for why that is exact)."""
        cfg, stats = self.cfg, self.stats
        nxt = self.offsets.get(self.input_key)
        accepted: list[tuple[Any, Event, Optional[str]]] = []
        consumed = 0
        for rec in records:
            if nxt is not None and rec.offset < nxt:
                continue  # already processed: the fetch restarted behind our position
            nxt = rec.offset + 1
            consumed += 1
            t = rec.timestamp / 1000.0
            if t > self.stream_time:
                self.stream_time = t
            if self.event_time_ms is None or rec.timestamp > self.event_time_ms:
                self.event_time_ms = rec.timestamp
            ev = decode_event(rec.value, cfg.limits, topic=cfg.input_topic, partition=self.partition,
                              offset=rec.offset)
            if isinstance(ev, DeadLetter):
                self._dead(sink, ev, rec.key)
                continue
            mkey = ev.key if cfg.keyed else None
            problem = self._check_event(mkey, ev)
            if problem is not None:
                code, msg = problem
                self._dead(sink, DeadLetter(code, msg, rec.value, cfg.input_topic, self.partition, rec.offset),
                           rec.key)
                continue
            accepted.append((rec, ev, mkey))
            self._defer_prediction(rec, ev, mkey, sink)
        if consumed:
            self._changed = True
            stats.events += consumed
            self.events_since_checkpoint += consumed
            self.offsets[self.input_key] = nxt
        if self.early:
            self._settle_early(accepted, sink)
        self._expire(sink)
        if not defer:
            self.flush(sink)
        return consumed

    def _defer_prediction(self, rec: Any, ev: Event, mkey: Optional[str], sink: Sink) -> None:
        """Queue the prediction of an accepted event; an unlabelled one waits for its label from
        now on (its prediction is filled in by :meth:`flush`)."""
        seq = None
        if ev.y is None and self.cfg.labels_topic is not None:
            pending = self.pending
            for old, why in pending.add(ev.id, ev.x, key=ev.key if self.cfg.keyed else None, ts=ev.ts,
                                        y_pred=None, offset=rec.offset, event_time=rec.timestamp / 1000.0):
                self._dead_pending(sink, old, ReasonCode.PENDING_EVICTED, why)
            pe = pending.get(ev.id)
            seq = pe.seq if pe is not None else None
        if seq is not None:
            self._queued_seqs.add(seq)
        self._ops.append((_PREDICT, mkey, ev.x, ev.y, rec, ev, seq))

    def _settle_early(self, accepted: list, sink: Sink) -> None:
        """After a run of events: join the early labels whose event came, then refuse those
        the input partition has been read past (see :mod:`.early`)."""
        early, pending = self.early, self.pending
        joined: list = []
        for _, ev, _ in accepted:
            if ev.id in early and ev.id in pending:
                lab = early.pop(ev.id)
                pe = pending.get(ev.id)
                guard = self.guards.get(pe.key) or self._new_guard(pe.key)
                problem = self._check_label(guard, lab.y)
                if problem:
                    self._learn_joined(joined, sink)
                    self._dead(sink, DeadLetter(ReasonCode.UNKNOWN_LABEL, problem + " (the event keeps waiting)",
                                                lab.value, self.cfg.labels_topic, self.partition, lab.offset), lab.key)
                    continue
                pending.pop(ev.id)
                joined.append((pe.key, pe, lab.y, lab))
        self._learn_joined(joined, sink)
        for lab in early.proven_missing(self.event_time_ms):
            self._dead(sink, _unknown_label(lab, self), lab.key)
        self._changed = self._changed or early.dirty

    def _check_event(self, mkey: Optional[str], ev: Event) -> Optional[tuple[ReasonCode, str]]:
        guard = self.guards.get(mkey)
        if guard is None:
            known = self.guards.keys() | self.models.keys() | (self.pool.index.keys() if self.pool else set())
            if mkey not in known and len(known) >= self.cfg.max_keys:
                return (ReasonCode.TOO_MANY_KEYS,
                        f"partition {self.partition} already holds {self.cfg.max_keys} keyed models "
                        f"(serve.max_keys_per_partition); key {mkey!r} is new")
            guard = self._new_guard(mkey)
        fix_features = False
        if self.cfg.strict_features:
            if guard.features is None:
                fix_features = True
            elif ev.x.keys() != guard.features:
                return ReasonCode.WRONG_FEATURES, _feature_diff(ev.x.keys(), guard.features)
        if ev.y is not None:
            problem = self._check_label(guard, ev.y)
            if problem:
                return ReasonCode.UNKNOWN_LABEL, problem
        if fix_features:  # only an accepted event fixes the feature set
            guard.features, guard.dirty = frozenset(ev.x), True
            if self.pool is not None and self.pool.features is None:  # ... and the pool's columns
                self.pool.features = list(ev.x)
        return None

    def _new_guard(self, mkey: Optional[str]) -> Guard:
        """A guard for a model seen for the first time (derived from a loaded model's state)."""
        model = self.models.get(mkey)
        guard = Guard(dirty=True)
        if self.pool is not None:  # one feature layout and label type for the whole partition
            if self.pool.features is not None:
                guard.features = frozenset(self.pool.features)
            guard.label_type = self.pool.label_type()
        elif model is not None:
            if model.features_:
                guard.features = frozenset(model.features_)
            if model.classes_:
                guard.label_type = type(model.classes_[0])
        self.guards[mkey] = guard
        return guard

    def _check_label(self, guard: Guard, y: Any) -> Optional[str]:
        if self._class_set is not None:
            if (type(y), y) not in self._class_set:
                return f"label {y!r} is not one of serve.classes {list(self.cfg.classes)}"
            return None
        if guard.label_type is None:
            guard.label_type, guard.dirty = type(y), True
        elif type(y) is not guard.label_type:
            return (f"label {y!r} is {type(y).__name__} but this model's labels are "
                    f"{guard.label_type.__name__}; mixing label types would create distinct (or merged) classes")
        return None

    def _model(self, mkey: Optional[str]) -> Any:
        model = self.models.get(mkey)
        if model is None:
            model = self.models[mkey] = self.cfg.new_model()
        return model

    # --- the model's work, deferred and batched -------------------------------------------
    @property
    def deferred(self) -> int:
        """Predictions and learning steps queued for the next :meth:`flush`."""
        return len(self._ops)

    def flush(self, sink: Sink) -> None:
        """Do the queued model work in record order, then emit the predictions and count.

        Why deferred: on a stream with delayed labels the aligner releases short alternating runs
        of events and labels (a label follows its event ``delay`` events later), so calling the
        model per run means a few events per call and the per-call cost dominates.  Queued, a
        whole polled batch of a partition is one call: where predicting changes no model state
        (``DriftMoE.predict_is_pure``: the compiled windowed path), predictions and delayed-label
        learning interleave in a single ``predict_learn_many`` (a learning step is a prediction
        whose output is dropped, exactly what ``learn_batch`` does), so the result equals the
        run-by-run order bit for bit.  Otherwise consecutive steps of one kind are batched as
        before.  The bookkeeping (offsets, pending events, early labels, dead letters of bad
        records) already happened in record order; only the model calls and the predictions
        they produce wait here.  A model that refuses a batch is retried step by step, so only
        the refused events are dead-lettered."""
        if not self._ops:
            return
        ops, self._ops = self._ops, []
        self._queued_seqs.clear()
        if self.pool is not None:  # every key of the partition in one keyed-pool call
            self._finish(ops, self._run_pool(ops, sink), sink)
            return
        by_model: dict[Optional[str], list[int]] = {}
        for i, op in enumerate(ops):
            by_model.setdefault(op[1], []).append(i)
        results: list = [None] * len(ops)
        for mkey, idx in by_model.items():
            model = self._model(mkey)
            mine = [ops[i] for i in idx]
            out = None
            if getattr(model, "predict_is_pure", False) and len(mine) > 1:
                out = self._run_mixed(model, mine)
            if out is None:
                out = self._run_by_kind(model, mine, sink)
            for i, res in zip(idx, out):
                results[i] = res
        self._finish(ops, results, sink)

    def _run_mixed(self, model: Any, ops: list) -> Optional[list]:
        """One ``predict_learn_many`` over predictions and learning steps; ``None`` if the model
        refused the batch (it then learned nothing)."""
        last = model.last_expert
        version = model.n_learned_
        try:
            out = model.predict_learn_many([op[2] for op in ops], [op[3] for op in ops])
        except ValueError:
            return None
        results: list = []
        for op, (proba, expert) in zip(ops, out):
            if op[0] is _PREDICT:
                results.append((proba, expert, version))
                last = expert
            else:
                results.append(True)
            if op[3] is not None:
                version += 1
        model.last_expert = last  # learning steps do not answer (as in learn_batch)
        return results

    def _run_pool(self, ops: list, sink: Sink) -> list:
        """All queued steps of every key in one keyed-pool call (predicting is pure there, so
        predictions and learning steps interleave exactly as run one by one); a refused batch is
        retried step by step, so only the refused events are dead-lettered."""
        pool = self.pool
        try:
            out = pool.predict_learn([op[1] for op in ops], [op[2] for op in ops], [op[3] for op in ops])
            return [res if op[0] is _PREDICT else True for op, res in zip(ops, out)]
        except ValueError:
            pass
        results: list = []
        for op in ops:
            try:
                res = pool.predict_learn([op[1]], [op[2]], [op[3]])[0]
            except ValueError as exc:
                rec = op[4]
                if op[0] is _PREDICT:
                    dl = DeadLetter(ReasonCode.PROCESSING_ERROR, f"the model refused the event: {exc}",
                                    rec.value, self.cfg.input_topic, self.partition, rec.offset)
                else:
                    dl = DeadLetter(ReasonCode.PROCESSING_ERROR, f"the model refused the labelled event "
                                    f"{op[5].id!r}: {exc}", rec.value, self.cfg.labels_topic, self.partition,
                                    rec.offset)
                self._dead(sink, dl, rec.key)
                results.append(None if op[0] is _PREDICT else False)
                continue
            results.append(res if op[0] is _PREDICT else True)
        return results

    def _run_by_kind(self, model: Any, ops: list, sink: Sink) -> list:
        """Consecutive predictions in one ``predict_learn_many``, consecutive learning steps in
        one ``learn_batch``; a refused batch is retried one step at a time."""
        results: list = []
        i, n = 0, len(ops)
        while i < n:
            kind = ops[i][0]
            j = i
            while j < n and ops[j][0] is kind:
                j += 1
            seg = ops[i:j]
            xs, ys = [op[2] for op in seg], [op[3] for op in seg]
            if kind is _PREDICT:
                version = model.n_learned_
                try:
                    out = model.predict_learn_many(xs, ys)
                except ValueError:
                    out = self._predict_one_by_one(model, seg, sink)
                for op, res in zip(seg, out):
                    if res is None:
                        results.append(None)
                        continue
                    results.append((res[0], res[1], version))
                    if op[3] is not None:
                        version += 1
            else:
                try:
                    model.learn_batch(xs, ys)
                    results.extend([True] * len(seg))
                except ValueError:
                    results.extend(self._learn_one_by_one(model, seg, sink))
            i = j
        return results

    def _predict_one_by_one(self, model: Any, ops: list, sink: Sink) -> list:
        """Isolate the event(s) the model refuses (the batch call validates all first)."""
        out: list = []
        for op in ops:
            try:
                out.append(model.predict_learn_many([op[2]], [op[3]])[0])
            except ValueError as exc:
                rec = op[4]
                self._dead(sink, DeadLetter(ReasonCode.PROCESSING_ERROR, f"the model refused the event: {exc}",
                                            rec.value, self.cfg.input_topic, self.partition, rec.offset), rec.key)
                out.append(None)
        return out

    def _learn_one_by_one(self, model: Any, ops: list, sink: Sink) -> list:
        out: list = []
        for _, _, x, y, rec, pe, _ in ops:
            try:
                model.learn_one(x, y)
            except ValueError as exc:
                self._dead(sink, DeadLetter(ReasonCode.PROCESSING_ERROR, f"the model refused the labelled "
                                            f"event {pe.id!r}: {exc}", rec.value, self.cfg.labels_topic,
                                            self.partition, rec.offset), rec.key)
                out.append(False)
                continue
            out.append(True)
        return out

    def _finish(self, ops: list, results: list, sink: Sink) -> None:
        """Emit predictions and count, in record order (see :meth:`flush`)."""
        stats, pending = self.stats, self.pending
        now = time.time()
        answered: dict[int, Any] = {}  # pending seq -> prediction, for labels joined in this flush
        for op, res in zip(ops, results):
            if op[0] is _LEARN:
                if res:
                    pe, y = op[5], op[3]
                    stats.learned += 1
                    stats.joined += 1
                    stats.scored += 1
                    stats.correct += _same_label(answered.get(pe.seq, pe.y_pred), y)
                continue
            _, _, _, y, rec, ev, seq = op
            left = self._left_while_queued.pop(seq, None) if seq is not None else None
            if res is None:  # refused by the model (dead-lettered): it does not wait for a label
                self._forget_pending(ev.id, seq)
                continue
            proba, expert, version = res
            y_pred = max(proba, key=proba.get) if proba else None
            ts = ev.ts if ev.ts is not None else rec.timestamp / 1000.0
            latency = now - ts
            try:
                value = encode_prediction(ev.id, y_pred, proba, expert, version, latency * 1000.0)
            except ValueError as exc:  # NaN probabilities: the model misbehaved on this event
                self._dead(sink, DeadLetter(ReasonCode.PROCESSING_ERROR, f"prediction not encodable: {exc}",
                                            rec.value, self.cfg.input_topic, self.partition, rec.offset), rec.key)
                self._forget_pending(ev.id, seq)
                continue
            sink.prediction(self.partition, rec.key, value, latency)
            if left is not None:  # it left the pending set before its prediction was made
                self._dead_pending(sink, *left)
            stats.predicted += 1
            if y is not None:
                stats.learned += 1
                stats.scored += 1
                stats.correct += _same_label(y_pred, y)
            elif seq is not None:
                answered[seq] = y_pred
                pending.set_prediction(ev.id, seq, y_pred)

    def _forget_pending(self, event_id: str, seq: Optional[int]) -> None:
        pe = self.pending.get(event_id)
        if seq is not None and pe is not None and pe.seq == seq:
            self.pending.pop(event_id)

    # --- labels ----------------------------------------------------------------------------
    def handle_labels(self, records: list, sink: Sink, *, defer: bool = False) -> int:
        """Join delayed labels with their pending events and learn them, in order.

        The joined events are learned in batches by :meth:`flush` (at the end of this call, or,
        with ``defer``, when the daemon flushes): equal to learning them one by one, because
        nothing else in this loop reads the models."""
        cfg, stats, pending = self.cfg, self.stats, self.pending
        nxt = self.offsets.get(self.labels_key)
        consumed = 0
        joined: list = []  # (model key, pending event, label, record) waiting to be learned

        def dead(dl: DeadLetter, key: Optional[bytes]) -> None:
            self._learn_joined(joined, sink)
            self._dead(sink, dl, key)

        for rec in records:
            if nxt is not None and rec.offset < nxt:
                continue
            nxt = rec.offset + 1
            consumed += 1
            t = rec.timestamp / 1000.0
            if t > self.stream_time:
                self.stream_time = t
                if pending.due(t):
                    self._learn_joined(joined, sink)
                    self._expire(sink)
            msg = decode_label(rec.value, cfg.limits, topic=cfg.labels_topic, partition=self.partition,
                               offset=rec.offset)
            if isinstance(msg, DeadLetter):
                dead(msg, rec.key)
                continue
            pe = pending.get(msg.id)
            if pe is None:
                lab = EarlyLabel(msg.id, msg.y, rec.offset, rec.timestamp, rec.value, rec.key)
                if self.event_time_ms is not None and rec.timestamp < self.event_time_ms:
                    dead(_unknown_label(lab, self), rec.key)
                    continue
                # its event may still come (see .early): keep the label until it does or it cannot
                for old, why in self.early.add(lab):
                    dead(DeadLetter(ReasonCode.EARLY_LABEL_EVICTED, f"label for {old.id!r}: {why}", old.value,
                                    cfg.labels_topic, self.partition, old.offset), old.key)
                continue
            guard = self.guards.get(pe.key) or self._new_guard(pe.key)
            problem = self._check_label(guard, msg.y)
            if problem:
                dead(DeadLetter(ReasonCode.UNKNOWN_LABEL, problem + " (the event keeps waiting)",
                                rec.value, cfg.labels_topic, self.partition, rec.offset), rec.key)
                continue
            pending.pop(msg.id)
            joined.append((pe.key, pe, msg.y, rec))
        self._learn_joined(joined, sink)
        if consumed:
            self._changed = True
            stats.labels += consumed
            self.events_since_checkpoint += consumed
            self.offsets[self.labels_key] = nxt
        if not defer:
            self.flush(sink)
        return consumed

    def _learn_joined(self, joined: list, sink: Sink) -> None:
        """Queue the joined events' learning steps (and empty ``joined``) for :meth:`flush`."""
        for mkey, pe, y, rec in joined:
            self._ops.append((_LEARN, mkey, pe.x, y, rec, pe, pe.seq))
        joined.clear()

    # --- dead letters ----------------------------------------------------------------------
    def _dead(self, sink: Sink, dl: DeadLetter, key: Optional[bytes]) -> None:
        code = dl.reason_code.value
        self.stats.dead[code] = self.stats.dead.get(code, 0) + 1
        sink.dead(dl, key)

    def _dead_pending(self, sink: Sink, pe: PendingEvent, code: ReasonCode, why: str) -> None:
        if pe.seq in self._queued_seqs:  # not predicted yet: one outcome only, decided by _finish
            self._left_while_queued[pe.seq] = (pe, code, why)
            return
        self._changed = True
        self._dead(sink, DeadLetter(code, f"event {pe.id!r}: {why}", pe.event_bytes(), self.cfg.input_topic,
                                    self.partition, pe.offset), pe.key.encode() if pe.key else None)

    def _expire(self, sink: Sink) -> None:
        if self.early:
            for lab in self.early.expired(self.stream_time):
                self._dead(sink, DeadLetter(ReasonCode.EARLY_LABEL_EVICTED,
                                            f"label for {lab.id!r}: its event did not come within "
                                            f"{self.cfg.pending_ttl_s:g} s of the label's time (limits.pending_ttl_s)",
                                            lab.value, self.cfg.labels_topic, self.partition, lab.offset), lab.key)
            self._changed = self._changed or self.early.dirty
        for pe in self.pending.expire(self.stream_time):
            self._dead_pending(sink, pe, ReasonCode.LABEL_TIMEOUT,
                               f"no label within {self.cfg.pending_ttl_s:g} s of event time "
                               f"(limits.pending_ttl_s)")

    # --- checkpoint ------------------------------------------------------------------------
    def due(self, every_events: int, every_seconds: float, now: Optional[float] = None) -> bool:
        """Whether a checkpoint is due: something changed and either bound is reached."""
        if not self._changed:
            return False
        now = time.monotonic() if now is None else now
        return self.events_since_checkpoint >= every_events or now - self.last_checkpoint >= every_seconds

    def checkpoint(self, store: Any, sink: Sink) -> CommitResult:
        """Commit changed parts, offsets, pending changes and counters atomically, fenced by
        this owner's epoch.  Raises ``FencedError`` when another owner took over (nothing is
        written then), ``StateLostError`` when Redis no longer holds the state this owner
        loaded, and ``StoreUnavailableError`` when Redis is unreachable: then the changes stay
        pending and the next attempt sends them again, with whatever changed since (every
        write is idempotent, so it does not matter whether the failed one landed)."""
        self.flush(sink)  # the daemon flushes before its producer barrier; this is a safety net
        parts: dict[str, bytes] = {}
        remove: list[str] = []
        written: dict[Optional[str], set[str]] = {}
        for mkey, model in self.models.items():
            prefix = part_prefix(mkey)
            stored = self._stored.get(mkey)
            blobs = model.dirty_parts() if stored else model.state_parts()
            if stored and model.n_experts_ < sum(1 for p in stored if p.startswith("expert/")):
                gone = stored - set(model.state_parts())
                remove += [prefix + p for p in sorted(gone)]
            parts.update({prefix + p: b for p, b in blobs.items()})
            written[mkey] = set(blobs)
        if self.pool is not None:
            parts.update(self.pool.dirty_parts())
        extra = {DAEMON_EXTRA: json.dumps(self._daemon_json(), separators=(",", ":"), sort_keys=True).encode()}
        for mkey, guard in self.guards.items():
            if guard.dirty:
                extra[GUARD_EXTRA + ("" if mkey is None else quote(mkey, safe=""))] = guard.to_blob()
        if self.early.dirty:
            extra[EARLY_EXTRA] = self.early.to_blob()
        put, dels = self.pending.changes()
        result = store.commit(self.name, parts, dict(self.offsets), self.epoch, extra, remove=remove,
                              pending_put=put, pending_del=dels, require_epoch=True)
        if self.pool is not None:
            self.pool.mark_clean()
        for mkey, model in self.models.items():
            model.mark_clean()
            names = self._stored.setdefault(mkey, set())
            names |= written.get(mkey, set())
            names -= {r[len(part_prefix(mkey)):] for r in remove if r.startswith(part_prefix(mkey))}
        for guard in self.guards.values():
            guard.dirty = False
        self.pending.committed()
        self.early.dirty = False
        for eid in result.evicted:  # only when Redis held more than this owner knew of
            pe = self.pending.pop(eid)
            if pe is not None:
                self._dead_pending(sink, pe, ReasonCode.PENDING_EVICTED, "evicted by the store's pending bound")
        self._changed = bool(result.evicted)
        self.events_since_checkpoint = 0
        self.last_checkpoint = time.monotonic()
        self.last_checkpoint_wall = time.time()
        return result

    def _daemon_json(self) -> dict:
        return {
            "format": _DAEMON_FORMAT, "version": __version__,
            "stream_time": self.stream_time if self.stream_time != float("-inf") else None,
            "event_time_ms": self.event_time_ms,
            "pending_seq": self.pending.next_seq, "stats": self.stats.to_json(),
            "models": len(self.models) if self.pool is None else self.pool.n_keys,
            "owner": f"{socket.gethostname()}:{os.getpid()}",
        }


def _unknown_label(lab: EarlyLabel, owner: "PartitionOwner") -> DeadLetter:
    return DeadLetter(ReasonCode.UNKNOWN_EVENT_ID,
                      f"no event with id {lab.id!r} is waiting for a label in partition {owner.partition}, and "
                      f"an event stamped after this label ({owner.event_time_ms} ms > {lab.ts_ms} ms) was already "
                      f"read there, so it is not coming (never sent here, already labelled, expired or evicted)",
                      lab.value, owner.cfg.labels_topic, owner.partition, lab.offset)


def _feature_diff(got: Any, want: frozenset) -> str:
    got = set(got)
    missing, extra = sorted(want - got), sorted(got - want)
    parts = []
    if missing:
        parts.append(f"missing {_names(missing)}")
    if extra:
        parts.append(f"unexpected {_names(extra)}")
    return ("features differ from the model's (" + "; ".join(parts) + "); serve.feature_policy is strict")


def _names(names: list, limit: int = 5) -> str:
    shown = ", ".join(repr(n) for n in names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")
