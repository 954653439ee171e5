"""A router window through a pool of neural experts, one compiled pass per expert.

Why this is exact: inside a window the router is frozen, so its weights ``W`` — hence which
experts learn which event (the top-k by weight) — are known for the whole window before any
expert runs.  An expert's predictions then depend only on its own history, so each expert can
run through the window on its own, strictly in event order, and the model's answers, router
targets and statistics are assembled afterwards from every expert's per-event predictions with
the same NumPy operations the per-event path uses (:class:`~streammoe.model.DriftMoE`).

Per expert, :func:`~.neural_kernels.expert_events` runs the common path of
``predict_proba`` + ``learn`` in compiled code and hands back to the expert's own Python methods
where the per-event path does something rare or heavy:

* an Adam step (a full micro-batch): the kernel stops after the event that fills the buffer and
  ``expert._step()`` runs;
* growth (the expert learns its first event with more features or classes): the kernel stops
  before it and ``expert.predict_proba`` / ``expert.learn`` handle that event;
* drift: the expert's ADWIN (a river object) is fed the recorded errors after the kernel returns,
  in order.  If it fires at the last event the kernel ran, ``expert._on_drift()`` runs there, as
  on the per-event path.  If it fires earlier, the later events were computed without the drift
  that should have preceded them: the expert's arrays are restored from a copy taken before the
  kernel ran and the kernel re-runs up to the drifting event (drifts are rare, so this costs
  nothing measurable).

``tests/test_neural_window.py`` checks predictions and saved state against the per-event path,
bit for bit, across steps, drifts, unit pruning, growth and unlabelled events.
"""
from __future__ import annotations

import numpy as np

from .fast_loop import WindowResult
from .neural import _CLIP, AdapterMixtureExpert, LoRAExpert
from .neural_kernels import STOP_GROW, STOP_STEP, expert_events

#: expert classes whose per-event methods the kernel reproduces (both flavours of the adapter mixture)
_KINDS = (AdapterMixtureExpert, LoRAExpert)
#: the expert arrays the kernel changes in place (restored when a drift splits a kernel run)
_MUTABLE = ("mean", "m2", "count", "inv_std", "unit_usage", "unit_age")


def windowed(experts: list) -> bool:
    """True when every expert of a pool can run through :func:`run_window`."""
    return bool(experts) and all(type(e) in _KINDS for e in experts)


def run_window(experts: list[AdapterMixtureExpert], W: np.ndarray, X: np.ndarray, Y: np.ndarray, top_k: int,
               combine: str, n_classes: int) -> WindowResult:
    """Prequential pass of a data-mode window (``Y[i] = -1``: unlabelled) through neural experts.

    ``W`` are the router's weights, ``X`` the model's feature vectors; returns what the tree
    engine's window kernel returns (:class:`~streammoe.experts.fast_loop.WindowResult`).
    """
    n, E = W.shape
    C = int(n_classes)
    X = np.ascontiguousarray(X, dtype=np.float64)
    Y = np.ascontiguousarray(Y, dtype=np.int64)
    k = min(int(top_k), E)
    order = np.argsort(-W, axis=1, kind="stable")[:, :k]  # the per-event path's _top_k, row by row
    lab = Y >= 0
    learns = np.zeros((E, n), dtype=np.bool_)
    for j in range(k):
        learns[order[lab, j], np.flatnonzero(lab)] = True
    P = np.zeros((n, E, C))
    for e, expert in enumerate(experts):
        if expert.frozen:  # a frozen expert ignores learn(): it only predicts
            learns[e] = False
        Pe = np.zeros((n, C))
        _run_expert(expert, X, Y, learns[e], Pe)
        P[:, e, :] = Pe
    return _assemble(P, W, Y, order, combine)


def _run_expert(ex: AdapterMixtureExpert, X: np.ndarray, Y: np.ndarray, learn: np.ndarray, Pe: np.ndarray) -> None:
    n, d = X.shape
    o = ex.options
    batch = int(o["batch"])
    a = 1.0 / o["idle_window"]
    keep = 1.0 - a
    errs = np.empty(n)
    err_at = np.empty(n, dtype=np.int64)
    buf = np.empty((batch, d))
    i = 0
    while i < n:
        Ce = ex.n_classes
        saved = {name: getattr(ex, name).copy() for name in _MUTABLE}
        buf0 = len(ex.buf_y)
        stop = n
        drifted = False
        while True:
            p = ex.p
            nxt, why, buf_n, n_err = expert_events(
                X, Y, learn, i, stop, ex.n_features, ex.n_steps > 0, not ex.base_frozen, ex.mean, ex.m2, ex.count,
                ex.inv_std, _CLIP, p["W1"], p["b1"], p["Wo"], p["bo"], p["A"], p["B"], ex.unit_frozen,
                o["top_k"], o["block"], ex.unit_usage, ex.unit_age, keep, a, buf, buf0, batch, Pe, errs, err_at,
                np.empty((1, Ce)), np.zeros((1, ex.n_units), dtype=np.bool_), np.empty(Ce))
            if drifted:  # the re-run up to the drifting event (its errors were fed already)
                break
            t = _feed_adwin(ex, errs[:n_err])
            if t is None:
                break
            drifted = True
            if err_at[t] == nxt - 1:  # the drift is at the last event run: nothing to redo
                break
            # an earlier event drifted: redo the run up to it, then the drift applies there
            for name, arr in saved.items():
                getattr(ex, name)[...] = arr
            stop = int(err_at[t]) + 1
        learned = buf_n - buf0
        if learned:
            ex.buf_x.extend(row.copy() for row in buf[buf0:buf_n])
            ex.buf_y.extend(int(y) for y in Y[i:nxt][learn[i:nxt]])
            ex.n_learned += learned
            ex.version += learned
        ex._cache_key = ex._cache = None
        if why == STOP_STEP:
            ex._step()
        if drifted:
            ex._on_drift()
        i = nxt
        if why == STOP_GROW:  # the expert's own methods handle its growth, exactly as per event
            Pe[i] = ex.predict_proba(X[i], Pe.shape[1])
            ex.learn(X[i], int(Y[i]))
            i += 1


def _feed_adwin(ex: AdapterMixtureExpert, errs: np.ndarray) -> int | None:
    """Feed recorded errors to the expert's ADWIN in order; the index of the first that signals a
    rising error (the per-event path's drift), or None."""
    adwin = ex.adwin
    for t, err in enumerate(errs.tolist()):
        before = adwin.estimation
        adwin.update(err)
        if adwin.drift_detected and adwin.estimation > before:
            return t
    return None


def _assemble(P: np.ndarray, W: np.ndarray, Y: np.ndarray, order: np.ndarray, combine: str) -> WindowResult:
    """The model-level results from every expert's predictions, with the per-event path's operations."""
    n, E, C = P.shape
    rows = np.arange(n)
    top1 = np.argmax(W, axis=1)
    if combine == "top1":
        p = P[rows, top1]
    else:
        p = np.zeros((n, C))
        for j in range(order.shape[1]):
            e = order[:, j]
            p += W[rows, e][:, None] * P[rows, e]
    s = p.sum(axis=1)
    proba = np.zeros((n, C))
    ok = s > 0
    proba[ok] = p[ok] / s[ok, None]
    known = P.sum(axis=2) > 0
    expert_pred = np.where(known, np.argmax(P, axis=2), -1)
    lab = Y >= 0
    mask = (expert_pred == Y[:, None]) & lab[:, None]
    none = lab & ~mask.any(axis=1)
    mask = mask.astype(np.float64)
    if none.any():
        idx = np.flatnonzero(none)
        mask[idx, np.argmax(P[idx, :, Y[idx]], axis=1)] = 1.0
    y_pred = np.where(ok, np.argmax(proba, axis=1), -1)
    return WindowResult(proba, y_pred, top1.astype(np.int64), mask, expert_pred.astype(np.int64))

