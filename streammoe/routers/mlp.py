"""The DriftMoE router: a small MLP ``d -> hidden -> hidden/2 -> E`` trained online.

Written in NumPy (float32, torch's default precision, as in the reference) rather than torch
because the router must *grow* while the stream runs (new features add input columns, new
classes add experts in task mode), its state must serialise without pickle, and its forward pass
over a frozen window must be a single batched matrix product.  The maths is the reference model's: ReLU, dropout 0.2
during training, Xavier-uniform init, BCE-with-logits against a multi-hot target, Adam
(torch's update rule, bias-corrected).  ``tests/test_router.py`` checks the gradients and
the Adam step against torch autograd.
"""
from __future__ import annotations

import numpy as np
from numba import njit
from threadpoolctl import ThreadpoolController

from ..experts.fast_tree import kernel
from ..state.codec import pack_arrays, unpack_arrays
from .numpy_exp import numpy_exp

_LAYERS = ("W1", "b1", "W2", "b2", "W3", "b3")


DTYPE = np.float32

#: BLAS threads fight over tiny matrices (and over the cores the stream loop runs on): the
#: router's window step is ~10x faster on one BLAS thread on a busy 2-core machine.
_BLAS = ThreadpoolController()


def _xavier(rng: np.random.Generator, fan_out: int, fan_in: int) -> np.ndarray:
    bound = np.sqrt(6.0 / (fan_in + fan_out)) if fan_in + fan_out else 0.0
    return rng.uniform(-bound, bound, size=(fan_out, fan_in)).astype(DTYPE)


def softmax(z: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Row-wise softmax of ``z / temperature`` (numerically stable)."""
    z = np.asarray(z, dtype=np.float64) / temperature
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


@njit(cache=True, nogil=True)
def _active(h, idx):  # pragma: no cover - compiled
    """``idx[:count]`` = the units of ``h`` that pass the ReLU (``not h <= 0``: positive, or NaN,
    which ``max(h, 0)`` would keep), in order; returns ``count``.  Branch-free: whether a unit is
    active is a coin toss to the CPU, and a mispredicted branch per unit cost more than its sum."""
    count = 0
    for k in range(h.shape[0]):
        idx[count] = k
        count += not (h[k] <= 0.0)
    return count


@njit(cache=True, nogil=True)
def _accumulate(acc, WT, h, idx, count):  # pragma: no cover - compiled
    """``acc[j] += WT[k, j] * h[k]`` for the listed inputs ``k`` in order, eight inputs per pass
    over ``acc`` (each ``acc[j]`` still gets the eight products added one after another, in input
    order: the same operations as eight separate passes, with an eighth of the loads and stores)."""
    m = acc.shape[0]
    t = 0
    while t + 8 <= count:
        k0, k1, k2, k3 = idx[t], idx[t + 1], idx[t + 2], idx[t + 3]
        k4, k5, k6, k7 = idx[t + 4], idx[t + 5], idx[t + 6], idx[t + 7]
        a0, a1, a2, a3 = h[k0], h[k1], h[k2], h[k3]
        a4, a5, a6, a7 = h[k4], h[k5], h[k6], h[k7]
        w0, w1, w2, w3 = WT[k0], WT[k1], WT[k2], WT[k3]
        w4, w5, w6, w7 = WT[k4], WT[k5], WT[k6], WT[k7]
        for j in range(m):
            s = acc[j] + w0[j] * a0
            s = s + w1[j] * a1
            s = s + w2[j] * a2
            s = s + w3[j] * a3
            s = s + w4[j] * a4
            s = s + w5[j] * a5
            s = s + w6[j] * a6
            acc[j] = s + w7[j] * a7
        t += 8
    while t < count:
        k = idx[t]
        a = h[k]
        w = WT[k]
        for j in range(m):
            acc[j] += w[j] * a
        t += 1


@kernel(inline=True)
def forward_row(W1T, b1, W2T, b2, W3T, b3, x, o, h1, h2, idx1, idx2):  # pragma: no cover - compiled
    """Evaluation-mode logits ``o`` of one float32 row ``x`` in a fixed order of operations.

    Each unit starts at its bias and adds ``w * x`` over its inputs in input order, skipping the
    inputs that are zero (adding ``w * 0`` changes nothing); the loops run over outputs innermost,
    so they vectorise without reassociating any sum (no FMA, no reordering).  A row's logits
    therefore never depend on how many rows are in the batch — unlike BLAS, whose kernels change
    with the matrix size — so a window computed at once equals the same events one by one, bit
    for bit, and equals the compiled per-event step, which calls this directly.  The active
    hidden units are listed first (:func:`_active`), so the skipping costs no unpredictable
    branch.  ``h1``, ``h2``, ``idx1``, ``idx2``: scratch of the hidden layers' widths.
    """
    h1n, h2n, E = b1.shape[0], b2.shape[0], b3.shape[0]
    for j in range(h1n):
        h1[j] = b1[j]
    for k in range(x.shape[0]):
        a = x[k]
        if a != 0.0:
            w = W1T[k]
            for j in range(h1n):
                h1[j] += w[j] * a
    for j in range(h2n):
        h2[j] = b2[j]
    _accumulate(h2, W2T, h1, idx1, _active(h1, idx1))
    for e in range(E):
        o[e] = b3[e]
    _accumulate(o, W3T, h2, idx2, _active(h2, idx2))


@njit(cache=True, nogil=True)
def _forward(W1T, b1, W2T, b2, W3T, b3, X, out):  # pragma: no cover - compiled
    """Evaluation-mode logits of every row of ``X`` (:func:`forward_row`, one row at a time)."""
    h1 = np.empty(b1.shape[0], dtype=b1.dtype)
    h2 = np.empty(b2.shape[0], dtype=b2.dtype)
    idx1 = np.empty(b1.shape[0], dtype=np.int64)
    idx2 = np.empty(b2.shape[0], dtype=np.int64)
    for i in range(X.shape[0]):
        forward_row(W1T, b1, W2T, b2, W3T, b3, X[i], out[i], h1, h2, idx1, idx2)


#: the longest vector :func:`pairwise_sum` adds in NumPy's order (NumPy's block size)
PAIRWISE_MAX = 128


@kernel(inline=True)
def pairwise_sum(a, n):  # pragma: no cover - compiled
    """``a[:n].sum()`` with NumPy's own order of additions for ``n <= PAIRWISE_MAX`` (its pairwise
    summation of a contiguous float64 vector: eight running sums in one block), so a compiled
    softmax divides by exactly the sum NumPy's ``softmax`` divides by.  (Longer vectors, which
    NumPy splits in halves, are not supported: the callers check.)"""
    if n < 8:
        res = 0.0
        for i in range(n):
            res += a[i]
        return res
    r0, r1, r2, r3, r4, r5, r6, r7 = a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7]
    i = 8
    while i < n - (n % 8):
        r0 += a[i]
        r1 += a[i + 1]
        r2 += a[i + 2]
        r3 += a[i + 3]
        r4 += a[i + 4]
        r5 += a[i + 5]
        r6 += a[i + 6]
        r7 += a[i + 7]
        i += 8
    res = ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7))
    while i < n:
        res += a[i]
        i += 1
    return res


@kernel(inline=True)
def softmax_row(logits, temperature, exp_fn, z, w):  # pragma: no cover - compiled
    """``w = softmax(logits / temperature)`` for one row, with the operations of :func:`softmax`
    (float64 division, the max subtracted, NumPy's own ``exp`` through ``exp_fn`` — see
    :mod:`.numpy_exp` — and NumPy's summation order): equal to it bit for bit."""
    E = logits.shape[0]
    for e in range(E):
        z[e] = np.float64(logits[e]) / temperature
    m = z[0]
    for e in range(1, E):
        if z[e] > m:
            m = z[e]
    for e in range(E):
        z[e] = z[e] - m
    numpy_exp(exp_fn, z, w)
    s = pairwise_sum(w, E)
    for e in range(E):
        w[e] = w[e] / s


@njit(cache=True, nogil=True)
def _relu_dropout(a, d, h, dm):  # pragma: no cover - compiled
    """One pass for a training layer: ``dm = d * (a > 0)`` (dropout times the ReLU's derivative)
    and ``h = a * dm`` (the layer's output), the same products numpy would form."""
    a_, d_, h_, m_ = a.ravel(), d.ravel(), h.ravel(), dm.ravel()
    zero = a_.dtype.type(0.0)
    for i in range(a_.shape[0]):
        if a_[i] > zero:
            m_[i] = d_[i]
            h_[i] = a_[i] * d_[i]
        else:
            m_[i] = zero
            h_[i] = a_[i] * zero


@njit(cache=True, nogil=True)
def _relu_dropout_bits(a, bits, threshold, scale, h, dm):  # pragma: no cover - compiled
    """:func:`_relu_dropout` with the dropout mask made on the fly from the generator's 16-bit
    uniforms (``scale`` where ``bits < threshold``, else 0: the values :meth:`MLPRouter._dropout_mask`
    gives), so the mask array is never built."""
    a_, h_, m_ = a.ravel(), h.ravel(), dm.ravel()
    zero = a_.dtype.type(0.0)
    for i in range(a_.shape[0]):
        d = scale if bits[i] < threshold else zero
        if a_[i] > zero:
            m_[i] = d
            h_[i] = a_[i] * d
        else:
            m_[i] = zero
            h_[i] = a_[i] * zero


# error_model="numpy": no Python zero-division check inside the loop, so it vectorises; the divisor
# is always > 0 and each element gets the same IEEE operations as before.
@njit(cache=True, nogil=True, error_model="numpy")
def _adam(param, m, v, g, beta1, beta2, step_size, sqrt_c2, eps):  # pragma: no cover - compiled
    """torch.optim.Adam's update for one float32 tensor, fused into one pass (same operations)."""
    p_, m_, v_, g_ = param.ravel(), m.ravel(), v.ravel(), g.ravel()
    one = np.float32(1.0)
    for i in range(p_.shape[0]):
        gi = g_[i]
        mi = m_[i] * beta1 + (one - beta1) * gi
        vi = v_[i] * beta2 + (one - beta2) * gi * gi
        m_[i] = mi
        v_[i] = vi
        p_[i] = p_[i] - step_size * (mi / (np.sqrt(vi) / sqrt_c2 + eps))


class MLPRouter:
    """Online MLP router.  ``logits`` is pure (no state change); ``train_step`` is one Adam step."""

    def __init__(self, n_inputs: int, n_outputs: int, hidden: int = 256, lr: float = 2e-3,
                 dropout: float = 0.2, seed: int = 42, betas=(0.9, 0.999), eps: float = 1e-8):
        self.hidden, self.lr, self.dropout = int(hidden), float(lr), float(dropout)
        self.beta1, self.beta2, self.eps = float(betas[0]), float(betas[1]), float(eps)
        self.rng = np.random.Generator(np.random.PCG64(seed))
        h1, h2 = self.hidden, max(1, self.hidden // 2)
        self.params = {
            "W1": _xavier(self.rng, h1, n_inputs), "b1": np.zeros(h1, DTYPE),
            "W2": _xavier(self.rng, h2, h1), "b2": np.zeros(h2, DTYPE),
            "W3": _xavier(self.rng, n_outputs, h2), "b3": np.zeros(n_outputs, DTYPE),
        }
        self.m = {k: np.zeros_like(v) for k, v in self.params.items()}
        self.v = {k: np.zeros_like(v) for k, v in self.params.items()}
        self.steps = 0
        self._fwd = None  # transposed weights for the compiled forward pass, rebuilt after each change

    # -- shape -------------------------------------------------------------------------
    @property
    def n_inputs(self) -> int:
        return self.params["W1"].shape[1]

    @property
    def n_outputs(self) -> int:
        return self.params["W3"].shape[0]

    def add_inputs(self, k: int) -> None:
        """Add ``k`` input columns (new features), Xavier-drawn for the new fan-in; moments start at 0."""
        if k <= 0:
            return
        p = self.params
        new = _xavier(self.rng, p["W1"].shape[0], self.n_inputs + k)[:, :k]
        p["W1"] = np.ascontiguousarray(np.concatenate([p["W1"], new], axis=1))
        self._fwd = None
        for buf in (self.m, self.v):
            buf["W1"] = np.concatenate([buf["W1"], np.zeros((p["W1"].shape[0], k), DTYPE)], axis=1)

    def add_outputs(self, k: int) -> None:
        """Add ``k`` experts (task mode grows one per new class)."""
        if k <= 0:
            return
        p = self.params
        new = _xavier(self.rng, self.n_outputs + k, p["W3"].shape[1])[:k]
        p["W3"] = np.concatenate([p["W3"], new], axis=0)
        p["b3"] = np.concatenate([p["b3"], np.zeros(k, DTYPE)])
        self._fwd = None
        for buf in (self.m, self.v):
            buf["W3"] = np.concatenate([buf["W3"], np.zeros((k, p["W3"].shape[1]), DTYPE)], axis=0)
            buf["b3"] = np.concatenate([buf["b3"], np.zeros(k, DTYPE)])

    def remove_output(self, e: int) -> None:
        """Drop expert ``e``'s output unit (a pruned expert), with its optimiser moments."""
        self._fwd = None
        for buf in (self.params, self.m, self.v):
            buf["W3"] = np.delete(buf["W3"], e, axis=0)
            buf["b3"] = np.delete(buf["b3"], e)

    # -- forward -----------------------------------------------------------------------
    def logits(self, X: np.ndarray) -> np.ndarray:
        """Evaluation-mode logits (no dropout) for a batch ``X`` of shape ``(n, n_inputs)``.

        Row-wise exact: ``logits(X)[i]`` equals ``logits(X[i:i+1])[0]`` bit for bit.
        """
        X = np.ascontiguousarray(X, dtype=DTYPE)
        if X.ndim != 2 or X.shape[1] != self.n_inputs:
            raise ValueError(f"router expects rows of {self.n_inputs} features, got shape {X.shape}")
        out = np.empty((X.shape[0], self.n_outputs), DTYPE)
        _forward(*self.forward_weights(), X, out)
        return out

    def forward_weights(self) -> tuple:
        """The weights as the compiled forward pass takes them (``W1.T, b1, W2.T, b2, W3.T, b3``),
        cached until the next change."""
        fwd = self._fwd
        if fwd is None:
            p = self.params
            fwd = self._fwd = (np.ascontiguousarray(p["W1"].T), p["b1"].copy(), np.ascontiguousarray(p["W2"].T),
                               p["b2"].copy(), np.ascontiguousarray(p["W3"].T), p["b3"].copy())
        return fwd

    # -- learning ----------------------------------------------------------------------
    def _dropout_mask(self, shape) -> np.ndarray:
        """Inverted-dropout mask: each unit kept with probability ``1 - dropout`` (to 1/65536).

        Four 16-bit uniforms come out of each raw 64-bit draw of the generator, which makes the
        masks several times cheaper than float draws; the kept units are scaled by the exact
        inverse of the realised keep probability, so the layer stays unbiased.
        """
        if self.dropout <= 0.0:
            return np.ones(shape, DTYPE)
        u16, threshold, scale = self._dropout_bits(shape)
        return ((u16 < threshold) * scale).reshape(shape)

    def _dropout_bits(self, shape) -> tuple[np.ndarray, int, np.float32]:
        """The draws behind :meth:`_dropout_mask`: 16-bit uniforms, keep threshold, scale of kept units."""
        size = int(np.prod(shape))
        raw = self.rng.bit_generator.random_raw((size + 3) // 4)
        # a view, not a copy: the same bytes as before, and a writable native array the compiled
        # layer kernel takes without Numba's slow typing path for read-only buffers
        u16 = np.ascontiguousarray(raw, dtype="<u8").view("<u2")[:size]
        threshold = int(round((1.0 - self.dropout) * 65536))
        return u16, threshold, DTYPE(65536.0 / threshold)

    def _train_layer(self, a: np.ndarray, mask) -> tuple[np.ndarray, np.ndarray]:
        """Output ``h`` and derivative ``dm`` of a training layer: with the given ``mask`` (array),
        or with one drawn now from the router's generator (``mask=None``)."""
        h, dm = np.empty_like(a), np.empty_like(a)
        if mask is not None:
            _relu_dropout(a, np.ascontiguousarray(mask, dtype=DTYPE), h, dm)
        elif self.dropout <= 0.0:
            _relu_dropout(a, np.ones(a.shape, DTYPE), h, dm)
        else:
            bits, threshold, scale = self._dropout_bits(a.shape)
            _relu_dropout_bits(a, bits, np.int64(threshold), scale, h, dm)
        return h, dm

    def gradients(self, X: np.ndarray, M: np.ndarray, masks=None, want_loss: bool = True):
        """Loss and gradients of mean BCE-with-logits(logits(X) with dropout, M).

        ``masks`` (two dropout masks) may be given to make the computation reproducible
        outside the router (the torch cross-check); otherwise they are drawn from the router's RNG
        (both before the forward pass's products, in the same order as :meth:`_dropout_mask`).
        ``want_loss=False`` skips the loss (``nan`` is returned): the gradients do not need it.
        """
        p = self.params
        X = np.asarray(X, dtype=DTYPE)
        M = np.asarray(M, dtype=DTYPE)
        a1 = X @ p["W1"].T + p["b1"]
        h1, d1 = self._train_layer(a1, None if masks is None else masks[0])
        a2 = h1 @ p["W2"].T + p["b2"]
        h2, d2 = self._train_layer(a2, None if masks is None else masks[1])
        z = h2 @ p["W3"].T + p["b3"]
        # BCE with logits, mean over all n*E entries (torch's default reduction)
        loss = float(np.mean(np.maximum(z, 0) - z * M + np.log1p(np.exp(-np.abs(z))))) if want_loss else float("nan")
        with np.errstate(over="ignore"):  # exp(-z) = inf gives sigmoid 0, the right limit
            gz = (DTYPE(1.0) / (DTYPE(1.0) + np.exp(-z)) - M) / DTYPE(z.size)
        g = {"W3": gz.T @ h2, "b3": gz.sum(axis=0)}
        gh2 = gz @ p["W3"]
        gh2 *= d2
        g["W2"], g["b2"] = gh2.T @ h1, gh2.sum(axis=0)
        gh1 = gh2 @ p["W2"]
        gh1 *= d1
        g["W1"], g["b1"] = gh1.T @ X, gh1.sum(axis=0)
        return loss, g

    def train_step(self, X: np.ndarray, M: np.ndarray, want_loss: bool = True) -> float:
        """One Adam step on the window ``(X, M)``; returns the loss before the step (``nan`` when
        ``want_loss`` is false: the stream loop does not read it)."""
        if len(X) == 0:
            return 0.0
        with _BLAS.limit(limits=1, user_api="blas"):
            loss, grads = self.gradients(X, M, want_loss=want_loss)
            self.apply_gradients(grads)
        return loss

    def apply_gradients(self, grads) -> None:
        self._fwd = None
        self.steps += 1
        t = self.steps
        f = DTYPE
        step_size = f(self.lr / (1.0 - self.beta1 ** t))
        sqrt_c2 = f((1.0 - self.beta2 ** t) ** 0.5)
        for k in _LAYERS:
            _adam(self.params[k], self.m[k], self.v[k], np.ascontiguousarray(grads[k], dtype=DTYPE),
                  f(self.beta1), f(self.beta2), step_size, sqrt_c2, f(self.eps))

    # -- state -------------------------------------------------------------------------
    def to_state(self) -> bytes:
        arrays = {f"p_{k}": v for k, v in self.params.items()}
        arrays.update({f"m_{k}": v for k, v in self.m.items()})
        arrays.update({f"v_{k}": v for k, v in self.v.items()})
        rng_state = self.rng.bit_generator.state["state"]
        arrays["hyper"] = np.array([self.hidden, self.lr, self.dropout, self.beta1, self.beta2, self.eps],
                                   dtype=np.float64)
        arrays["steps"] = np.array([self.steps], dtype=np.int64)
        # PCG64 state is two 128-bit integers; store them as decimal strings in a uint8 array.
        arrays["rng"] = np.frombuffer(f"{rng_state['state']}:{rng_state['inc']}".encode(), dtype=np.uint8)
        return pack_arrays(arrays)

    @classmethod
    def from_state(cls, blob: bytes) -> "MLPRouter":
        a = unpack_arrays(blob)
        hidden, lr, dropout, b1, b2, eps = a["hyper"].tolist()
        router = cls.__new__(cls)
        router.hidden, router.lr, router.dropout = int(hidden), lr, dropout
        router.beta1, router.beta2, router.eps = b1, b2, eps
        router.params = {k: a[f"p_{k}"].copy() for k in _LAYERS}
        router.m = {k: a[f"m_{k}"].copy() for k in _LAYERS}
        router.v = {k: a[f"v_{k}"].copy() for k in _LAYERS}
        router.steps = int(a["steps"][0])
        router._fwd = None
        state, inc = bytes(a["rng"]).decode().split(":")
        router.rng = np.random.Generator(np.random.PCG64())
        st = router.rng.bit_generator.state
        st["state"] = {"state": int(state), "inc": int(inc)}
        st["has_uint32"], st["uinteger"] = 0, 0
        router.rng.bit_generator.state = st
        return router
