"""The model's side of the compiled per-event step (:mod:`streammoe.experts.event_step`).

:class:`EventPath` owns the step's scratch arrays, hands the kernels the model's live arrays
(router weights, tree arrays, running statistics, the router's window) and does the Python
bookkeeping a kernel cannot: growing the trees' node capacity, the checkpoint's dirty marks,
and the router's Adam step when a window is full.  It serves the default configurations — data
and task mode over the array tree pool (``engine='numba'``) without a drift policy and with no
frozen expert; :meth:`streammoe.model.DriftMoE._compiled_path` decides when it applies.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from .experts import event_step as ks
from .routers.mlp import DTYPE

if TYPE_CHECKING:  # pragma: no cover
    from .model import DriftMoE


class EventPath:
    """Scratch and argument assembly for one model's compiled per-event calls."""

    def __init__(self, exp_fn: int):
        self.exp_fn = exp_fn  # NumPy's exp loop (see streammoe.routers.numpy_exp)
        self._shape: tuple | None = None
        self.proba = np.zeros(0)
        self._tags: list[str] = []
        self._arrays = None    # the trees' arrays last handed over ...
        self._fields = ()      # ... as a plain tuple (Numba types it twice as fast as the namedtuple)
        self._dims = (-1, -1)  # ... and their numbers of features and classes
        self._routed = None    # router weights that computed self.w (for the row in self.last_row)

    def _scratch(self, d: int, E: int, C: int, tc: int, fw: tuple) -> None:
        """(Re)allocate the scratch when the model's shape changed (a new feature, class or
        expert); ``C``: the model's classes, ``tc``: the trees' (2 in task mode)."""
        h1, h2 = fw[1].shape[0], fw[3].shape[0]
        shape = (d, E, C, tc, h1, h2)
        if shape == self._shape:
            return
        self._shape = shape
        self.rs = (np.zeros(d, DTYPE), np.zeros(E, DTYPE), np.zeros(h1, DTYPE), np.zeros(h2, DTYPE),
                   np.zeros(h1, dtype=np.int64), np.zeros(h2, dtype=np.int64))
        self.xv, self.z, self.w, self.last_row = np.zeros(d), np.zeros(E), np.zeros(E), np.zeros(d)
        self._routed = None
        self.P = np.zeros((E, tc))
        self.proba = np.zeros(C)
        self.expert_pred = np.zeros(E, dtype=np.int64)
        self.order = np.zeros(max(E, 1), dtype=np.int64)
        self.taken = np.zeros(E, dtype=np.bool_)
        self.leaf = np.zeros(E, dtype=np.int64)
        self.nb_arg = np.zeros(E, dtype=np.int64)
        self.buf = np.zeros(2 * tc)
        self.iscratch = np.zeros(tc, dtype=np.int64)
        self._tags = [f"expert/{e}" for e in range(E)]

    def _prepare(self, m: "DriftMoE", row: np.ndarray) -> tuple:
        """The router's weights and the trees, sized for ``row`` and the model's classes."""
        pool = m._pool
        trees = pool.trees
        d, C = row.shape[0], len(m._labels.classes)
        want = (d, C if m.mode == "data" else 2)
        if trees.arrays is not self._arrays or self._dims != want:
            pool._fit(*want)
            A = trees.arrays
            self._arrays, self._fields, self._dims = A, tuple(A), (A.g_n.shape[2], A.class_w.shape[2])
        fw = m._router.forward_weights()
        self._scratch(d, trees.n_trees, C, want[1], fw)
        return fw, trees

    def predict(self, m: "DriftMoE", row: np.ndarray, strict: bool) -> tuple[int, int] | None:
        """``(answering expert, argmax class)`` with the class probabilities in ``self.proba``,
        or ``None`` when ``row`` holds an invalid value (nothing changed)."""
        fw, trees = self._prepare(m, row)
        fs, reuse = m._features, fw is self._routed
        self._routed = fw
        if m.mode == "data":
            status, top1, arg = ks.data_predict(
                fw, self.rs, m.temperature, self.exp_fn, self._fields, trees.hp, row, strict, fs.sums, fs.counts,
                min(m.top_k, len(self.w)), m.combine == "mixture", m._class_counts, self.xv, self.z, self.w, self.P,
                self.proba, self.order, self.taken, self.leaf, self.nb_arg, reuse, self.last_row)
        else:
            status, top1, arg = ks.task_predict(
                fw, self.rs, m.temperature, self.exp_fn, self._fields, trees.hp, row, strict, fs.sums, fs.counts,
                m.combine == "mixture", self.xv, self.z, self.w, self.P, self.proba, self.leaf, self.nb_arg, reuse,
                self.last_row)
        if status != ks.OK:
            return None
        return top1, arg

    def learn(self, m: "DriftMoE", row: np.ndarray, yi: int, strict: bool) -> bool:
        """Learn one event of class index ``yi``; ``False`` when ``row`` holds an invalid value
        (nothing changed)."""
        fw, trees = self._prepare(m, row)
        fs, win, E = m._features, m._window, len(self.w)
        reuse = fw is self._routed
        self._routed = fw
        win.reserve(row.shape[0], E)
        data = m.mode == "data"
        k = min(m.top_k, E)
        if data:
            status, top1, room = ks.data_learn(
                fw, self.rs, m.temperature, self.exp_fn, self._fields, trees.hp, row, strict, fs.sums, fs.counts,
                yi, k, m._class_counts, m._usage, m._expert_seen, m._expert_correct, win.X, win.M, win.n,
                self.xv, self.z, self.w, self.P, self.expert_pred, self.order, self.taken, self.leaf, self.nb_arg,
                self.buf, self.iscratch, reuse, self.last_row)
        else:
            status, top1, room = ks.task_learn(
                fw, self.rs, m.temperature, self.exp_fn, self._fields, trees.hp, row, strict, fs.sums, fs.counts,
                yi, m._class_counts, m._usage, m._expert_seen, m._expert_correct, win.X, win.M, win.n,
                self.xv, self.z, self.w, self.P, self.leaf, self.nb_arg, self.buf, self.iscratch, reuse,
                self.last_row)
        if status != ks.OK:
            return False
        win.n += 1
        if room:
            trees._ensure_room()
        dirty = m._dirty
        if data:
            dirty.update(map(self._tags.__getitem__, self.order[:k].tolist()))
        else:
            dirty.update(self._tags)
        dirty.update(("meta", "stats", "window"))
        m.n_learned_ += 1
        if not data or win.n >= m.window:
            m._train_router()
        return True
