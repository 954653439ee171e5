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
        self.xv, self.z, self.w = np.zeros(d), np.zeros(E), np.zeros(E)
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

    def predict(self, m: "DriftMoE", row: np.ndarray, strict: bool) -> tuple[int, int] | None:
        """``(answering expert, argmax class)`` with the class probabilities in ``self.proba``,
        or ``None`` when ``row`` holds an invalid value (nothing changed)."""
        trees = m._pool.trees
        fw = m._router.forward_weights()
        d, E, C = row.shape[0], trees.n_trees, len(m._labels.classes)
        m._pool._fit(d, C if m.mode == "data" else 2)
        self._scratch(d, E, C, trees.n_classes, fw)
        fs = m._features
        if m.mode == "data":
            status, top1, arg = ks.data_predict(
                fw, self.rs, m.temperature, self.exp_fn, trees.arrays, trees.hp, row, strict, fs.sums, fs.counts,
                min(m.top_k, E), m.combine == "mixture", m._class_counts, self.xv, self.z, self.w, self.P,
                self.proba, self.order, self.taken, self.leaf, self.nb_arg)
        else:
            status, top1, arg = ks.task_predict(
                fw, self.rs, m.temperature, self.exp_fn, trees.arrays, trees.hp, row, strict, fs.sums, fs.counts,
                m.combine == "mixture", self.xv, self.z, self.w, self.P, self.proba, self.leaf, self.nb_arg)
        if status != ks.OK:
            return None
        return top1, arg

    def learn(self, m: "DriftMoE", row: np.ndarray, yi: int, strict: bool) -> bool:
        """Learn one event of class index ``yi``; ``False`` when ``row`` holds an invalid value
        (nothing changed)."""
        pool = m._pool
        trees = pool.trees
        fw = m._router.forward_weights()
        d, E, C = row.shape[0], trees.n_trees, len(m._labels.classes)
        pool._fit(d, C if m.mode == "data" else 2)
        self._scratch(d, E, C, trees.n_classes, fw)
        fs, win = m._features, m._window
        win.reserve(d, E)
        data = m.mode == "data"
        k = min(m.top_k, E)
        if data:
            status, top1, room = ks.data_learn(
                fw, self.rs, m.temperature, self.exp_fn, trees.arrays, trees.hp, row, strict, fs.sums, fs.counts,
                yi, k, m._class_counts, m._usage, m._expert_seen, m._expert_correct, win.X, win.M, win.n,
                self.xv, self.z, self.w, self.P, self.expert_pred, self.order, self.taken, self.leaf, self.nb_arg,
                self.buf, self.iscratch)
        else:
            status, top1, room = ks.task_learn(
                fw, self.rs, m.temperature, self.exp_fn, trees.arrays, trees.hp, row, strict, fs.sums, fs.counts,
                yi, m._class_counts, m._usage, m._expert_seen, m._expert_correct, win.X, win.M, win.n,
                self.xv, self.z, self.w, self.P, self.leaf, self.nb_arg, self.buf, self.iscratch)
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
