"""Many independent DriftMoE models, one per key, learned together one window per launch.

Why: a service with thousands of tenants or devices wants one model each (their concepts and
drifts are their own), but thousands of small models stepped one event at a time leave every
core — and any GPU — idle.  Here the K models share hyper-parameters and live in stacked
arrays: the K×E trees in one :class:`~streammoe.experts.fast_tree.TreePool` (tree ``k*E + e``
is expert ``e`` of key ``k``), the routers' forward weights in stacked arrays, the window
buffers in ``(K, window, ...)`` arrays.  One call of :meth:`KeyedDriftMoE.learn_predict_window`
takes events of many keys interleaved and runs, per launch:

1. the router forward pass of every event with its key's router (row-exact compiled forward,
   keys in parallel);
2. one launch for all K×E trees (:mod:`streammoe.keyed.tree_window`): a Numba ``prange`` over
   trees on the CPU, one CUDA thread per tree on the GPU;
3. answers and router targets derived from the stored per-expert predictions;
4. one Adam step for every key whose window of ``window`` labelled events just filled, batched
   (:mod:`streammoe.keyed.router_batch`).

A key's events after its window boundary need its updated router, so they go to the next
launch; a call therefore takes one launch plus one per boundary crossed by some key.

Each key behaves exactly like a data-mode ``DriftMoE`` on its own stream (the tests check it
against per-key windows of ``fast_loop.run_window`` and ``MLPRouter``, bit for bit):

* features: ``n_features`` dense numeric columns, fixed up front (a keyed service decodes
  events into that fixed layout).  Each router is initialised as ``DriftMoE`` initialises its
  router when the first event carries all ``n_features`` features; key ``k``'s router is
  seeded ``seed + k``;
* classes: integer labels ``0..C-1``.  Declared up front (``n_classes``; a larger label is an
  error) or, with ``n_classes=None``, growing together for all keys as labels appear (a class
  that a key never saw has probability 0 in its answers);
* answers (``combine``): the router's top expert's probabilities (``'top1'``) or the weighted
  mixture of the top-k experts' (``'mixture'``); the key's class prior when no chosen expert
  knows anything yet; ``y_pred = -1`` before the key has seen any label.  Unlabelled events
  (``y = -1``) are answered and not learned.

``device='cuda'`` keeps the trees on the GPU between calls (:class:`DevicePool`) and runs the
router forward pass there too: the same algorithm, bit-identical in the CUDA simulator, close
to (not guaranteed bit-identical with) the CPU on hardware (see :mod:`streammoe.gpu.cuda_trees`);
``router_device='cuda'`` also runs the matrix products of router training in CuPy (cuBLAS sums in
another order: close to, not bit-identical with, the CPU path; measured no faster at 1,000 keys,
where each router's dropout draws and Adam step on the CPU dominate).
Memory: all trees share the pool's node capacity, which doubles when the biggest tree needs it.

State: :meth:`KeyedDriftMoE.state_parts` gives the whole model as named ``bytes`` parts in the
no-pickle codec of :mod:`streammoe.state.codec` (``meta`` JSON with a versioned format tag,
``stats`` and ``window`` arrays, ``trees`` — the K×E pool — and one ``router/<k>`` per key);
:meth:`~KeyedDriftMoE.save` / :meth:`~KeyedDriftMoE.load` write and read them through a
directory path (file store) or any state store.  A model loaded mid-stream continues
bit-identically, keys added after the load included (their routers are seeded ``seed + k`` as
ever); ``codec.state_digest(model.state_parts())`` is equal for equal states.  A bad, foreign or
truncated blob is a :class:`~streammoe.state.codec.StateFormatError` (a ``ValueError``).
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from time import perf_counter

import numpy as np
from numba import njit, prange

from ..experts.fast_tree import TreePool
from ..gpu.backend import CudaUnavailableWarning, cupy_available, resolve_device
from ..routers.mlp import MLPRouter, softmax
from ..state.codec import StateFormatError, pack_arrays, pack_json, unpack_arrays, unpack_json
from ..state.file import as_store
from . import router_batch, tree_window

__all__ = ["KeyedDriftMoE", "KeyedResult"]

COMBINES = ("top1", "mixture")
FORMAT = "streammoe/keyed-driftmoe@1"
#: constructor parameters kept in the ``meta`` part (the pool's own options travel with its arrays)
_PARAMS = ("n_features", "n_experts", "top_k", "hidden", "lr", "window", "temperature", "seed", "combine",
           "device", "router_device")


@dataclass
class KeyedResult:
    y_pred: np.ndarray   #: (n,) int64 predicted class index per event; -1 = no answer yet
    proba: np.ndarray    #: (n, C) the key's class probabilities before it learned the event
    expert: np.ndarray   #: (n,) int64 the answering (top-1) expert of the event's key
    launches: int        #: tree-kernel launches this call took


class KeyedDriftMoE:
    """``n_keys`` independent data-mode DriftMoE models with shared hyper-parameters.

    Parameters are those of :class:`streammoe.DriftMoE` (data mode) plus ``n_keys``,
    ``n_features``, ``n_classes`` (``None``: grow as labels appear), ``device``
    (``'cpu'``, ``'cuda'``, ``'auto'``), ``router_device`` (``'cpu'``: exact, or ``'cuda'``:
    CuPy) and ``tree_options`` (extra :class:`TreePool` keywords, e.g. ``max_nodes``).

    Examples
    --------
    Three tenants' events interleaved in one batch; each key's model answers, then learns, its own events:

    >>> import numpy as np
    >>> from streammoe import KeyedDriftMoE
    >>> from streammoe.connectors import open_source
    >>> events = list(open_source("sea_a", n=3000, seed=1))
    >>> X = np.array([[x[f] for f in sorted(x)] for x, _ in events])
    >>> y = np.array([label for _, label in events], dtype=np.int64)
    >>> keys = np.arange(3000) % 3
    >>> model = KeyedDriftMoE(3, 3, 2, n_experts=4, top_k=2, seed=1)
    >>> res = model.learn_predict_window(keys, X, y)
    >>> res.y_pred.shape, res.proba.shape
    ((3000,), (3000, 2))
    >>> float((res.y_pred[1500:] == y[1500:]).mean()) > 0.8
    True
    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     model.save(folder)
    ...     again = KeyedDriftMoE.load(folder)
    >>> np.array_equal(again.predict(keys[:30], X[:30]).y_pred, model.predict(keys[:30], X[:30]).y_pred)
    True
    """

    def __init__(self, n_keys: int, n_features: int, n_classes: int | None = None, *, n_experts: int = 12,
                 top_k: int = 3, hidden: int = 256, lr: float = 2e-3, window: int = 256,
                 temperature: float = 0.8, grace_period: int = 50, delta: float = 1e-7, seed: int = 42,
                 combine: str = "top1", device: str = "cpu", router_device: str = "cpu",
                 tree_options: dict | None = None):
        for name, v, lo in (("n_keys", n_keys, 1), ("n_features", n_features, 1), ("n_experts", n_experts, 1),
                            ("top_k", top_k, 1), ("window", window, 1), ("hidden", hidden, 2)):
            if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < lo:
                raise ValueError(f"{name} must be an int >= {lo}, got {v!r}")
        if n_classes is not None and (not isinstance(n_classes, (int, np.integer)) or n_classes < 1):
            raise ValueError(f"n_classes must be None or an int >= 1, got {n_classes!r}")
        if combine not in COMBINES:
            raise ValueError(f"combine must be one of {COMBINES}, got {combine!r}")
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature!r}")
        if router_device not in ("cpu", "cuda"):
            raise ValueError(f"router_device must be 'cpu' or 'cuda', got {router_device!r}")
        self.n_features, self.n_experts = int(n_features), int(n_experts)
        self.top_k, self.hidden, self.lr, self.window = min(int(top_k), self.n_experts), int(hidden), lr, int(window)
        self.temperature, self.seed, self.combine = float(temperature), int(seed), combine
        self.grace_period, self.delta = grace_period, delta
        self.fixed_classes = n_classes is not None
        self.device = resolve_device(device)
        if router_device == "cuda" and not cupy_available():
            warnings.warn("router_device='cuda' asked for, but CuPy with a GPU is not available; "
                          "routers train on the CPU", CudaUnavailableWarning, stacklevel=2)
            router_device = "cpu"
        self.router_device = router_device
        C = int(n_classes) if n_classes is not None else 0
        self._pool = TreePool(int(n_keys) * self.n_experts, self.n_features, C, grace_period, delta,
                              **(tree_options or {}))
        self._dpool = None
        self._drouters = None
        self.routers: list[MLPRouter] = []
        self._fw: list[np.ndarray] | None = None
        self._win_x = np.zeros((0, self.window, self.n_features))
        self._win_m = np.zeros((0, self.window, self.n_experts))
        self._win_n = np.zeros(0, dtype=np.int64)
        self.class_counts = np.zeros((0, C))
        self.n_learned = np.zeros(0, dtype=np.int64)
        self.router_steps = np.zeros(0, dtype=np.int64)
        self.usage = np.zeros((0, self.n_experts), dtype=np.int64)
        #: seconds spent per phase (router forward, trees, answers, router training, the rest)
        self.timings = dict.fromkeys(("forward", "trees", "answer", "train", "other"), 0.0)
        self._grow_keys(int(n_keys), pool_ready=True)
        if self.device == "cuda":
            from ..gpu.cuda_trees import DevicePool

            self._dpool = DevicePool(self._pool)

    # ------------------------------------------------------------------ shape
    @property
    def n_keys(self) -> int:
        return len(self.routers)

    @property
    def n_classes(self) -> int:
        return self._pool.n_classes

    @property
    def pool(self) -> TreePool:
        """The K×E trees on the host (copied back from the device first when on CUDA)."""
        return self._dpool.to_host() if self._dpool is not None else self._pool

    def add_keys(self, k: int) -> int:
        """Append ``k`` fresh models; returns the index of the first new key."""
        if not isinstance(k, (int, np.integer)) or isinstance(k, bool) or k < 0:
            raise ValueError(f"add_keys needs a non-negative int, got {k!r}")
        first = self.n_keys
        self._grow_keys(int(k), pool_ready=False)
        return first

    def _grow_keys(self, k: int, pool_ready: bool) -> None:
        first = self.n_keys
        if not pool_ready:
            self._sync_host()
            self._pool.add_trees(k * self.n_experts)
        for key in range(first, first + k):
            r = MLPRouter(0, self.n_experts, hidden=self.hidden, lr=self.lr, seed=self.seed + key)
            r.add_inputs(self.n_features)
            self.routers.append(r)
        C, E, w, d = self.n_classes, self.n_experts, self.window, self.n_features
        self._win_x = np.concatenate([self._win_x, np.zeros((k, w, d))])
        self._win_m = np.concatenate([self._win_m, np.zeros((k, w, E))])
        self._win_n = np.concatenate([self._win_n, np.zeros(k, dtype=np.int64)])
        self.class_counts = np.concatenate([self.class_counts, np.zeros((k, C))])
        self.n_learned = np.concatenate([self.n_learned, np.zeros(k, dtype=np.int64)])
        self.router_steps = np.concatenate([self.router_steps, np.zeros(k, dtype=np.int64)])
        self.usage = np.concatenate([self.usage, np.zeros((k, E), dtype=np.int64)])
        self._fw = None
        self._drouters = None
        if not pool_ready:
            self._sync_device()

    def _sync_host(self) -> None:
        if self._dpool is not None:
            self._dpool.to_host()

    def _sync_device(self) -> None:
        if self._dpool is not None:
            self._dpool.to_device()

    def _ensure_classes(self, c: int) -> None:
        if c > self.n_classes:
            self._sync_host()
            extra = c - self.n_classes
            self._pool.ensure_classes(c)
            self.class_counts = np.concatenate([self.class_counts, np.zeros((self.n_keys, extra))], axis=1)
            self._sync_device()

    # ------------------------------------------------------------------ routers
    def _forward_weights(self) -> list[np.ndarray]:
        """Every router's transposed weights stacked on a key axis (rebuilt lazily)."""
        if self._fw is None:
            self._fw = [np.stack([self._router_fwd(r)[i] for r in self.routers]) for i in range(6)]
        return self._fw

    @staticmethod
    def _router_fwd(r: MLPRouter):
        p = r.params
        return (p["W1"].T, p["b1"], p["W2"].T, p["b2"], p["W3"].T, p["b3"])

    def _refresh_forward(self, keys: np.ndarray) -> None:
        if self._fw is None:
            return
        for key in keys:
            for arr, src in zip(self._fw, self._router_fwd(self.routers[key])):
                arr[key] = src
        if self._drouters is not None:
            self._drouters.update(keys)

    def _logits(self, fw: list[np.ndarray], ptr: np.ndarray, rowkey: np.ndarray, X: np.ndarray) -> np.ndarray:
        """Router logits of the gathered rows, each with its key's router (CPU or device)."""
        if self._dpool is not None:
            if self._drouters is None:
                from ..gpu.cuda_router import DeviceRouters

                self._drouters = DeviceRouters(fw)
            return self._drouters.logits(rowkey, X)
        out = np.empty((X.shape[0], self.n_experts), dtype=X.dtype)
        tree_window.keyed_forward(*fw, ptr, X, out)
        return out

    def _train(self, keys: np.ndarray) -> None:
        xp = np
        if self.router_device == "cuda":
            import cupy as xp
        router_batch.train_routers([self.routers[k] for k in keys], self._win_x[keys], self._win_m[keys], xp=xp)
        self._win_n[keys] = 0
        self.router_steps[keys] += 1
        self._refresh_forward(keys)

    # ------------------------------------------------------------------ state
    def state_parts(self, routers=None) -> dict[str, bytes]:
        """Every part of the model as bytes (no pickle): ``meta``, ``stats``, ``window``,
        ``trees`` and ``router/<k>`` per key.  Only the filled rows of each key's window are kept
        (the rest of the buffer is never read), so equal states give equal parts.

        ``routers`` (key indices) limits the ``router/<k>`` parts to those keys: a checkpoint
        writes only the routers that trained since the last one (a router changes only when its
        window fills), which at 1,000 keys is most of the state's bytes."""
        K = self.n_keys
        meta = {"format": FORMAT, "n_keys": K, "n_classes": self.n_classes, "fixed_classes": self.fixed_classes,
                "params": {name: getattr(self, name) for name in _PARAMS}}
        meta["params"].update(grace_period=float(self.grace_period), delta=float(self.delta),
                              lr=float(self.lr))
        filled = np.arange(self.window) < self._win_n[:, None]
        parts = {
            "meta": pack_json(meta),
            "stats": pack_arrays({"class_counts": self.class_counts, "n_learned": self.n_learned,
                                  "router_steps": self.router_steps, "usage": self.usage, "win_n": self._win_n}),
            "window": pack_arrays({"X": self._win_x[filled], "M": self._win_m[filled]}),
            "trees": pack_arrays(self.pool.to_arrays()),
        }
        keys = range(K) if routers is None else sorted(int(k) for k in routers)
        parts.update({f"router/{k}": self.routers[k].to_state() for k in keys})
        return parts

    @classmethod
    def from_parts(cls, parts, *, device: str | None = None,
                   router_device: str | None = None) -> "KeyedDriftMoE":
        """Rebuild a model from :meth:`state_parts`; it continues exactly where it stopped.

        ``device`` / ``router_device`` override the saved choices (e.g. load a GPU model on a
        machine without one)."""
        meta = unpack_json(_part(parts, "meta"))
        if not isinstance(meta, dict) or meta.get("format") != FORMAT:
            found = meta.get("format") if isinstance(meta, dict) else type(meta).__name__
            raise StateFormatError(f"not a KeyedDriftMoE state (format {found!r}, expected {FORMAT!r})")
        try:
            params = dict(meta["params"])
            K, C = int(meta["n_keys"]), int(meta["n_classes"])
            fixed = bool(meta["fixed_classes"])
        except (KeyError, TypeError, ValueError) as exc:
            raise StateFormatError(f"KeyedDriftMoE meta part is malformed: {exc!r}") from exc
        if device is not None:
            params["device"] = device
        if router_device is not None:
            params["router_device"] = router_device
        model = cls(1, n_classes=C if fixed else None, **params)
        E, d, w = model.n_experts, model.n_features, model.window
        stats, win = unpack_arrays(_part(parts, "stats")), unpack_arrays(_part(parts, "window"))
        _expect(stats, "stats", {"class_counts": ((K, C), "f"), "n_learned": ((K,), "i"),
                                 "router_steps": ((K,), "i"), "usage": ((K, E), "i"), "win_n": ((K,), "i")})
        win_n = stats["win_n"].astype(np.int64)
        if ((win_n < 0) | (win_n >= w)).any():
            raise StateFormatError(f"stats part: window fill counts outside [0, {w})")
        n = int(win_n.sum())
        _expect(win, "window", {"X": ((n, d), "f"), "M": ((n, E), "f")})
        try:
            pool = TreePool.from_arrays(unpack_arrays(_part(parts, "trees")))
        except StateFormatError:
            raise
        except ValueError as exc:
            raise StateFormatError(f"trees part: {exc}") from exc
        if (pool.n_trees, pool.n_features, pool.n_classes) != (K * E, d, C):
            raise StateFormatError(f"trees part holds {pool.n_trees} trees of {pool.n_features} features and "
                                   f"{pool.n_classes} classes, expected {K * E}, {d} and {C}")
        routers = [_router(parts, k, d, E, model.hidden) for k in range(K)]
        model._pool, model.routers = pool, routers
        model.class_counts = stats["class_counts"].astype(np.float64)
        model.n_learned = stats["n_learned"].astype(np.int64)
        model.router_steps = stats["router_steps"].astype(np.int64)
        model.usage, model._win_n = stats["usage"].astype(np.int64), win_n
        filled = np.arange(w) < win_n[:, None]
        model._win_x, model._win_m = np.zeros((K, w, d)), np.zeros((K, w, E))
        model._win_x[filled], model._win_m[filled] = win["X"], win["M"]
        model._fw = model._drouters = None
        if model._dpool is not None:
            from ..gpu.cuda_trees import DevicePool

            model._dpool = DevicePool(pool)
        return model

    def save(self, target, name: str = "model") -> None:
        """Save to a directory path (file store) or any :class:`~streammoe.state.StateStore`."""
        as_store(target).write(name, self.state_parts())

    @classmethod
    def load(cls, source, name: str = "model", *, device: str | None = None,
             router_device: str | None = None) -> "KeyedDriftMoE":
        """Load what :meth:`save` wrote (see :meth:`from_parts` for the overrides)."""
        return cls.from_parts(as_store(source).read(name), device=device, router_device=router_device)

    # ------------------------------------------------------------------ validation
    def _check(self, keys, X, y):
        keys = np.asarray(keys)
        if keys.ndim != 1 or (keys.size and keys.dtype.kind not in "iu"):
            raise ValueError(f"keys must be a 1-D array of integer key indices, got shape {keys.shape} "
                             f"dtype {keys.dtype}")
        keys = keys.astype(np.int64)
        n = keys.shape[0]
        bad = np.nonzero((keys < 0) | (keys >= self.n_keys))[0]
        if bad.size:
            raise ValueError(f"event {bad[0]}: key {keys[bad[0]]} outside [0, {self.n_keys})")
        X = np.ascontiguousarray(X, dtype=np.float64)
        if X.shape != (n, self.n_features):
            raise ValueError(f"X must have shape ({n}, {self.n_features}), got {X.shape}")
        bad = np.nonzero(~np.isfinite(X).all(axis=1))[0]
        if bad.size:
            raise ValueError(f"event {bad[0]}: X contains NaN or infinite values")
        if y is None:
            y = np.full(n, -1, dtype=np.int64)
        else:
            y = np.asarray(y)
            if y.shape != (n,) or (n and y.dtype.kind not in "iu"):
                raise ValueError(f"y must be a 1-D integer array of length {n} (-1 = unlabelled), "
                                 f"got shape {y.shape} dtype {y.dtype}")
            y = y.astype(np.int64)
            bad = np.nonzero(y < -1)[0]
            if bad.size:
                raise ValueError(f"event {bad[0]}: label {y[bad[0]]} is negative (use -1 for unlabelled)")
            if self.fixed_classes:
                bad = np.nonzero(y >= self.n_classes)[0]
                if bad.size:
                    raise ValueError(f"event {bad[0]}: label {y[bad[0]]} outside the declared "
                                     f"{self.n_classes} classes")
        return keys, X, y

    # ------------------------------------------------------------------ the loop
    def predict(self, keys, X) -> KeyedResult:
        """Answers without learning (every event unlabelled)."""
        return self.learn_predict_window(keys, X, None)

    def learn_predict_window(self, keys, X, y=None) -> KeyedResult:
        """Prequential over a batch of events of many keys: each event is answered by its key's
        model, then learned if labelled (``y >= 0``).  Each key's events are taken in order;
        the relative order of different keys' events does not matter."""
        keys, X, y = self._check(keys, X, y)
        if y.size and not self.fixed_classes:
            self._ensure_classes(int(y.max()) + 1)
        n, K, E, C = keys.shape[0], self.n_keys, self.n_experts, self.n_classes
        res = KeyedResult(np.full(n, -1, dtype=np.int64), np.zeros((n, C)), np.zeros(n, dtype=np.int64), 0)
        if n == 0:
            return res
        order = np.argsort(keys, kind="stable")
        start = np.zeros(K + 1, dtype=np.int64)
        np.cumsum(np.bincount(keys, minlength=K), out=start[1:])
        labcum = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(y[order] >= 0, out=labcum[1:])
        cur, end = start[:-1].copy(), start[1:]
        fw = self._forward_weights()
        dt = fw[0].dtype
        nk = self.top_k if self.combine == "mixture" else 1
        tm = self.timings
        t0 = perf_counter()
        while True:
            active = cur < end
            if not active.any():
                tm["other"] += perf_counter() - t0
                return res
            # each key runs up to (and including) the labelled event that fills its window
            seg_end = np.minimum(np.searchsorted(labcum, labcum[cur] + self.window - self._win_n, side="left"), end)
            seg_end = np.where(active, seg_end, cur)
            seg_len = seg_end - cur
            ptr = np.zeros(K + 1, dtype=np.int64)
            np.cumsum(seg_len, out=ptr[1:])
            m = int(ptr[-1])
            rowkey = np.repeat(np.arange(K), seg_len)
            ev = order[np.repeat(cur - ptr[:-1], seg_len) + np.arange(m)]
            Xs, Ys = X[ev], y[ev]
            t1 = perf_counter()
            tm["other"] += t1 - t0
            W = softmax(self._logits(fw, ptr, rowkey, Xs.astype(dt)), self.temperature)
            top, rank = tree_window.top_k_ranks(W, self.top_k)
            t0 = perf_counter()
            tm["forward"] += t0 - t1
            expert_pred = np.empty((m, E), dtype=np.int64)
            p_true = np.zeros((m, E))
            Pk = np.zeros((m, nk, C))
            if self._dpool is not None:
                from ..gpu.cuda_trees import run_trees_cuda

                res.launches += run_trees_cuda(self._dpool, E, ptr, Xs, Ys, rank, expert_pred, p_true, Pk)
            else:
                res.launches += tree_window.run_trees_cpu(self._pool, E, ptr, Xs, Ys, rank, expert_pred,
                                                          p_true, Pk)
            t1 = perf_counter()
            tm["trees"] += t1 - t0
            proba = np.zeros((m, C))
            y_pred = np.empty(m, dtype=np.int64)
            expert = np.empty(m, dtype=np.int64)
            mask = np.zeros((m, E))
            tree_window.answer_window(ptr, Ys, W, top, expert_pred, p_true, Pk, self.combine == "mixture",
                                      self.class_counts, proba, y_pred, expert, mask)
            res.proba[ev], res.y_pred[ev], res.expert[ev] = proba, y_pred, expert
            lab = Ys >= 0
            np.add.at(self.usage, (rowkey[lab], expert[lab]), 1)
            self.n_learned += np.bincount(rowkey[lab], minlength=K)
            _append_windows(ptr, Xs, Ys, mask, self._win_x, self._win_m, self._win_n)
            full = np.nonzero(self._win_n == self.window)[0]
            t0 = perf_counter()
            tm["answer"] += t0 - t1
            if full.size:
                self._train(full)
                t1 = perf_counter()
                tm["train"] += t1 - t0
                t0 = t1
            cur = seg_end


def _part(parts, name: str) -> bytes:
    if name not in parts:
        raise StateFormatError(f"KeyedDriftMoE state lacks its {name!r} part")
    return parts[name]


def _expect(arrays: dict, part: str, shapes: dict) -> None:
    """Each named array exists with the expected shape and kind (``'i'`` int, ``'f'`` float)."""
    for name, (shape, kind) in shapes.items():
        arr = arrays.get(name)
        if arr is None or arr.shape != shape or arr.dtype.kind not in ("iu" if kind == "i" else "f"):
            got = "missing" if arr is None else f"{arr.shape} {arr.dtype}"
            raise StateFormatError(f"{part} part: array {name!r} should be {shape} ({kind}), got {got}")


def _router(parts, k: int, d: int, E: int, hidden: int) -> MLPRouter:
    name = f"router/{k}"
    try:
        r = MLPRouter.from_state(_part(parts, name))
        ok = r.params["W1"].shape == (hidden, d) and r.params["W3"].shape[0] == E
    except StateFormatError:
        raise
    except (KeyError, ValueError, IndexError, TypeError) as exc:
        raise StateFormatError(f"{name} part is not a router state: {exc!r}") from exc
    if not ok:
        raise StateFormatError(f"{name} part: router shape does not match {d} features, {E} experts")
    return r


@njit(parallel=True, cache=True, nogil=True)
def _append_windows(ptr, X, Y, mask, win_x, win_m, win_n):
    """Append each key's labelled rows (in order) and their router targets to its window."""
    for key in prange(ptr.shape[0] - 1):
        j = win_n[key]
        for i in range(ptr[key], ptr[key + 1]):
            if Y[i] >= 0:
                win_x[key, j] = X[i]
                win_m[key, j] = mask[i]
                j += 1
        win_n[key] = j
