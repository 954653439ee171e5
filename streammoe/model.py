"""DriftMoE as a river classifier: a router co-trained online with a pool of experts.

Guarantees: every event is predicted before it is learned; equal seeds and streams give equal
results; the batch calls (``predict_learn_many``, ``learn_batch``) and both engines (``numba``,
``river``) give the results of the per-event ``predict_proba_one`` / ``learn_one`` loop; ``save`` /
``load`` restore a model that continues exactly (no pickle).  The reference behaviour it follows
(data and task modes, the router's target and window) is described in ``docs/design-notes.md``.
"""
from __future__ import annotations

import os
from typing import Any

import numpy as np
from river import base

from . import __version__
from .event_path import EventPath
from .features import (
    MAX_CATEGORIES,
    FeatureSpace,
    LabelSpace,
    check_features,
    normalise_label,
    plain_labels,
    plain_matrix,
)
from .pools import ArrayTreePool, ExpertPool, make_pool, pool_from_parts
from .routers.mlp import PAIRWISE_MAX, MLPRouter, softmax
from .state.codec import pack_arrays, pack_json, unpack_arrays, unpack_json
from .state.file import as_store

FORMAT = "streammoe/driftmoe@1"
MODES = ("data", "task")
COMBINES = ("top1", "mixture")


def _top_k(w: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k largest weights, largest first, ties broken by the lower index."""
    return np.argsort(-w, kind="stable")[:k]


class _WindowBuffer:
    """Learned events waiting for the router's next step: feature rows ``X[:n]`` and target
    masks ``M[:n]``, in arrays that grow by doubling (the compiled per-event step writes row
    ``n`` in place; the windowed path adds whole segments)."""

    def __init__(self):
        self.X = np.zeros((0, 0))
        self.M = np.zeros((0, 0))
        self.n = 0

    def reserve(self, d: int, E: int, rows: int = 1) -> None:
        """Room for ``rows`` more events of ``d`` features and ``E`` experts."""
        X, M = self.X, self.M
        if self.n + rows <= X.shape[0] and X.shape[1] == d and M.shape[1] == E:
            return
        if self.X.shape[1] != d or self.M.shape[1] != E:
            if self.n:
                raise ValueError(f"window rows have {self.X.shape[1]} features and {self.M.shape[1]} experts, "
                                 f"not {d} and {E}")
            self.X, self.M = np.zeros((len(self.X), d)), np.zeros((len(self.M), E))
        need = self.n + rows
        if need > len(self.X):
            cap = max(need, 2 * len(self.X), 16)
            X, M = np.zeros((cap, d)), np.zeros((cap, E))
            X[:self.n], M[:self.n] = self.X[:self.n], self.M[:self.n]
            self.X, self.M = X, M

    def add(self, X: np.ndarray, M: np.ndarray) -> None:
        n = X.shape[0]
        self.reserve(X.shape[1], M.shape[1], n)
        self.X[self.n:self.n + n] = X
        self.M[self.n:self.n + n] = M
        self.n += n

    def add_features(self, k: int) -> None:
        """New features were 0 (missing, no running mean yet) for the buffered events."""
        self.X = np.pad(self.X, ((0, 0), (0, k)))

    def add_expert(self) -> None:
        self.M = np.pad(self.M, ((0, 0), (0, 1)))

    def remove_expert(self, e: int) -> None:
        self.M = np.delete(self.M, e, axis=1)

    def arrays(self, d: int, E: int) -> tuple[np.ndarray, np.ndarray]:
        if not self.n:
            return np.zeros((0, d)), np.zeros((0, E))
        return self.X[:self.n], self.M[:self.n]

    def clear(self) -> None:
        self.n = 0


class DriftMoE(base.MiniBatchClassifier):
    """Mixture of drift-adaptive experts with an online neural router.

    Parameters
    ----------
    mode
        ``'data'`` (experts are data regimes, top-k learn) or ``'task'`` (one-vs-rest expert per class).
    n_experts
        Pool size in data mode (task mode has one expert per class seen).
    top_k
        Experts that learn each event in data mode; also the size of the ``'mixture'`` combination.
    hidden
        Width of the router's first hidden layer (the second has ``hidden // 2``).
    lr
        Adam learning rate of the router.
    window
        Learned events per router update in data mode.
    temperature
        Softmax temperature applied to the router's logits.
    grace_period, delta
        Hoeffding-tree parameters of the tree experts.
    seed
        Seeds the router's initialisation and dropout; equal seeds and streams give equal results.
    engine
        ``'river'`` (river's HoeffdingTreeClassifier experts, the reference), ``'numba'``
        (array-based trees with the same statistics and split rule, and a compiled per-window
        loop) or ``'auto'`` (numba when it imports; the default).
    combine
        ``'top1'`` (reference) or ``'mixture'``.
    experts
        Optional list of expert specs (``"tree"``, ``{"kind": "mora", ...}``, see
        :mod:`streammoe.experts.registry`) for a heterogeneous pool; overrides ``n_experts``.
    adaptive
        Optional drift-aware pool policy options (see :mod:`streammoe.adaptive`), e.g.
        ``{"budget": 24}``: drifting experts are frozen, fresh ones grown, idle frozen ones pruned.
    max_categories
        Bound on the distinct values of one categorical (string-valued) feature.  Trees split on
        categories natively (river's nominal attribute statistics, multiway and binary ``==`` splits); the
        router sees a one-hot block of ``max_categories + 1`` columns per categorical feature.
        Further values share an "other" code with unknown and missing ones, and are counted in
        :attr:`category_overflow_`.

    Examples
    --------
    >>> from river import datasets, evaluate, metrics
    >>> from streammoe import DriftMoE
    >>> model = DriftMoE(n_experts=4, top_k=2, seed=42)
    >>> evaluate.progressive_val_score(datasets.Phishing(), model, metrics.Accuracy())
    Accuracy: 87.83%
    >>> x, y = next(iter(datasets.Phishing()))
    >>> proba = model.predict_proba_one(x)
    >>> sorted(proba) == [False, True] and round(sum(proba.values()), 6) == 1.0
    True
    >>> 0 <= model.last_expert < 4
    True

    The prequential batch call gives the per-event loop's answers, a router window per compiled call:

    >>> from streammoe.connectors import open_source
    >>> events = list(open_source("sea_a", n=2000, seed=1))
    >>> xs, ys = [x for x, _ in events], [y for _, y in events]
    >>> a, b = DriftMoE(seed=1), DriftMoE(seed=1)
    >>> batched = a.predict_learn_many(xs, ys, proba=False)
    >>> looped = []
    >>> for x, y in events:
    ...     p = b.predict_proba_one(x)
    ...     looped.append((max(p, key=p.get) if p else None, b.last_expert))
    ...     b.learn_one(x, y)
    >>> batched == looped
    True

    String values are categories of nominal features (a bounded number per feature):

    >>> model = DriftMoE(seed=0)
    >>> model.learn_one({"amount": 3.0, "country": "FR"}, 1)
    >>> model.learn_one({"amount": 9.5, "country": "DE"}, 0)
    >>> model.categorical_features_
    ['country']
    >>> model.predict_one({"amount": 4.0, "country": "BR"}) in (0, 1)  # an unseen category
    True
    """

    _multiclass = True

    def __init__(self, mode: str = "data", n_experts: int = 12, top_k: int = 3, hidden: int = 256,
                 lr: float = 2e-3, window: int = 256, temperature: float = 0.8, grace_period: int = 50,
                 delta: float = 1e-7, seed: int = 42, engine: str = "auto", combine: str = "top1",
                 experts: list | None = None, adaptive: dict | None = None,
                 max_categories: int = MAX_CATEGORIES):
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if combine not in COMBINES:
            raise ValueError(f"combine must be one of {COMBINES}, got {combine!r}")
        if n_experts < 1 or top_k < 1 or window < 1 or hidden < 2:
            raise ValueError("n_experts, top_k, window must be >= 1 and hidden >= 2")
        if temperature <= 0:
            raise ValueError("temperature must be > 0")
        self.mode = mode
        self.n_experts = n_experts
        self.top_k = top_k
        self.hidden = hidden
        self.lr = lr
        self.window = window
        self.temperature = temperature
        self.grace_period = grace_period
        self.delta = delta
        self.seed = seed
        self.engine = engine
        self.combine = combine
        self.experts = experts
        self.adaptive = adaptive
        self.max_categories = max_categories
        self._reset()

    # ------------------------------------------------------------------ construction
    def _reset(self) -> None:
        self._features = FeatureSpace(self.max_categories)
        self._labels = LabelSpace()
        if self.mode == "task":
            specs = []
        else:
            specs = list(self.experts) if self.experts else ["tree"] * self.n_experts
        n0 = len(specs)
        self._pool: ExpertPool = make_pool(self.engine, specs, binary=self.mode == "task",
                                           grace_period=self.grace_period, delta=self.delta, seed=self.seed)
        self._router = MLPRouter(0, n0, hidden=self.hidden, lr=self.lr, seed=self.seed)
        self._class_counts = np.zeros(0)
        self._usage = np.zeros(n0, dtype=np.int64)
        self._expert_seen = np.zeros(n0, dtype=np.int64)
        self._expert_correct = np.zeros(n0, dtype=np.int64)
        self._window = _WindowBuffer()
        self._dirty: set[str] = set()
        self.n_learned_ = 0
        self.router_steps_ = 0
        self.last_expert: int | None = None
        self.drift_log: list[dict] = []
        self._policy = None
        self._event_path: EventPath | None = None
        if self.adaptive is not None:
            from .adaptive import make_policy

            self._policy = make_policy(self.adaptive, self)

    @classmethod
    def _unit_test_params(cls):
        yield {"hidden": 16, "window": 16}
        yield {"mode": "task", "hidden": 16}

    @property
    def _is_stochastic(self):
        return True

    # ------------------------------------------------------------------ introspection
    @property
    def n_experts_(self) -> int:
        return self._pool.n

    @property
    def classes_(self) -> list:
        return list(self._labels.classes)

    @property
    def features_(self) -> list:
        return list(self._features.names)

    @property
    def categorical_features_(self) -> list:
        """Features learned as categorical (string-valued)."""
        fs = self._features
        return [name for name, nominal in zip(fs.names, fs.nominal) if nominal]

    @property
    def category_overflow_(self) -> dict:
        """Per categorical feature: learned values mapped to "other" because the feature already
        had ``max_categories`` distinct values."""
        return dict(self._features.overflow)

    def expert_usage(self) -> np.ndarray:
        """How often each expert was the router's top choice on a learned event."""
        return self._usage.copy()

    def expert_accuracy(self) -> np.ndarray:
        """Prequential accuracy of each expert's own predictions (NaN before it was scored)."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return self._expert_correct / np.where(self._expert_seen > 0, self._expert_seen, np.nan)

    def router_weights(self, x: dict) -> np.ndarray:
        """The router's softmax weights over the experts for ``x``."""
        check_features(x)
        self._features.check(x)
        return self._weights(self._features.vector(x))

    def describe(self) -> dict:
        acc = self.expert_accuracy()
        return {
            "model": "DriftMoE", "params": self._get_params(), "n_learned": self.n_learned_,
            "n_experts": self.n_experts_, "classes": [_jsonable(c) for c in self.classes_],
            "n_features": len(self._features), "router_steps": self.router_steps_,
            "categorical_features": [_jsonable(f) for f in self.categorical_features_],
            "category_overflow": {str(k): v for k, v in self._features.overflow.items()},
            "experts": [
                {"index": e, "kind": self._pool.kind(e), "usage": int(self._usage[e]),
                 "accuracy": None if np.isnan(acc[e]) else float(acc[e]), "frozen": self._pool.frozen(e)}
                for e in range(self.n_experts_)
            ],
        }

    # ------------------------------------------------------------------ core
    def _weights(self, xv: np.ndarray) -> np.ndarray:
        z = self._router.logits(self._features.encode(xv[None, :]))
        if self._policy is not None:  # drift-aware pool: recently accurate experts get a logit bonus
            z = z + self._policy.logit_bias()
        return softmax(z, self.temperature)[0]

    def _prior(self) -> np.ndarray:
        total = self._class_counts.sum()
        return self._class_counts / total if total > 0 else self._class_counts

    def _answer(self, xv: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, int]:
        """Class probabilities and the answering expert for one event."""
        C = len(self._labels)
        top1 = int(np.argmax(w))
        if self.mode == "task":
            if self.combine == "top1":
                return w.copy(), top1
            mine = np.array([self._pool.predict(e, xv, 2)[1] for e in range(self._pool.n)])
            p = w * mine
            return (p / p.sum() if p.sum() > 0 else w.copy()), top1
        if isinstance(self._pool, ArrayTreePool):  # the compiled path answers, so batches match bit for bit
            p = self._pool.run_window(w[None, :], xv[None, :], np.full(1, -1, dtype=np.int64), self.top_k,
                                      self.combine, C).proba[0]
            return (p if p.sum() > 0 else self._prior()), top1
        if self.combine == "top1":
            p = self._pool.predict(top1, xv, C)
        else:
            p = np.zeros(C)
            for e in _top_k(w, self.top_k):
                p += w[e] * self._pool.predict(e, xv, C)
        s = p.sum()
        return (p / s if s > 0 else self._prior()), top1

    # -- the compiled per-event path ---------------------------------------------------
    def _compiled_path(self) -> EventPath | None:
        """The compiled per-event step (one kernel call per ``predict_one`` / ``learn_one``) when it
        applies: array trees (``engine='numba'``), no drift policy, no frozen expert, at most
        ``PAIRWISE_MAX`` (128) experts, one router input per feature.  Other configurations
        (adaptive, neural, heterogeneous pools) keep the Python per-event path, and so do the
        growth events of a batch (``_python_step``; both paths give the same bits)."""
        if getattr(self, "_python_step", False):
            return None
        if self._router.n_inputs != len(self._features.names):
            # the kernel feeds the feature vector itself to the router: an encoded input (e.g. a
            # one-hot block per categorical feature) is the Python path's job
            return None
        path = self._event_path
        if path is not None and path.pool is self._pool:
            flags = path.pool.frozen_flags
            return None if True in flags or len(flags) > PAIRWISE_MAX else path
        pool = self._pool
        if self._policy is not None or type(pool) is not ArrayTreePool or True in pool.frozen_flags \
                or pool.n > PAIRWISE_MAX:
            return None
        from .routers.numpy_exp import exp_loop_address

        fn = exp_loop_address()
        if not fn:  # NumPy's exp loop not reachable: its results could not be reproduced
            return None
        self._event_path = EventPath(self, fn)
        return self._event_path

    def _compiled_answer(self, x: Any) -> tuple[EventPath, int] | None:
        """Run the compiled prediction for ``x``: ``(path, argmax class)`` with the probabilities in
        ``path.proba``, or ``None`` when the Python path must answer (no compiled path, no class yet).
        Raises ``ValueError`` for an invalid ``x`` (the Python checks name the feature)."""
        path = self._compiled_path()
        if path is None or not self._labels.classes:
            return None
        row = self._features.plain_row(x)
        got = None if row is None else path.predict(self, row, strict=True)
        if got is None:  # missing, unknown or non-float features, or an invalid value
            check_features(x)
            self._features.check(x)
            got = path.predict(self, self._features.row(x), strict=False)
        self.last_expert, arg = got
        return path, arg

    def _known_class(self, y: Any) -> int | None:
        """Class index of ``y`` when it is a plain label already known with its type, else ``None``."""
        t = type(y)
        if t is int or t is str or t is bool:
            i = self._labels.index.get(y)
            if i is not None and type(self._labels.classes[i]) is t:
                return i
        return None

    def predict_proba_one(self, x: dict) -> dict:
        compiled = self._compiled_answer(x)
        if compiled is not None:
            return dict(zip(self._labels.classes, compiled[0].proba.tolist()))
        check_features(x)
        self._features.check(x)
        if not self._labels.classes:
            return {}
        xv = self._features.vector(x)
        p, self.last_expert = self._answer(xv, self._weights(xv))
        return dict(zip(self._labels.classes, p.tolist()))

    def predict_one(self, x: dict, **kwargs) -> Any:
        compiled = self._compiled_answer(x)
        if compiled is not None:  # the first class of highest probability, as max() over the dict gives
            return self._labels.classes[compiled[1]]
        proba = self.predict_proba_one(x)
        if not proba:
            return None
        return max(proba, key=proba.get)

    def learn_one(self, x: dict, y: Any) -> None:
        path = self._compiled_path()
        if path is not None:  # the common case: known features and class, one kernel call
            yi = self._known_class(y)
            if yi is not None:
                row = self._features.plain_row(x)
                if row is not None and path.learn(self, row, yi, strict=True):
                    return
        check_features(x)
        self._features.check(x)
        y = normalise_label(y)
        self._labels.check(y)
        fs = self._features
        dim = fs.router_dim
        if fs.register(x):
            self._router.add_inputs(fs.router_dim - dim)
            self._window.add_features(fs.router_dim - dim)
            self._pool.set_nominal(fs.nominal, fs.n_values)
            self._dirty.update(("router", "window"))  # new input columns: a checkpoint must rewrite them
        yi, is_new = self._labels.add(y)
        if is_new:
            self._class_counts = np.append(self._class_counts, 0.0)
            if self.mode == "task":
                self._grow_expert()
        path = self._compiled_path()  # growth may have changed whether it applies
        if path is not None:  # growth is done: the rest is the compiled step
            path.learn(self, fs.row(x), yi, strict=False)
            return
        xv = fs.vector(x, learn=True)
        fs.observe(x, xv)
        self._class_counts[yi] += 1.0
        if self.mode == "data":
            self._learn_data(xv, yi)
        else:
            self._learn_task(xv, yi)
        self.n_learned_ += 1
        self._dirty.update(("meta", "stats"))

    def _grow_expert(self, spec: dict | str | None = None) -> int:
        e = self._pool.add_expert(spec)
        self._router.add_outputs(1)
        for name in ("_usage", "_expert_seen", "_expert_correct"):
            setattr(self, name, np.append(getattr(self, name), 0))
        self._window.add_expert()
        self._dirty.update((f"expert/{e}", "router", "window"))
        return e

    # -- pool changes made by drift-aware policies (each one is logged) --------------------
    def _log(self, action: str, expert: int, reason: str) -> None:
        self.drift_log.append({"event": self.n_learned_, "action": action, "expert": int(expert),
                               "kind": self._pool.kind(expert) if expert < self._pool.n else None, "reason": reason})

    def grow_expert(self, spec: dict | str | None = None, reason: str = "") -> int:
        """Add a fresh expert (router output included); returns its index."""
        e = self._grow_expert(spec)
        self._log("grow", e, reason)
        return e

    def freeze_expert(self, e: int, reason: str = "") -> None:
        """Stop expert ``e`` from learning; it keeps predicting (recall of recurring concepts)."""
        self._pool.set_frozen(e, True)
        self._dirty.add(f"expert/{e}")
        self._log("freeze", e, reason)

    def prune_expert(self, e: int, reason: str = "") -> None:
        """Remove expert ``e``; later experts shift down one index."""
        self._log("prune", e, reason)
        self._pool.remove_expert(e)
        self._router.remove_output(e)
        for name in ("_usage", "_expert_seen", "_expert_correct"):
            setattr(self, name, np.delete(getattr(self, name), e))
        self._window.remove_expert(e)
        self._dirty.update(f"expert/{i}" for i in range(e, self._pool.n))
        self._dirty.update(("router", "window"))

    def _score_experts(self, P: np.ndarray, yi: int) -> np.ndarray:
        """Multi-hot mask of experts whose prediction equals ``yi``; also updates their accuracy."""
        known = P.sum(axis=1) > 0
        correct = known & (np.argmax(P, axis=1) == yi)
        self._expert_seen += 1
        self._expert_correct += correct
        mask = correct.astype(np.float64)
        if not correct.any():
            mask[int(np.argmax(P[:, yi]))] = 1.0
        return mask

    def _learn_data(self, xv: np.ndarray, yi: int) -> None:
        C = len(self._labels)
        w = self._weights(xv)
        P = np.stack([self._pool.predict(e, xv, C) for e in range(self._pool.n)])
        self._usage[int(np.argmax(w))] += 1
        mask = self._score_experts(P, yi)
        if self._policy is None:
            learners = [int(e) for e in _top_k(w, self.top_k)]
        else:  # drift-aware pool: frozen experts never learn, the top-k unfrozen ones do
            learners = self._policy.learners(self, w)
        for e in learners:
            self._pool.learn(e, xv, yi)
            self._dirty.add(f"expert/{e}")
        self._window.add(self._features.encode(xv[None, :]), mask[None, :])
        self._dirty.add("window")
        if self._window.n >= self.window:
            self._train_router()
        if self._policy is not None:
            self._policy.after_learn(self, P, yi, learners)
            self._dirty.add("policy")

    def _learn_task(self, xv: np.ndarray, yi: int) -> None:
        w = self._weights(xv)
        P = np.stack([self._pool.predict(e, xv, 2) for e in range(self._pool.n)])
        self._usage[int(np.argmax(w))] += 1
        says_mine = (P.sum(axis=1) > 0) & (P[:, 1] > P[:, 0])
        self._expert_seen += 1
        self._expert_correct += says_mine == (np.arange(self._pool.n) == yi)
        mask = np.zeros(self._pool.n)
        mask[yi] = 1.0  # the true class's expert: it either said "mine" or is the fallback target
        for e in range(self._pool.n):
            self._pool.learn(e, xv, int(e == yi))
            self._dirty.add(f"expert/{e}")
        self._window.add(self._features.encode(xv[None, :]), mask[None, :])
        self._train_router()

    def _train_router(self) -> None:
        self._router.train_step(*self._window.arrays(self._features.router_dim, self._pool.n), want_loss=False)
        self.router_steps_ += 1
        self._window.clear()
        self._dirty.update(("router", "window"))

    # ------------------------------------------------------------------ mini-batches
    def learn_batch(self, xs: list, ys: list) -> None:
        """Learn labelled events (dicts) in order; equal, bit for bit, to a loop of ``learn_one``.

        Why: delayed labels arrive long after their events were predicted, so the daemon learns
        them without predicting again.  Where the compiled windowed path applies (data mode, no
        drift policy) it runs there - predicting before learning changes no state there, so a
        predict-then-learn pass equals learning alone - else the events are learned one by one.
        Every event is checked before anything is learned (``ValueError`` naming the event).
        """
        if len(xs) != len(ys):
            raise ValueError(f"{len(xs)} events but {len(ys)} labels")
        if any(y is None for y in ys):
            raise ValueError("learn_batch needs a label for every event")
        if self.predict_is_pure:
            last = self.last_expert
            self.predict_learn_many(xs, ys, proba=False)
            self.last_expert = last
            return
        for i, (x, y) in enumerate(zip(xs, ys)):
            try:
                check_features(x)
                self._features.check(x)
                self._labels.check(normalise_label(y))
            except ValueError as exc:
                raise ValueError(f"event {i}: {exc}") from None
        for x, y in zip(xs, ys):
            self.learn_one(x, y)

    @property
    def predict_is_pure(self) -> bool:
        """Whether predicting changes no state but :attr:`last_expert` (the compiled windowed
        path: data mode, no drift policy, a windowed pool).  Then learning a labelled event
        equals predicting it and learning it, so delayed labels and new events can share one
        :meth:`predict_learn_many` call (what :meth:`learn_batch` and the daemon do)."""
        return self.mode == "data" and self._policy is None and self._pool.windowed()

    def predict_learn_many(self, xs: list, ys: list, *, proba: bool = True) -> list[tuple[Any, int | None]]:
        """Prequential over a batch, in order: predict each event, then learn it if its label is not None.

        Returns ``(proba dict, answering expert)`` per event, or ``(predicted label, expert)`` with
        ``proba=False`` (cheaper: no dict per event).  Results equal a loop of
        ``predict_proba_one`` / ``learn_one``; the array engine and pools of neural experts run it
        through their compiled windowed path (one call per router window).  Raises ``ValueError``
        (naming the event index and feature) before learning anything if an event is invalid.
        """
        windowed = self.mode == "data" and self._policy is None and self._pool.windowed()
        # Batch fast path: plain events with exactly the known features are checked and converted in
        # C-level passes (``R``: their feature matrix, valid for the whole batch since no feature can
        # be added); anything else takes the per-event checks below.
        plain = windowed and len(xs) == len(ys) and not self._features.has_nominal  # categories: checked per event
        R = plain_matrix(xs, self._features.names) if plain else None
        if R is not None and plain_labels(ys, self._labels):
            labels = list(ys)
        else:
            R, labels = None, []
            for i, (x, y) in enumerate(zip(xs, ys)):
                try:
                    check_features(x)
                    self._features.check(x)
                    if y is not None:
                        y = normalise_label(y)
                        self._labels.check(y)
                    labels.append(y)
                except ValueError as exc:
                    raise ValueError(f"event {i}: {exc}") from None
        if not windowed:
            return [self._predict_learn_one(x, y, proba) for x, y in zip(xs, labels)]
        out: list = []
        i, n = 0, len(xs)
        grows = self._growth_flags(xs, labels, R is not None)
        all_labelled = None not in labels
        while i < n:
            if grows[i] or not self._labels.classes:
                # growth: the exact per-event path, in Python: a batch has no use for the compiled
                # per-event kernels, whose first compilation would cost a cold run ~25 s
                out.append(self._predict_learn_one(xs[i], labels[i], proba, compiled_step=False))
                i += 1
                if labels[i - 1] is not None:  # only learning adds features or classes
                    grows[i:] = self._growth_flags(xs[i:], labels[i:], R is not None)
                continue
            room = self.window - self._window.n  # labelled events until the router's next step
            if all_labelled and not any(grows[i:i + room]):  # the common case, without a loop per event
                j = min(n, i + room)
            else:
                j, labelled = i, 0
                while j < n and labelled < room and not grows[j]:
                    labelled += labels[j] is not None
                    j += 1
            out.extend(self._run_segment(xs[i:j], labels[i:j], proba, None if R is None else R[i:j]))
            i = j
        return out

    def _growth_flags(self, xs: list, labels: list, known_features: bool = False) -> list[bool]:
        """Which events would add a feature or a class when learned (they take the per-event path).
        ``known_features``: every event is known to hold only known features (only labels can grow)."""
        known, fkeys = self._labels.index, self._features.index.keys()
        if self._features.has_nominal:  # a new category gets its code from the per-event path
            new_cat = self._features.new_category
            return [y is not None and (y not in known or not x.keys() <= fkeys or new_cat(x))
                    for x, y in zip(xs, labels)]
        if known_features:
            if all(map(known.__contains__, set(labels) - {None})):
                return [False] * len(labels)
            return [y is not None and y not in known for y in labels]
        return [y is not None and (y not in known or not x.keys() <= fkeys) for x, y in zip(xs, labels)]

    def _predict_learn_one(self, x: dict, y, proba: bool = True,
                           compiled_step: bool = True) -> tuple[Any, int | None]:
        self._python_step = not compiled_step
        try:
            p = self.predict_proba_one(x)
            answer = (p if proba else (max(p, key=p.get) if p else None), self.last_expert)
            if y is not None:
                self.learn_one(x, y)
        finally:
            self._python_step = False
        return answer

    def _run_segment(self, xs: list, ys: list, want_proba: bool = True,
                     R: np.ndarray | None = None) -> list[tuple[Any, int | None]]:
        """Events that add no feature or class and stay inside one router window, in one kernel call.

        ``ys`` are normalised labels (or ``None``) that the model already knows; ``R``, when given,
        is the events' feature matrix (every feature present, see :func:`plain_matrix`).

        Equal, bit for bit, to the per-event path: the running means used for imputation are
        accumulated in the same order (``cumsum``), the router's forward pass is row-exact, and
        the tree kernel is the per-event code compiled into one loop.
        """
        fs, labels = self._features, self._labels
        n, d, C = len(xs), len(fs), len(labels)
        names, nan = fs.names, np.nan
        R_given = R is not None
        if not R_given and fs.has_nominal:
            R = fs.matrix(xs)
        elif not R_given:
            R = np.fromiter((x.get(k, nan) for x in xs for k in names), dtype=np.float64, count=n * d).reshape(n, d)
        lookup = dict(labels.index)
        lookup[None] = -1
        Y = np.fromiter(map(lookup.__getitem__, ys), dtype=np.int64, count=n)
        lab = Y >= 0
        n_lab = int(np.count_nonzero(lab))
        every = n_lab == n  # all labelled: the masks below select everything and are skipped
        if R_given or not np.isnan(R).any():  # nothing to impute: X = R, and only the totals move
            X = R
            sums = np.cumsum(np.vstack([fs.sums, R if every else np.where(lab[:, None], R, 0.0)]), axis=0)
            fs.sums, fs.counts = sums[-1].copy(), fs.counts + float(n_lab)  # integer counts: exact
        else:
            present = ~np.isnan(R)
            learned = present & lab[:, None]
            sums = np.cumsum(np.vstack([fs.sums, np.where(learned, R, 0.0)]), axis=0)
            counts = np.cumsum(np.vstack([fs.counts, learned.astype(np.float64)]), axis=0)
            means = np.divide(sums[:-1], counts[:-1], out=np.zeros((n, d)), where=counts[:-1] > 0)
            X = np.where(present, R, means)
            fs.sums, fs.counts = sums[-1].copy(), counts[-1].copy()

        if fs.has_nominal:  # categorical columns keep no running sums (see FeatureSpace.observe)
            nominal = list(fs.categories)
            fs.sums[nominal], fs.counts[nominal] = 0.0, 0.0
            fs.count_overflow([x for x, y in zip(xs, ys) if y is not None])
        U = fs.encode(X)  # the router's input rows
        W = softmax(self._router.logits(U), self.temperature)
        res = self._pool.run_window(W, X, Y, self.top_k, self.combine, C)

        proba = res.proba
        empty = proba.sum(axis=1) <= 0
        if empty.any():  # an expert that knows nothing answers with the class prior (as _answer does)
            onehot = np.zeros((n, C))
            onehot[np.nonzero(lab)[0], Y[lab]] = 1.0
            class_counts = np.cumsum(np.vstack([self._class_counts, onehot]), axis=0)
            before = class_counts[:-1][empty]
            totals = before.sum(axis=1, keepdims=True)
            proba = proba.copy()
            proba[empty] = np.divide(before, totals, out=before.copy(), where=totals > 0)
        Y_lab = Y if every else Y[lab]
        # counts of integers, so the sum equals the running (cumsum) total exactly
        self._class_counts = self._class_counts + np.bincount(Y_lab, minlength=C)

        if n_lab:
            k = min(self.top_k, self._pool.n)
            sel = slice(None) if every else lab
            self._usage += np.bincount(res.expert[sel], minlength=self._pool.n)
            self._expert_seen += n_lab
            self._expert_correct += (res.expert_pred[sel] == Y_lab[:, None]).sum(axis=0)
            self._window.add(U[sel], res.mask[sel])
            from .experts.fast_loop import top_k_members  # this path runs only with the array pool

            self._dirty.update(f"expert/{int(e)}" for e in np.flatnonzero(top_k_members(W[sel], k)))
            self._dirty.update(("meta", "stats", "window"))
            self.n_learned_ += n_lab
            if self._window.n >= self.window:
                self._train_router()
        classes = labels.classes
        self.last_expert = int(res.expert[-1])
        if not want_proba:  # argmax, lowest class on ties: what max(dict, key=dict.get) gives
            return list(zip(map(classes.__getitem__, np.argmax(proba, axis=1).tolist()), res.expert.tolist()))
        return [(dict(zip(classes, row)), e) for row, e in zip(proba.tolist(), res.expert.tolist())]

    def learn_many(self, X, y) -> None:
        """Learn the rows of a pandas frame in order (NaN cells are missing features)."""
        self.learn_batch(list(_rows(X)), list(y))

    def predict_proba_many(self, X):
        import pandas as pd

        rows = [self.predict_proba_one(x) for x in _rows(X)]
        return pd.DataFrame(rows, index=X.index, columns=self.classes_).fillna(0.0)

    def predict_many(self, X):
        import pandas as pd

        return pd.Series([self.predict_one(x) for x in _rows(X)], index=X.index, dtype=object)

    # ------------------------------------------------------------------ state
    def state_parts(self) -> dict[str, bytes]:
        """Every part of the model as bytes (no pickle): meta, stats, router, window, experts."""
        parts = {"meta": self._meta_blob(), "stats": self._stats_blob(), "router": self._router.to_state(),
                 "window": self._window_blob()}
        parts.update(self._pool.to_parts())
        if self._policy is not None:
            parts["policy"] = self._policy.to_state()
        return parts

    def dirty_parts(self) -> dict[str, bytes]:
        """Only the parts changed since :meth:`mark_clean` (the daemon writes just these)."""
        every = {"meta": self._meta_blob, "stats": self._stats_blob, "router": self._router.to_state,
                 "window": self._window_blob}
        if self._policy is not None:
            every["policy"] = self._policy.to_state
        out = {}
        for name in sorted(self._dirty):
            if name in every:
                out[name] = every[name]()
            elif name.startswith("expert/"):
                out[name] = self._pool.part(int(name.split("/", 1)[1]))
        if "meta" in self._dirty:
            out.update(self._pool.extra_parts())
        return out

    def mark_clean(self) -> None:
        self._dirty.clear()

    def _meta_blob(self) -> bytes:
        return pack_json({
            "format": FORMAT, "version": __version__, "params": self._get_params(),
            "classes": [_jsonable(c) for c in self._labels.classes],
            "features": [_jsonable(f) for f in self._features.names],
            "categorical": self._features.state(),
            "n_learned": self.n_learned_, "router_steps": self.router_steps_,
            "n_experts": self._pool.n, "pool": self._pool.meta(), "drift_log": self.drift_log,
        })

    def _stats_blob(self) -> bytes:
        return pack_arrays({
            "feature_sums": self._features.sums, "feature_counts": self._features.counts,
            "class_counts": self._class_counts, "usage": self._usage,
            "expert_seen": self._expert_seen, "expert_correct": self._expert_correct,
        })

    def _window_blob(self) -> bytes:
        d, E = self._features.router_dim, self._pool.n
        X, M = self._window.arrays(d, E)
        return pack_arrays({"X": X, "M": M})

    @classmethod
    def from_parts(cls, parts: dict[str, bytes]) -> "DriftMoE":
        """Rebuild a model from :meth:`state_parts`; it continues exactly where it stopped."""
        meta = unpack_json(parts["meta"])
        if meta.get("format") != FORMAT:
            raise ValueError(f"not a DriftMoE state (format {meta.get('format')!r}, expected {FORMAT!r})")
        model = cls(**meta["params"])
        model._labels = LabelSpace()
        for c in meta["classes"]:
            model._labels.add(c)
        model._features = FeatureSpace.restore(meta["features"], meta.get("categorical"), model.max_categories)
        stats = unpack_arrays(parts["stats"])
        model._features.sums, model._features.counts = stats["feature_sums"], stats["feature_counts"]
        model._class_counts = stats["class_counts"]
        model._usage, model._expert_seen = stats["usage"], stats["expert_seen"]
        model._expert_correct = stats["expert_correct"]
        model._router = MLPRouter.from_state(parts["router"])
        win = unpack_arrays(parts["window"])
        model._window = _WindowBuffer()
        if len(win["X"]):
            model._window.add(win["X"], win["M"])
        model._pool = pool_from_parts(meta["pool"], parts)
        model.n_learned_, model.router_steps_ = meta["n_learned"], meta["router_steps"]
        model.drift_log = meta["drift_log"]
        if model._policy is not None:
            model._policy = type(model._policy).from_state(parts["policy"])
        return model

    def save(self, target: "str | os.PathLike | Any", name: str = "model") -> None:
        """Save to a directory path (file store) or any :class:`~streammoe.state.StateStore`."""
        as_store(target).write(name, self.state_parts())
        self.mark_clean()

    @classmethod
    def load(cls, source: "str | os.PathLike | Any", name: str = "model") -> "DriftMoE":
        return cls.from_parts(as_store(source).read(name))


def _jsonable(value):
    if isinstance(value, (bool, int, str, float)) or value is None:
        return value
    raise ValueError(f"{value!r} ({type(value).__name__}) cannot be saved; use str or int names/labels")


def _rows(X):
    """Rows of a pandas frame as dicts, dropping NaN, None and ``pd.NA`` cells (pandas' markers
    for 'missing'; a text column holds one of them where a category is missing)."""
    import pandas as pd

    cols = list(X.columns)
    na = pd.NA
    for values in X.itertuples(index=False, name=None):
        yield {c: v for c, v in zip(cols, values) if not (v is None or v is na or (isinstance(v, float) and v != v))}
