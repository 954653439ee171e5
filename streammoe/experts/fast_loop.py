"""The DriftMoE per-event loop over a :class:`~streammoe.experts.fast_tree.TreePool`.

Data mode: the router is frozen inside a window, so its weights ``W`` (softmax of the logits
over the temperature) for the whole window are computed outside in one batch.  What remains is
strictly sequential per event and runs here in one compiled kernel per window:

1. every expert predicts ``x_i`` before anyone learns it;
2. the model answers with the top-1 expert by ``W[i]`` (ties: lowest index), or with the
   router-weighted mixture of the top-k experts' probabilities (``combine='mixture'``),
   normalised to sum 1; ``y_pred`` is its argmax (ties: lowest class) and ``-1`` when the
   answer is all zeros (no expert knows anything yet; river's ``predict_one`` gives ``None``);
3. labelled events (``Y[i] >= 0``) get the router's target mask: 1 for each expert whose argmax
   equals ``y`` (an all-zero expert is never right); if none, 1 for the expert giving ``y``
   the highest probability (ties: lowest index);
4. the top-k experts by ``W[i]`` (descending, ties to the lower index) learn ``(x_i, y_i)``.

``run_window`` runs the kernel; ``run_window_per_event`` does the same with a Python loop over
the pool's per-event methods and exists to prove, bit for bit, that the kernel changes nothing.

Task mode (one-vs-rest binary trees, expert ``c`` answers "is it class c?") updates the router
after every event, so :func:`task_step` handles one event: all experts predict, the mask is 1 at
the experts that say "mine" (``P(mine) > P(not mine)``) and are right (only ``c == y`` can be),
else at ``y``; then every expert learns ``(x, y == c)``.  Its answer is the router's weights
(``'top1'``) or the weights times each expert's ``P(mine)`` renormalised (``'mixture'``, falling
back to the weights when that product is all zero).

Mixture weights are the raw router weights of the top-k experts; the result is divided by its
own sum (equivalently by the sum of those weights, then renormalised), zeros if it sums to 0.

Development note: Numba's on-disk cache keys each kernel by its own source file, so after
editing ``fast_tree.py`` delete ``streammoe/experts/__pycache__/*.nb[ic]`` (or touch this file)
or the cached window kernel keeps the old tree code inlined.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .fast_tree import TreePool, argmax_or_neg, inner_only, kernel, learn_leaf, needs_room, predict_tree

__all__ = ["COMBINES", "WindowResult", "TaskStepResult", "run_window", "run_window_per_event",
           "task_step", "top_k_order", "top_k_members"]

COMBINES = ("top1", "mixture")


@dataclass
class WindowResult:
    proba: np.ndarray        #: (n, C) the model's class probabilities per event
    y_pred: np.ndarray       #: (n,) int64 argmax of ``proba``; -1 when ``proba`` is all zero
    expert: np.ndarray       #: (n,) int64 top-1 expert by router weight
    mask: np.ndarray         #: (n, E) float64 router target; all zero for unlabelled events
    expert_pred: np.ndarray  #: (n, E) int64 each expert's own argmax before learning; -1 = empty


@dataclass
class TaskStepResult:
    proba: np.ndarray   #: (E,) the model's class probabilities (class c = expert c)
    y_pred: int         #: argmax of ``proba`` (ties: lowest); -1 when all zero
    expert: int         #: top-1 expert by router weight
    mask: np.ndarray    #: (E,) float64 router target; zeros when unlabelled
    p_mine: np.ndarray  #: (E,) each expert's P(mine) before learning


# ----------------------------------------------------------------------------------- kernels
@kernel(inline=True)
def _argmax_first(w):
    best = 0
    for e in range(1, w.shape[0]):
        if w[e] > w[best]:
            best = e
    return best


@kernel(inline=True)
def router_target(expert_pred, y, p_true, mask):
    """The router's multi-hot target for one labelled event: 1 for every expert whose prediction
    was ``y``; if none, 1 for the expert giving ``y`` the highest probability (``p_true``, ties to
    the lowest index).  Shared by the window kernel and the keyed pools."""
    hit = False
    for e in range(expert_pred.shape[0]):
        if expert_pred[e] == y:
            mask[e] = 1.0
            hit = True
    if not hit:
        mask[_argmax_first(p_true)] = 1.0


@kernel(inline=True)
def normalise_row(row):
    """Scale ``row`` to sum 1 in place (left as is when its sum is not positive): the weighted
    top-k mixture's last step, shared by the window kernel and the keyed pools."""
    tot = 0.0
    for c in range(row.shape[0]):
        tot += row[c]
    if tot > 0.0:
        for c in range(row.shape[0]):
            row[c] = row[c] / tot


@kernel(inline=True)
def _top_k_into(w, k, order, taken):
    """``order[:k]`` = the k largest weights, largest first, ties to the lower index."""
    E = w.shape[0]
    for e in range(E):
        taken[e] = False
    for j in range(k):
        best = -1
        for e in range(E):
            if not taken[e] and (best < 0 or w[e] > w[best]):
                best = e
        taken[best] = True
        order[j] = best


@kernel
def _window_kernel(A, hp, W, X, Y, k, mixture, start, P, proba, y_pred, expert, mask,
                   expert_pred, order, taken, leaf, nb_arg, buf, iscratch):
    """Events ``start..n-1`` of a window; returns the next event to run (``n`` when done,
    earlier when a tree needs more node capacity before it may split again)."""
    n, E = W.shape
    C = P.shape[1]
    for i in range(start, n):
        x = X[i]
        for e in range(E):
            # a learner below reuses the traversal and, when P[e] is naive Bayes, its argmax
            leaf[e], nb_arg[e] = predict_tree(A, hp, e, x, P[e])
            expert_pred[i, e] = argmax_or_neg(P[e])
        top1 = _argmax_first(W[i])
        expert[i] = top1
        _top_k_into(W[i], k, order, taken)
        if mixture:
            for c in range(C):
                proba[i, c] = 0.0
            for j in range(k):
                e = order[j]
                for c in range(C):
                    proba[i, c] += W[i, e] * P[e, c]
            normalise_row(proba[i])
        else:
            for c in range(C):
                proba[i, c] = P[top1, c]
        y_pred[i] = argmax_or_neg(proba[i])
        y = Y[i]
        if y < 0:
            continue
        router_target(expert_pred[i], y, P[:, y], mask[i])
        for j in range(k):
            e = order[j]
            learn_leaf(A, hp, e, leaf[e], x, y, buf, iscratch, nb_arg[e])
        if needs_room(A, hp):
            return i + 1
    return n


@kernel
def _task_kernel(A, hp, w, x, y, mixture, P, proba, mask, p_mine, leaf, nb_arg, buf, iscratch):
    """One task-mode event; returns ``(y_pred, top1)``."""
    E = w.shape[0]
    for e in range(E):
        leaf[e], nb_arg[e] = predict_tree(A, hp, e, x, P[e])
        p_mine[e] = P[e, 1]
    top1 = _argmax_first(w)
    tot = 0.0
    if mixture:
        for e in range(E):
            proba[e] = w[e] * p_mine[e]
            tot += proba[e]
    if tot > 0.0:
        for e in range(E):
            proba[e] = proba[e] / tot
    else:
        for e in range(E):
            proba[e] = w[e]
    if y >= 0:
        # Only expert y can rightly say "mine"; when it does not, it is the fallback target.
        mask[y] = 1.0
        for e in range(E):
            learn_leaf(A, hp, e, leaf[e], x, 1 if e == y else 0, buf, iscratch, nb_arg[e])
    return argmax_or_neg(proba), top1


@kernel
def _top_k_members_kernel(W, k, order, taken, member):
    for i in range(W.shape[0]):
        _top_k_into(W[i], k, order, taken)
        for j in range(k):
            member[order[j]] = True


# ----------------------------------------------------------------------------------- checks
def _check_combine(combine: str) -> bool:
    if combine not in COMBINES:
        raise ValueError(f"combine must be one of {COMBINES}, got {combine!r}")
    return combine == "mixture"


def _check_window(pool: TreePool, W, X, Y, top_k: int):
    W = np.ascontiguousarray(W, dtype=np.float64)
    X = np.ascontiguousarray(X, dtype=np.float64)
    Y = np.ascontiguousarray(Y)
    if Y.dtype.kind not in "iu":
        raise ValueError(f"Y must hold integer class indices (-1 = unlabelled), got dtype {Y.dtype}")
    Y = Y.astype(np.int64)
    E, D, C = pool.n_trees, pool.n_features, pool.n_classes
    if W.ndim != 2 or W.shape[1] != E:
        raise ValueError(f"W must have shape (n, {E}), got {W.shape}")
    n = W.shape[0]
    if X.shape != (n, D):
        raise ValueError(f"X must have shape ({n}, {D}), got {X.shape}")
    if Y.shape != (n,):
        raise ValueError(f"Y must have shape ({n},), got {Y.shape}")
    if not (np.isfinite(W).all() and np.isfinite(X).all()):
        raise ValueError("W and X must be finite (no NaN or inf)")
    if n and (Y.min() < -1 or Y.max() >= C):
        raise ValueError(f"Y must be -1 (unlabelled) or a class index in [0, {C})")
    pool.check_codes(X)
    if not isinstance(top_k, (int, np.integer)) or top_k < 1:
        raise ValueError(f"top_k must be an int >= 1, got {top_k!r}")
    if E == 0:
        raise ValueError("the pool has no experts")
    return W, X, Y, min(int(top_k), E)


def top_k_order(w: np.ndarray, k: int) -> list[int]:
    """The k largest weights' indices, largest first, ties to the lower index."""
    return sorted(range(len(w)), key=lambda e: (-w[e], e))[:k]


def top_k_members(W: np.ndarray, k: int) -> np.ndarray:
    """Which experts are among the top ``k`` of at least one row of ``W`` (ties to the lower
    index, as the window kernel picks its learners): a boolean per expert."""
    W = np.ascontiguousarray(W, dtype=np.float64)
    E = W.shape[1]
    k = min(int(k), E)
    member = np.zeros(E, dtype=np.bool_)
    if k > 0 and W.shape[0]:
        _top_k_members_kernel(W, k, np.zeros(k, dtype=np.int64), np.zeros(E, dtype=np.bool_), member)
    return member


# ----------------------------------------------------------------------------------- API
def _empty_result(n: int, E: int, C: int) -> WindowResult:
    return WindowResult(np.zeros((n, C)), np.full(n, -1, dtype=np.int64), np.zeros(n, dtype=np.int64),
                        np.zeros((n, E)), np.full((n, E), -1, dtype=np.int64))


def run_window(pool: TreePool, W, X, Y, top_k: int = 3, combine: str = "top1") -> WindowResult:
    """One window of events through the compiled loop (see the module docstring)."""
    mixture = _check_combine(combine)
    W, X, Y, k = _check_window(pool, W, X, Y, top_k)
    n, E = W.shape
    C = pool.n_classes
    res = _empty_result(n, E, C)
    P = np.zeros((E, C))
    order = np.zeros(k, dtype=np.int64)
    taken = np.zeros(E, dtype=np.bool_)
    leaf = np.zeros(E, dtype=np.int64)
    nb_arg = np.zeros(E, dtype=np.int64)
    buf = np.zeros(2 * C)
    iscratch = np.zeros(C, dtype=np.int64)
    i = 0
    pool._ensure_room()
    while i < n:
        i = _window_kernel(pool.arrays, pool.hp, W, X, Y, k, mixture, i, P, res.proba, res.y_pred,
                           res.expert, res.mask, res.expert_pred, order, taken, leaf, nb_arg, buf, iscratch)
        pool._ensure_room()
    return res


def run_window_per_event(pool: TreePool, W, X, Y, top_k: int = 3, combine: str = "top1") -> WindowResult:
    """The same window as :func:`run_window`, one Python step per event (reference path)."""
    mixture = _check_combine(combine)
    W, X, Y, k = _check_window(pool, W, X, Y, top_k)
    n, E = W.shape
    C = pool.n_classes
    res = _empty_result(n, E, C)
    for i in range(n):
        x, w, y = X[i], W[i], int(Y[i])
        P = [pool.predict_proba(e, x) for e in range(E)]
        for e in range(E):
            res.expert_pred[i, e] = _py_argmax_or_neg(P[e])
        top1 = int(np.argmax(w))
        res.expert[i] = top1
        order = top_k_order(w, k)
        if mixture:
            acc = [0.0] * C
            for e in order:
                for c in range(C):
                    acc[c] += float(w[e]) * float(P[e][c])
            tot = 0.0
            for v in acc:
                tot += v
            res.proba[i] = [v / tot for v in acc] if tot > 0.0 else acc
        else:
            res.proba[i] = P[top1]
        res.y_pred[i] = _py_argmax_or_neg(res.proba[i])
        if y < 0:
            continue
        hits = [e for e in range(E) if res.expert_pred[i, e] == y]
        if hits:
            res.mask[i, hits] = 1.0
        else:
            res.mask[i, int(np.argmax([P[e][y] for e in range(E)]))] = 1.0
        for e in order:
            pool.learn(e, x, y)
    return res


def _py_argmax_or_neg(p) -> int:
    p = np.asarray(p)
    return int(np.argmax(p)) if p.size and p.max() > 0.0 else -1


def task_step(pool: TreePool, w_row, x, y: int = -1, combine: str = "top1") -> TaskStepResult:
    """One task-mode event: expert ``c`` of ``pool`` (2 classes) is the one-vs-rest tree of class
    ``c``; ``w_row`` the router's weights over the experts; ``y = -1`` predicts only."""
    mixture = _check_combine(combine)
    if pool.n_classes != 2:
        raise ValueError(f"task mode needs a pool of binary trees, this one has {pool.n_classes} classes")
    E = pool.n_trees
    if E == 0:
        raise ValueError("the pool has no experts")
    w = np.ascontiguousarray(w_row, dtype=np.float64)
    if w.shape != (E,) or not np.isfinite(w).all():
        raise ValueError(f"w_row must be {E} finite router weights, got shape {w.shape}")
    xv = pool.check_x(x)
    if not isinstance(y, (int, np.integer)) or isinstance(y, bool) or not -1 <= y < E:
        raise ValueError(f"y must be -1 (unlabelled) or an expert/class index in [0, {E}), got {y!r}")
    P = np.zeros((E, 2))
    res = TaskStepResult(np.zeros(E), -1, 0, np.zeros(E), np.zeros(E))
    res.y_pred, res.expert = (int(v) for v in _task_kernel(
        pool.arrays, pool.hp, w, xv, int(y), mixture, P, res.proba, res.mask, res.p_mine,
        np.zeros(E, dtype=np.int64), np.zeros(E, dtype=np.int64), np.zeros(4), np.zeros(2, dtype=np.int64)))
    pool._ensure_room()
    return res


inner_only(_argmax_first, router_target, normalise_row, _top_k_into)
