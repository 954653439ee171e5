"""The model's side of the compiled per-event step (:mod:`streammoe.experts.event_step`).

:class:`EventPath` owns the step's scratch arrays, hands the kernels the model's live arrays
(router weights, tree arrays, running statistics, the router's window) and does the Python
bookkeeping a kernel cannot: growing the trees' node capacity, the checkpoint's dirty marks,
and the router's Adam step when a window is full.  It serves the default configurations — data
and task mode over the array tree pool (``engine='numba'``) without a drift policy and with no
frozen expert; :meth:`streammoe.model.DriftMoE._compiled_path` decides when it applies.
"""
from __future__ import annotations

import weakref
from operator import is_
from typing import TYPE_CHECKING

import numpy as np

from .experts import event_step as ks
from .routers.mlp import DTYPE

if TYPE_CHECKING:  # pragma: no cover
    from .model import DriftMoE


_DIRTY = ("meta", "stats", "window")  # the parts every learned event changes (besides its experts)

#: per path: kernel -> (its array arguments at the last dispatch, its compiled entry point).  Kept
#: outside the path so that nothing reachable from a model holds Numba's internals (river's
#: memory walk, ``_raw_memory_usage``, trips over their dead weak proxies).
_ENTRIES: "weakref.WeakKeyDictionary[EventPath, dict]" = weakref.WeakKeyDictionary()


class EventPath:
    """Scratch and argument assembly for one model's compiled per-event calls."""

    def __init__(self, model: "DriftMoE", exp_fn: int):
        self.pool = model._pool  # the pool this path was made for (a loaded model gets a new path)
        self.exp_fn = exp_fn     # NumPy's exp loop (see streammoe.routers.numpy_exp)
        self.mixture = model.combine == "mixture"
        self.data = model.mode == "data"
        self._shape: tuple = ()
        self._arrays = None      # the trees' arrays last handed over ...
        self._fields = ()        # ... as a plain tuple (Numba types it twice as fast as the namedtuple)
        self._routed = None      # router weights that computed the kept weights (for the kept row)
        self.proba = np.zeros(0)
        self.order = np.zeros(0, dtype=np.int64)
        self._tags: list[str] = []
        _ENTRIES[self] = {}

    def _call(self, kernel, args: tuple, arrays: tuple):
        """``kernel(*args)``, through its compiled entry point when ``arrays`` (every argument that
        is not a fresh float64 row or a Python scalar of fixed type) are the very objects of the
        last call through the dispatcher, and so of the same Numba types.  Why: typing ~40 array
        arguments costs the dispatcher ~3 us a call, more than the kernel's own work on a small
        tree; the entry point only unboxes them."""
        entries = _ENTRIES[self]
        last = entries.get(kernel)
        if last is not None and all(map(is_, last[0], arrays)):
            return last[1](*args)
        out = kernel(*args)
        compiled = kernel.overloads.get(tuple(kernel.typeof_pyval(a) for a in args))
        if compiled is not None:  # else: the dispatcher every time
            entries[kernel] = (arrays, compiled.entry_point)
        return out

    def __reduce__(self):
        """Pickled and copied as ``None``: the copy's model builds its own path on first use.  (The
        scratch holds views, which a copy would detach, and ``exp_fn`` is an address in this process.)"""
        return type(None), ()

    def _prepare(self, m: "DriftMoE", row: np.ndarray) -> tuple:
        """The router's weights, sized scratch and the trees for ``row`` and the model's classes;
        also whether the kept router weights may be reused (same router since they were made)."""
        trees = m._pool.trees
        d, C = row.shape[0], len(m._labels.classes)
        fw = m._router._fwd or m._router.forward_weights()
        if trees.arrays is self._arrays and fw is self._routed and (d, C) == self._shape[:2]:
            return fw, trees, True  # nothing changed since the last call: the common case
        tc = C if self.data else 2
        A = trees.arrays
        if A is not self._arrays or A.g_n.shape[2] != d or A.class_w.shape[2] != tc:
            m._pool._fit(d, tc)
            A = trees.arrays
            self._arrays, self._fields = A, tuple(A)
        shape = (d, C, tc, fw[5].shape[0], fw[1].shape[0], fw[3].shape[0])
        if shape != self._shape:  # a new feature, class or expert: new scratch, nothing to reuse
            self._shape = shape
            n64, ni, n32 = ks.work_sizes(d, shape[3], C, tc, shape[4], shape[5])
            self.f64, self.i64, self.f32 = np.zeros(n64), np.zeros(ni, dtype=np.int64), np.zeros(n32, DTYPE)
            E = shape[3]
            self.taken = np.zeros(E, dtype=np.bool_)
            o = 2 * d + 2 * E + E * tc
            self.proba, self.order = self.f64[o:o + C], self.i64[:E]
            self._tags = [f"expert/{e}" for e in range(E)]
            self._routed = None
        reuse = fw is self._routed
        self._routed = fw
        return fw, trees, reuse

    def predict(self, m: "DriftMoE", row: np.ndarray, strict: bool) -> tuple[int, int] | None:
        """``(answering expert, argmax class)`` with the class probabilities in ``self.proba``,
        or ``None`` when ``row`` holds an invalid value (nothing changed)."""
        fw, trees, reuse = self._prepare(m, row)
        fs = m._features
        arrays = (fw, m.temperature, self._fields, trees.hp, fs.sums, fs.counts, m._class_counts, self.f64)
        if self.data:
            status, top1, arg = self._call(ks.data_predict, (
                fw, m.temperature, self.exp_fn, self._fields, trees.hp, row, strict, fs.sums, fs.counts,
                min(m.top_k, len(self.taken)), self.mixture, m._class_counts, self.f64, self.i64, self.f32,
                self.taken, reuse), arrays)
        else:
            status, top1, arg = self._call(ks.task_predict, (
                fw, m.temperature, self.exp_fn, self._fields, trees.hp, row, strict, fs.sums, fs.counts,
                self.mixture, m._class_counts, self.f64, self.i64, self.f32, reuse), arrays)
        if status != ks.OK:
            self._routed = None  # the kept weights may predate the router's latest weights
            return None
        return top1, arg

    def learn(self, m: "DriftMoE", row: np.ndarray, yi: int, strict: bool) -> bool:
        """Learn one event of class index ``yi``; ``False`` when ``row`` holds an invalid value
        (nothing changed)."""
        fw, trees, reuse = self._prepare(m, row)
        fs, win, E = m._features, m._window, len(self.taken)
        win.reserve(row.shape[0], E)
        k = min(m.top_k, E)
        arrays = (fw, m.temperature, self._fields, trees.hp, fs.sums, fs.counts, m._class_counts, m._usage,
                  m._expert_seen, m._expert_correct, win.X, win.M, self.f64)
        if self.data:
            status, top1, room = self._call(ks.data_learn, (
                fw, m.temperature, self.exp_fn, self._fields, trees.hp, row, strict, fs.sums, fs.counts,
                yi, k, m._class_counts, m._usage, m._expert_seen, m._expert_correct, win.X, win.M, win.n,
                self.f64, self.i64, self.f32, self.taken, reuse), arrays)
        else:
            status, top1, room = self._call(ks.task_learn, (
                fw, m.temperature, self.exp_fn, self._fields, trees.hp, row, strict, fs.sums, fs.counts,
                yi, m._class_counts, m._usage, m._expert_seen, m._expert_correct, win.X, win.M, win.n,
                self.f64, self.i64, self.f32, reuse), arrays)
        if status != ks.OK:
            self._routed = None
            return False
        win.n += 1
        if room:
            trees._ensure_room()
        tags = self._tags
        m._dirty.update([tags[e] for e in self.order.tolist()[:k]] if self.data else tags, _DIRTY)
        m.n_learned_ += 1
        if not self.data or win.n >= m.window:
            m._train_router()
        return True
