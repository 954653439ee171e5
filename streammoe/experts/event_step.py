"""One DriftMoE event in one compiled call: the per-event path of ``learn_one`` / ``predict_one``.

Why: river's ``evaluate.progressive_val_score`` (and any user loop) calls the model once per
event.  Done in Python, that is a call per expert per event (predict, validate, grow arrays...),
several times slower than river's own Hoeffding tree.  Here everything an event needs runs in
one kernel call: imputation of missing features, the router's forward pass and softmax, every
expert's prediction, the answer, the router's target mask, the top-k experts' learning, the
running statistics, and the event's row in the router's window.  Only what is rare or batched
stays in Python: growing the model (a new feature, class or expert) and the router's Adam step
at the end of a window.

Every step is the operation the Python path performs, in the same order, on the same floats:

* missing features take the running mean (``sums / counts``, 0 before any value), then the
  mean is updated with the features present (after the event, as ``FeatureSpace.observe``);
* the router's logits come from :func:`~streammoe.routers.mlp.forward_row` (the kernel behind
  ``MLPRouter.logits``) and its weights from :func:`~streammoe.routers.mlp.softmax_row`
  (NumPy's softmax, bit for bit, NumPy's ``exp`` included);
* the experts are reached through :func:`predict_tree` / :func:`learn_leaf` exactly as the
  windowed loop (:mod:`.fast_loop`) reaches them, so a tree's signature change is absorbed in
  :func:`_predict_expert` and :func:`_learn_expert` alone;
* ``learn_one`` right after ``predict_one`` of the same event routes once: the weights are
  kept with the row they were computed for and reused while the router is unchanged.

``tests/test_event_step.py`` checks predictions and saved state against the windowed path and
against the Python per-event path.  Kernels return a status first: ``INVALID`` (a feature
value NaN, infinite or beyond ``MAX_FEATURE``, checked before anything changes; the caller
then takes the Python path, which raises the precise ``ValueError``) or ``OK``.

Development note: Numba's disk cache keys a kernel by its own source file only, and these
kernels inline code from ``fast_tree.py``, ``fast_loop.py``, ``routers/mlp.py`` and
``routers/numpy_exp.py``; after editing those, delete ``streammoe/experts/__pycache__/*.nb[ic]``
(or touch this file).
"""
from __future__ import annotations

from ..features import MAX_FEATURE
from ..routers.mlp import forward_row, pairwise_sum, softmax_row
from .fast_loop import _argmax_first, _top_k_into, normalise_row, router_target
from .fast_tree import TreeArrays, argmax_or_neg, kernel, learn_leaf, needs_room, predict_tree

OK, INVALID = 0, 1
_CLASS_W = TreeArrays._fields.index("class_w")  # the kernels take the tree arrays as a plain tuple


# ------------------------------------------------------------------ the two tree operations
@kernel(inline=True)
def _predict_expert(A, hp, e, x, out, leaf, nb_arg):
    """Tree ``e``'s class probabilities for ``x`` into ``out``; remembers the leaf it reached
    (and its naive Bayes argmax) so that :func:`_learn_expert` can reuse the traversal."""
    leaf[e], nb_arg[e] = predict_tree(A, hp, e, x, out)


@kernel(inline=True)
def _learn_expert(A, hp, e, x, y, leaf, nb_arg, buf, iscratch):
    """Tree ``e`` learns ``(x, y)`` at the leaf :func:`_predict_expert` found for ``x``."""
    learn_leaf(A, hp, e, leaf[e], x, y, buf, iscratch, nb_arg[e])


# ------------------------------------------------------------------ shared steps
def work_sizes(d: int, E: int, C: int, tc: int, h1: int, h2: int) -> tuple[int, int, int]:
    """Lengths of the three work arrays (float64, int64, float32) that :func:`_views` cuts up:
    one array per dtype instead of a dozen, because every array argument costs the dispatcher
    time on every call."""
    return 2 * d + 2 * E + E * tc + C + 2 * tc, 4 * E + tc + h1 + h2, d + E + h1 + h2


@kernel(inline=True)
def _views(fw, d, C, tc, f64, i64, f32):
    """The step's scratch as views of the work arrays (layout of :func:`work_sizes`); ``xv``,
    ``last_row``, ``w`` and ``proba`` keep their values between calls (the caller reads
    ``proba``; a learn after a predict of the same row reuses ``w``)."""
    E, h1, h2 = fw[5].shape[0], fw[1].shape[0], fw[3].shape[0]
    xv, last_row, z, w = f64[0:d], f64[d:2 * d], f64[2 * d:2 * d + E], f64[2 * d + E:2 * d + 2 * E]
    o = 2 * d + 2 * E
    P = f64[o:o + E * tc].reshape((E, tc))
    o += E * tc
    proba, buf = f64[o:o + C], f64[o + C:o + C + 2 * tc]
    order, leaf, nb_arg, expert_pred = i64[0:E], i64[E:2 * E], i64[2 * E:3 * E], i64[3 * E:4 * E]
    o = 4 * E
    iscratch, idx1, idx2 = i64[o:o + tc], i64[o + tc:o + tc + h1], i64[o + tc + h1:o + tc + h1 + h2]
    rs = (f32[0:d], f32[d:d + E], f32[d + E:d + E + h1], f32[d + E + h1:d + E + h1 + h2], idx1, idx2)
    return xv, last_row, z, w, P, proba, buf, order, leaf, nb_arg, expert_pred, iscratch, rs


@kernel(inline=True)
def _route(fw, rs, temperature, exp_fn, row, strict, sums, counts, xv, z, w, reuse, last_row):
    """Feature vector ``xv`` (``row`` with NaN = missing, imputed) and router weights ``w``.

    Returns False, changing nothing of the model, when a value is invalid (any NaN when
    ``strict``: the caller vouched every feature is present).  ``w`` is kept as it is when
    ``reuse`` (the router has not changed since ``w`` was computed for ``last_row``) and ``row``
    equals ``last_row``: ``learn_one`` after ``predict_one`` of the same event routes once."""
    d = row.shape[0]
    for f in range(d):
        v = row[f]
        if v != v:
            if strict:
                return False
            xv[f] = sums[f] / counts[f] if counts[f] > 0.0 else 0.0
        elif -MAX_FEATURE <= v <= MAX_FEATURE:
            xv[f] = v
        else:
            return False
    if reuse:
        for f in range(d):
            if not row[f] == last_row[f]:  # NaN (imputed) never counts as equal
                reuse = False
                break
        if reuse:
            return True
    W1T, b1, W2T, b2, W3T, b3 = fw
    x32, logits, h1, h2, idx1, idx2 = rs
    for f in range(d):
        last_row[f] = row[f]
    for f in range(d):
        x32[f] = xv[f]  # float64 -> float32, as MLPRouter.logits casts its input
    forward_row(W1T, b1, W2T, b2, W3T, b3, x32, logits, h1, h2, idx1, idx2)
    softmax_row(logits, temperature, exp_fn, z, w)
    return True


@kernel(inline=True)
def _observe(row, y, sums, counts, class_counts):
    """The running means take the event's present features; its class is counted."""
    for f in range(row.shape[0]):
        v = row[f]
        if v == v:
            sums[f] += v
            counts[f] += 1.0
    class_counts[y] += 1.0


@kernel(inline=True)
def _prior_if_empty(proba, class_counts):
    """An answer of zeros (no expert knows anything yet) becomes the running class prior."""
    C = proba.shape[0]
    for c in range(C):
        if proba[c] > 0.0:
            return
    total = 0.0
    for c in range(C):  # counts of events: integers, so every order of addition gives this sum
        total += class_counts[c]
    for c in range(C):
        proba[c] = class_counts[c] / total if total > 0.0 else class_counts[c]


# ------------------------------------------------------------------ data mode
@kernel
def data_predict(fw, temperature, exp_fn, trees, hp, row, strict, sums, counts, k, mixture, class_counts,
                 f64, i64, f32, taken, reuse):
    """Data mode, prediction only: ``proba`` and ``(status, answering expert, argmax class)``.

    The answer is the top-1 expert's probabilities or the router-weighted mixture of the top-k
    experts', normalised; zeros become the class prior.  Nothing of the model changes."""
    xv, last_row, z, w, P, proba, buf, order, leaf, nb_arg, expert_pred, iscratch, rs = _views(
        fw, row.shape[0], class_counts.shape[0], trees[_CLASS_W].shape[2], f64, i64, f32)
    if not _route(fw, rs, temperature, exp_fn, row, strict, sums, counts, xv, z, w, reuse, last_row):
        return INVALID, -1, -1
    A = TreeArrays(*trees)
    C = proba.shape[0]
    top1 = _argmax_first(w)
    if mixture:
        _top_k_into(w, k, order, taken)
        for c in range(C):
            proba[c] = 0.0
        for j in range(k):
            e = order[j]
            _predict_expert(A, hp, e, xv, P[e], leaf, nb_arg)
            for c in range(C):
                proba[c] += w[e] * P[e, c]
        normalise_row(proba)
    else:
        _predict_expert(A, hp, top1, xv, P[top1], leaf, nb_arg)
        for c in range(C):
            proba[c] = P[top1, c]
    _prior_if_empty(proba, class_counts)
    return OK, top1, _argmax_first(proba)


@kernel
def data_learn(fw, temperature, exp_fn, trees, hp, row, strict, sums, counts, y, k, class_counts,
               usage, seen, correct, win_X, win_M, win_i, f64, i64, f32, taken, reuse):
    """Data mode, one labelled event: every expert predicts, is scored and sets the router's
    target (row ``win_i`` of ``win_M``, with the features in row ``win_i`` of ``win_X``: the
    window's next row), then the top-k experts by router weight learn.  Returns ``(status,
    top-1 expert, needs room)``."""
    xv, last_row, z, w, P, proba, buf, order, leaf, nb_arg, expert_pred, iscratch, rs = _views(
        fw, row.shape[0], class_counts.shape[0], trees[_CLASS_W].shape[2], f64, i64, f32)
    if not _route(fw, rs, temperature, exp_fn, row, strict, sums, counts, xv, z, w, reuse, last_row):
        return INVALID, -1, False
    A = TreeArrays(*trees)
    E = w.shape[0]
    for e in range(E):
        _predict_expert(A, hp, e, xv, P[e], leaf, nb_arg)
        expert_pred[e] = argmax_or_neg(P[e])
    top1 = _argmax_first(w)
    usage[top1] += 1
    win_m = win_M[win_i]
    for e in range(E):
        seen[e] += 1
        if expert_pred[e] == y:
            correct[e] += 1
        win_m[e] = 0.0
    router_target(expert_pred, y, P[:, y], win_m)
    _top_k_into(w, k, order, taken)
    for j in range(k):
        _learn_expert(A, hp, order[j], xv, y, leaf, nb_arg, buf, iscratch)
    win_x = win_X[win_i]
    for f in range(xv.shape[0]):
        win_x[f] = xv[f]
    _observe(row, y, sums, counts, class_counts)
    return OK, top1, needs_room(A, hp)


# ------------------------------------------------------------------ task mode
@kernel
def task_predict(fw, temperature, exp_fn, trees, hp, row, strict, sums, counts, mixture, class_counts,
                 f64, i64, f32, reuse):
    """Task mode, prediction only (class ``c`` is expert ``c``): the router's weights, or with
    ``mixture`` the weights times each expert's P(mine) renormalised (the weights when that is
    all zero).  Returns ``(status, top-1 expert, argmax class)``."""
    xv, last_row, z, w, P, proba, buf, order, leaf, nb_arg, expert_pred, iscratch, rs = _views(
        fw, row.shape[0], class_counts.shape[0], trees[_CLASS_W].shape[2], f64, i64, f32)
    if not _route(fw, rs, temperature, exp_fn, row, strict, sums, counts, xv, z, w, reuse, last_row):
        return INVALID, -1, -1
    A = TreeArrays(*trees)
    E = w.shape[0]
    top1 = _argmax_first(w)
    tot = 0.0
    if mixture:
        for e in range(E):
            _predict_expert(A, hp, e, xv, P[e], leaf, nb_arg)
            proba[e] = w[e] * P[e, 1]
        tot = pairwise_sum(proba, E)
    if tot > 0.0:
        for e in range(E):
            proba[e] = proba[e] / tot
    else:
        for e in range(E):
            proba[e] = w[e]
    return OK, top1, _argmax_first(proba)


@kernel
def task_learn(fw, temperature, exp_fn, trees, hp, row, strict, sums, counts, y, class_counts,
               usage, seen, correct, win_X, win_M, win_i, f64, i64, f32, reuse):
    """Task mode, one labelled event: every one-vs-rest expert predicts and is scored (right
    when it says "mine" exactly for its own class), the target is expert ``y``, and every expert
    learns ``(x, e == y)``.  Returns ``(status, top-1 expert, needs room)``."""
    xv, last_row, z, w, P, proba, buf, order, leaf, nb_arg, expert_pred, iscratch, rs = _views(
        fw, row.shape[0], class_counts.shape[0], trees[_CLASS_W].shape[2], f64, i64, f32)
    if not _route(fw, rs, temperature, exp_fn, row, strict, sums, counts, xv, z, w, reuse, last_row):
        return INVALID, -1, False
    A = TreeArrays(*trees)
    E = w.shape[0]
    for e in range(E):
        _predict_expert(A, hp, e, xv, P[e], leaf, nb_arg)
    top1 = _argmax_first(w)
    usage[top1] += 1
    win_m = win_M[win_i]
    for e in range(E):
        says_mine = (P[e, 0] + P[e, 1] > 0.0) and P[e, 1] > P[e, 0]
        seen[e] += 1
        if says_mine == (e == y):
            correct[e] += 1
        win_m[e] = 0.0
    win_m[y] = 1.0
    for e in range(E):
        _learn_expert(A, hp, e, xv, 1 if e == y else 0, leaf, nb_arg, buf, iscratch)
    win_x = win_X[win_i]
    for f in range(xv.shape[0]):
        win_x[f] = xv[f]
    _observe(row, y, sums, counts, class_counts)
    return OK, top1, needs_room(A, hp)
