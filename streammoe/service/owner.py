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
    def handle_events(self, records: list, sink: Sink) -> int:
        """Decode, check, predict (and learn inline labels) for input records, in order.
        Returns how many records were consumed (duplicates of processed offsets skipped)."""
        cfg, stats = self.cfg, self.stats
        nxt = self.offsets.get(self.input_key)
        accepted: list[tuple[Any, Event, Optional[str]]] = []
        groups: dict[Optional[str], list[int]] = {}
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
            groups.setdefault(mkey, []).append(len(accepted))
            accepted.append((rec, ev, mkey))
        if consumed:
            self._changed = True
            stats.events += consumed
            self.events_since_checkpoint += consumed
            self.offsets[self.input_key] = nxt
        if accepted:
            results = self._predict_groups(accepted, groups, sink)
            self._emit(accepted, results, sink)
        if self.early:
            self._settle_early(accepted, sink)
        self._expire(sink)
        return consumed

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

    def _predict_groups(self, accepted: list, groups: dict, sink: Sink) -> list:
        """``(proba, expert, model_version)`` per accepted event (``None`` if refused)."""
        results: list = [None] * len(accepted)
        if self.pool is not None:
            return self._predict_pool(accepted, sink)
        for mkey, idx in groups.items():
            model = self._model(mkey)
            xs = [accepted[i][1].x for i in idx]
            ys = [accepted[i][1].y for i in idx]
            version = model.n_learned_
            try:
                out = model.predict_learn_many(xs, ys)
            except ValueError:
                out = self._predict_one_by_one(model, idx, accepted, xs, ys, sink)
            for i, y, res in zip(idx, ys, out):
                if res is not None:
                    results[i] = (res[0], res[1], version)
                    if y is not None:
                        version += 1
        return results

    def _predict_pool(self, accepted: list, sink: Sink) -> list:
        """All accepted events through the partition's keyed pool in one call (the refused
        ones, if any, isolated one by one)."""
        pool = self.pool
        keys = [mkey for _, _, mkey in accepted]
        xs = [ev.x for _, ev, _ in accepted]
        ys = [ev.y for _, ev, _ in accepted]
        try:
            return pool.predict_learn(keys, xs, ys)
        except ValueError:
            out: list = []
            for (rec, _, _), k, x, y in zip(accepted, keys, xs, ys):
                try:
                    out += pool.predict_learn([k], [x], [y])
                except ValueError as exc:
                    self._dead(sink, DeadLetter(ReasonCode.PROCESSING_ERROR, f"the model refused the event: {exc}",
                                                rec.value, self.cfg.input_topic, self.partition, rec.offset), rec.key)
                    out.append(None)
            return out

    def _predict_one_by_one(self, model: Any, idx: list, accepted: list, xs: list, ys: list, sink: Sink) -> list:
        """Isolate the event(s) the model refuses (the batch call validates all first)."""
        out: list = []
        for i, x, y in zip(idx, xs, ys):
            try:
                out.append(model.predict_learn_many([x], [y])[0])
            except ValueError as exc:
                rec = accepted[i][0]
                self._dead(sink, DeadLetter(ReasonCode.PROCESSING_ERROR, f"the model refused the event: {exc}",
                                            rec.value, self.cfg.input_topic, self.partition, rec.offset), rec.key)
                out.append(None)
        return out

    def _emit(self, accepted: list, results: list, sink: Sink) -> None:
        stats, pending = self.stats, self.pending
        with_labels = self.cfg.labels_topic is not None
        now = time.time()
        for (rec, ev, mkey), res in zip(accepted, results):
            if res is None:
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
                continue
            sink.prediction(self.partition, rec.key, value, latency)
            stats.predicted += 1
            if ev.y is not None:
                stats.learned += 1
                stats.scored += 1
                stats.correct += _same_label(y_pred, ev.y)
            elif with_labels:
                for old, why in pending.add(ev.id, ev.x, key=ev.key if self.cfg.keyed else None, ts=ev.ts,
                                            y_pred=y_pred, offset=rec.offset, event_time=rec.timestamp / 1000.0):
                    self._dead_pending(sink, old, ReasonCode.PENDING_EVICTED, why)

    # --- labels ----------------------------------------------------------------------------
    def handle_labels(self, records: list, sink: Sink) -> int:
        """Join delayed labels with their pending events and learn them, in order.

        The joined events are learned in batches (:meth:`DriftMoE.learn_batch`, one compiled pass
        per router window instead of one Python call per event): equal to learning them one by one,
        because nothing else in this loop reads the models.  Each batch is learned before any
        dead letter is emitted, so the sink sees everything in record order."""
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
        return consumed

    def _learn_joined(self, joined: list, sink: Sink) -> None:
        """Learn the joined events (and empty ``joined``): one ``learn_batch`` per model, in order;
        a batch the model refuses is learned one by one, so only the bad events are dead-lettered."""
        if not joined:
            return
        groups: dict = {}
        if self.pool is not None:  # one call for every key, in record order
            pool = self.pool
            groups[None] = (lambda xs, ys, keys: pool.learn(keys, xs, ys), list(joined))
        else:
            for item in joined:
                groups.setdefault(item[0], (None, []))[1].append(item)
        joined.clear()
        stats, cfg = self.stats, self.cfg
        for mkey, (learn, items) in groups.items():
            if learn is None:
                model = self._model(mkey)
                learn = (lambda m: lambda xs, ys, keys: m.learn_batch(xs, ys))(model)
            try:
                learn([pe.x for _, pe, _, _ in items], [y for _, _, y, _ in items], [k for k, _, _, _ in items])
                ok = items
            except ValueError:
                ok = []
                for item in items:
                    key, pe, y, rec = item
                    try:
                        learn([pe.x], [y], [key])
                    except ValueError as exc:
                        self._dead(sink, DeadLetter(ReasonCode.PROCESSING_ERROR, f"the model refused the labelled "
                                                    f"event {pe.id!r}: {exc}", rec.value, cfg.labels_topic,
                                                    self.partition, rec.offset), rec.key)
                        continue
                    ok.append(item)
            stats.learned += len(ok)
            stats.joined += len(ok)
            stats.scored += len(ok)
            stats.correct += sum(_same_label(pe.y_pred, y) for _, pe, y, _ in ok)

    # --- dead letters ----------------------------------------------------------------------
    def _dead(self, sink: Sink, dl: DeadLetter, key: Optional[bytes]) -> None:
        code = dl.reason_code.value
        self.stats.dead[code] = self.stats.dead.get(code, 0) + 1
        sink.dead(dl, key)

    def _dead_pending(self, sink: Sink, pe: PendingEvent, code: ReasonCode, why: str) -> None:
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
