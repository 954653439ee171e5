"""Compiled forward pass and standardiser update of the neural experts (:mod:`streammoe.experts.neural`).

Why compiled: an expert's per-event forward pass is a dozen tiny array operations, each paying NumPy's
call overhead; one Numba call does the whole pass.

The same kernel computes the gate for the per-event prediction and for the rows of a training
micro-batch, so both always agree on which units are active (sums run in a fixed loop order).
Gate rule (documented in the expert): the ``top_k`` units with the largest self-activation
(``|a.h|`` for rank-1 units, ``||A_unit h||^2`` for blocks), ties to the lower index; if none of
them is trainable while some unit is, the last chosen one gives its place to the most activated
trainable unit.
"""
from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True)
def forward_rows(X, mean, inv_std, clip, W1, b1, Wo, bo, A, B, frozen, top_k, block, logits, mask):
    """Fill ``logits`` (n, C) and ``mask`` (n, U) for the rows of ``X`` (n, d)."""
    n, d = X.shape
    H = W1.shape[0]
    C = Wo.shape[0]
    U = frozen.shape[0]
    k = min(top_k, U)
    z = np.empty(d)
    h = np.empty(H)
    s = np.empty(U * block)
    score = np.empty(U)
    any_trainable = False
    for u in range(U):
        if not frozen[u]:
            any_trainable = True
    for i in range(n):
        for j in range(d):
            v = (X[i, j] - mean[j]) * inv_std[j]
            z[j] = min(max(v, -clip), clip)
        for a in range(H):
            acc = b1[a]
            for j in range(d):
                acc += W1[a, j] * z[j]
            h[a] = acc if acc > 0.0 else 0.0
        for c in range(C):
            acc = bo[c]
            for a in range(H):
                acc += Wo[c, a] * h[a]
            logits[i, c] = acc
        if U == 0:
            continue
        for r in range(U * block):
            acc = 0.0
            for a in range(H):
                acc += A[r, a] * h[a]
            s[r] = acc
        for u in range(U):
            mask[i, u] = False
            if block == 1:
                score[u] = abs(s[u])
            else:
                acc = 0.0
                for r in range(u * block, (u + 1) * block):
                    acc += s[r] * s[r]
                score[u] = acc
        if k >= U:
            for u in range(U):
                mask[i, u] = True
        else:
            last = -1
            has_trainable = False
            for _ in range(k):
                best = -1
                for u in range(U):
                    if not mask[i, u] and (best < 0 or score[u] > score[best]):
                        best = u
                mask[i, best] = True
                last = best
                if not frozen[best]:
                    has_trainable = True
            if any_trainable and not has_trainable:
                best = -1
                for u in range(U):
                    if not frozen[u] and (best < 0 or score[u] > score[best]):
                        best = u
                mask[i, last] = False
                mask[i, best] = True
        for u in range(U):
            if mask[i, u]:
                for r in range(u * block, (u + 1) * block):
                    for c in range(C):
                        logits[i, c] += s[r] * B[r, c]


@njit(cache=True)
def softmax_row(z, out):
    m = z[0]
    for c in range(1, z.shape[0]):
        if z[c] > m:
            m = z[c]
    total = 0.0
    for c in range(z.shape[0]):
        out[c] = np.exp(z[c] - m)
        total += out[c]
    for c in range(z.shape[0]):
        out[c] /= total


@njit(cache=True)
def observe(x, mean, m2, count, inv_std):
    """Welford update of per-feature mean / M2 with one row ``x`` (first ``mean.size`` values)."""
    for j in range(mean.shape[0]):
        count[j] += 1.0
        delta = x[j] - mean[j]
        mean[j] += delta / count[j]
        m2[j] += delta * (x[j] - mean[j])
        inv_std[j] = 1.0 / np.sqrt(m2[j] / count[j] + 1e-6)


#: why :func:`expert_events` returned (see :mod:`.neural_window`)
STOP_END, STOP_STEP, STOP_GROW = 0, 1, 2


@njit(cache=True)
def expert_events(X, Y, learn, start, stop, nf, has_steps, observe_base, mean, m2, count, inv_std, clip,
                  W1, b1, Wo, bo, A, B, frozen, top_k, block, usage, age, keep, add, buf, buf_n, batch,
                  P, errs, err_at, logits, mask, proba):
    """One neural expert over events ``start..stop-1`` of a router window: the common path of
    ``AdapterMixtureExpert.predict_proba`` followed, where ``learn[i]``, by ``learn``.

    Per event: the prediction (``P[i, :C]``, zeros before the first Adam step) from
    :func:`forward_rows` and :func:`softmax_row`, the very calls of the per-event path; for a
    learned event, its 0/1 error (recorded in ``errs`` / ``err_at`` for the drift detector, which
    the caller feeds afterwards), the units' decayed activation rates, the standardiser update, the
    units' ages and the micro-batch buffer.  Returns ``(next event, reason, buffered, errors)``:
    it stops after a learned event that fills the buffer (an Adam step is due, ``STOP_STEP``) and
    before a learned event that would grow the expert's features or classes (``STOP_GROW``); both
    are handled by the expert's own Python methods.
    """
    n_err = 0
    C = logits.shape[1]
    U = mask.shape[1]
    for i in range(start, stop):
        if learn[i] and (X.shape[1] > nf or Y[i] >= C):
            return i, STOP_GROW, buf_n, n_err
        if has_steps:
            forward_rows(X[i:i + 1, :nf], mean, inv_std, clip, W1, b1, Wo, bo, A, B, frozen, top_k, block,
                         logits, mask)
            softmax_row(logits[0], proba)
            for c in range(C):
                P[i, c] = proba[c]
        if not learn[i]:
            continue
        if has_steps:
            best = 0
            for c in range(1, C):
                if proba[c] > proba[best]:
                    best = c
            errs[n_err] = 1.0 if best != Y[i] else 0.0
            err_at[n_err] = i
            n_err += 1
            for u in range(U):
                usage[u] *= keep
            for u in range(U):
                if mask[0, u]:
                    usage[u] += add
        if observe_base:
            observe(X[i], mean, m2, count, inv_std)
        for u in range(age.shape[0]):
            age[u] += 1
        for j in range(X.shape[1]):
            buf[buf_n, j] = X[i, j]
        buf_n += 1
        if buf_n >= batch:
            return i + 1, STOP_STEP, buf_n, n_err
    return stop, STOP_END, buf_n, n_err
