"""A router window with the trees in parallel: the per-tree body, its CPU driver and the post-pass.

Why this is exact.  Inside one router window the router is frozen, so the weights ``W`` of
every event are known before any tree moves, and with them the learning schedule: expert
``e`` learns event ``i`` iff ``e`` is among the top-k of ``W[i]`` and ``i`` is labelled.  An
expert's trajectory depends only on its own tree and that schedule, so each tree can walk the
window's events on its own (predict before learn, learn when scheduled) while the others do
the same in parallel.  What the sequential loop (:func:`streammoe.experts.fast_loop.run_window`)
derives from all experts at once — the model's answer, the router's target mask — is derived
afterwards from what each tree stored about its own prediction:

* ``expert_pred[i, e]``: argmax of expert e's probabilities (``-1``: knows nothing);
* ``p_true[i, e]``: its probability of the true class (labelled rows), for the mask fallback;
* ``Pk[i, r]``: the whole probability vector of the expert ranked ``r`` by ``W[i]``, for the
  ``nk`` ranks the answer needs (1 for ``'top1'``, k for ``'mixture'``).

Layout of a window of many keyed models: events are gathered so that key ``k``'s events are
the contiguous rows ``ptr[k]:ptr[k+1]`` in stream order, and tree ``t`` of the pool is expert
``t % E`` of key ``t // E``.  A single model is the case of one key.

:func:`tree_events` is plain Python so that it can be compiled twice from one source: by
``numba.njit`` here (the CPU path, ``prange`` over trees) and by ``numba.cuda.jit(device=True)``
in :mod:`streammoe.gpu.cuda_trees`.  A tree that reaches its node capacity (below its cap)
stops after the event that filled it and records how far it got; the caller grows the pool's
capacity and runs the window again, finished trees returning at once.  This is how
``run_window`` grows the pool too, so capacity never changes a result.
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange

from ..experts.fast_loop import normalise_row, router_target
from ..experts.fast_tree import HP_MAX_NODES, HP_ROOM, argmax_or_neg, kernel, learn_leaf, predict_tree
from ..routers.mlp import _forward

__all__ = ["tree_events", "run_trees_cpu", "top_k_ranks", "answer_window", "keyed_forward"]


def tree_events(A, hp, t, e, lo, hi, X, Y, rank, progress, expert_pred, p_true, Pk, P, buf, order):
    """Tree ``t`` (expert ``e`` of its key) walks rows ``lo + progress[t] .. hi - 1``.

    Returns ``True`` when it reached ``hi``; ``False`` when it stopped early because it needs
    more node capacity (``progress[t]`` says where to resume).  ``P``, ``buf`` and ``order`` are
    this tree's scratch (``C``, ``2C`` floats and ``C`` ints).
    """
    nk = Pk.shape[1]
    C = P.shape[0]
    cap = A.feature.shape[1]
    for i in range(lo + progress[t], hi):
        x = X[i]
        node, nb = predict_tree(A, hp, t, x, P)
        expert_pred[i, e] = argmax_or_neg(P)
        y = Y[i]
        if y >= 0:
            p_true[i, e] = P[y]
        r = rank[i, e]
        if r >= 0 and r < nk:
            for c in range(C):
                Pk[i, r, c] = P[c]
        if r >= 0 and y >= 0:
            learn_leaf(A, hp, t, node, x, y, buf, order, nb)
            room = A.n_nodes[t] + int(hp[HP_ROOM])  # 2, or a multiway split's children
            if room > cap and room <= hp[HP_MAX_NODES]:
                progress[t] = i + 1 - lo
                return False
    progress[t] = hi - lo
    return True


_tree_events_cpu = kernel(tree_events)


@njit(parallel=True, cache=True, nogil=True)
def _trees_cpu(A, hp, E, ptr, X, Y, rank, progress, expert_pred, p_true, Pk, P, buf, order, done):
    for t in prange(A.n_nodes.shape[0]):
        k = t // E
        done[t] = _tree_events_cpu(A, hp, t, t - k * E, ptr[k], ptr[k + 1], X, Y, rank, progress,
                                   expert_pred, p_true, Pk, P[t], buf[t], order[t])


def run_trees_cpu(pool, E, ptr, X, Y, rank, expert_pred, p_true, Pk) -> int:
    """Every tree of ``pool`` through its key's rows, trees in parallel on the CPU threads.

    Returns the number of launches (more than one when the pool had to grow).  Deterministic:
    trees never touch each other's entries, so the thread count changes nothing.
    """
    T, C = pool.n_trees, pool.n_classes
    progress = np.zeros(T, dtype=np.int64)
    done = np.zeros(T, dtype=np.bool_)
    P = np.zeros((T, C))
    buf = np.zeros((T, 2 * C))
    order = np.zeros((T, C), dtype=np.int64)
    launches = 0
    pool._ensure_room()
    while True:
        _trees_cpu(pool.arrays, pool.hp, E, ptr, X, Y, rank, progress, expert_pred, p_true, Pk,
                   P, buf, order, done)
        launches += 1
        if done.all():
            return launches
        pool._ensure_room()


@njit(cache=True, nogil=True)
def top_k_ranks(W, k):
    """``(order, rank)``: ``order[i]`` the k largest weights of row i, largest first, ties to the
    lower index (as :func:`streammoe.experts.fast_loop.top_k_order`); ``rank[i, e]`` expert e's
    place in that order or ``-1``."""
    n, E = W.shape
    order = np.empty((n, k), dtype=np.int64)
    rank = np.full((n, E), -1, dtype=np.int64)
    taken = np.zeros(E, dtype=np.bool_)
    for i in range(n):
        taken[:] = False
        for j in range(k):
            best = -1
            for e in range(E):
                if not taken[e] and (best < 0 or W[i, e] > W[i, best]):
                    best = e
            taken[best] = True
            order[i, j] = best
            rank[i, best] = j
    return order, rank


@njit(parallel=True, cache=True, nogil=True)
def answer_window(ptr, Y, W, order, expert_pred, p_true, Pk, mixture, class_counts,
                  proba, y_pred, expert, mask):
    """The model's answers and router targets from the trees' stored predictions.

    Per key, in stream order (keys in parallel): the top-1 expert's probabilities, or the
    router-weighted mixture of the top-k ones normalised to sum 1 (same operations in the same
    order as ``run_window``); where that answer is all zero (no chosen expert knows anything)
    the key's class prior so far, as ``DriftMoE`` answers; ``y_pred`` its argmax (``-1`` before
    the key has seen a label).  Labelled rows get the mask (experts whose argmax is ``y``, else
    the one giving ``y`` the highest probability) and then count in ``class_counts``.
    """
    K = ptr.shape[0] - 1
    C = proba.shape[1]
    for key in prange(K):
        for i in range(ptr[key], ptr[key + 1]):
            top1 = order[i, 0]
            expert[i] = top1
            if mixture:
                for c in range(C):
                    proba[i, c] = 0.0
                for j in range(order.shape[1]):
                    e = order[i, j]
                    for c in range(C):
                        proba[i, c] += W[i, e] * Pk[i, j, c]
                normalise_row(proba[i])
            else:
                for c in range(C):
                    proba[i, c] = Pk[i, 0, c]
            y_pred[i] = argmax_or_neg(proba[i])
            if y_pred[i] < 0:  # nobody knows anything yet: the running class prior
                total = 0.0
                for c in range(C):
                    total += class_counts[key, c]
                if total > 0.0:
                    for c in range(C):
                        proba[i, c] = class_counts[key, c] / total
                    y_pred[i] = argmax_or_neg(proba[i])
            y = Y[i]
            if y < 0:
                continue
            router_target(expert_pred[i], y, p_true[i], mask[i])
            class_counts[key, y] += 1.0


@njit(parallel=True, cache=True, nogil=True)
def keyed_forward(W1T, b1, W2T, b2, W3T, b3, ptr, X, out):
    """Router logits of every key's rows with that key's weights (stacked on axis 0).

    Calls the router's own compiled forward pass on each key's contiguous rows, so every row
    equals ``MLPRouter.logits`` of that row bit for bit; keys run in parallel.
    """
    for key in prange(ptr.shape[0] - 1):
        lo, hi = ptr[key], ptr[key + 1]
        if hi > lo:
            _forward(W1T[key], b1[key], W2T[key], b2[key], W3T[key], b3[key], X[lo:hi], out[lo:hi])
