"""One Adam step for many routers at once: the keys whose window filled in the same launch.

Why batched: a keyed model trains up to thousands of routers per window, each on the same
shapes (``window`` rows, same widths).  Stacking them turns thousands of small matrix products
into a few stacked ones (``np.matmul`` over a leading batch axis, or CuPy on the GPU).

The operations are :meth:`streammoe.routers.mlp.MLPRouter.gradients`' operations, in the same
order, with the same dropout masks drawn from each router's own generator in the same order;
the Adam step is each router's own :meth:`~streammoe.routers.mlp.MLPRouter.apply_gradients`.
With NumPy, ``matmul`` hands each stacked slice to the same BLAS routine as the 2-D product,
so a router trained in a batch equals the router trained alone bit for bit (the keyed tests
check it).  With CuPy (``xp=cupy``) the products run in cuBLAS, whose summation order is not
the CPU's: fast, close, not bit-identical.
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from typing import Sequence

import numpy as np
from threadpoolctl import threadpool_limits

from ..routers.mlp import MLPRouter

__all__ = ["train_routers"]

_LAYERS = ("W1", "b1", "W2", "b2", "W3", "b3")


def _swap(a):
    return a.transpose(0, 2, 1)


def batched_gradients(params: dict, X, M, d1, d2, xp=np) -> dict:
    """Gradients of mean BCE-with-logits for a stack of routers (leading axis = router),
    computed in the routers' own float type."""
    W1, b1, W2, b2, W3, b3 = (params[k] for k in _LAYERS)
    dt = W1.dtype.type
    one = dt(1.0)
    a1 = X @ _swap(W1) + b1[:, None, :]
    h1 = xp.maximum(a1, 0.0) * d1
    a2 = h1 @ _swap(W2) + b2[:, None, :]
    h2 = xp.maximum(a2, 0.0) * d2
    z = h2 @ _swap(W3) + b3[:, None, :]
    gz = (one / (one + xp.exp(-z)) - M) / dt(z.shape[1] * z.shape[2])
    g = {"W3": _swap(gz) @ h2, "b3": gz.sum(axis=1)}
    gh2 = (gz @ W3) * d2 * (a2 > 0)
    g["W2"], g["b2"] = _swap(gh2) @ h1, gh2.sum(axis=1)
    gh1 = (gh2 @ W2) * d1 * (a1 > 0)
    g["W1"], g["b1"] = _swap(gh1) @ X, gh1.sum(axis=1)
    return g


def train_routers(routers: Sequence[MLPRouter], X: np.ndarray, M: np.ndarray, xp=np,
                  workers: int | None = None, chunk: int = 4) -> None:
    """One Adam step for ``routers[b]`` on ``(X[b], M[b])``, all routers of equal shapes.

    ``X`` is ``(B, n, d)``, ``M`` ``(B, n, E)``.  ``xp`` is ``numpy`` (exact) or ``cupy``.  With
    NumPy, chunks of ``chunk`` routers (small: big temporaries cost page faults that threads
    queue on) run on ``workers`` threads (default: one per core; BLAS and ufuncs release the
    GIL).  With CuPy, all routers' products run at once on the device while the threads draw the
    dropout masks and apply the Adam steps.  Routers never share state, so none of this changes
    a result.
    """
    B = X.shape[0]
    if B == 0 or X.shape[1] == 0:
        return
    n_threads = max(1, workers or os.cpu_count() or 1)
    with threadpool_limits(limits=1, user_api="blas"), ThreadPoolExecutor(max_workers=n_threads) as pool:
        if xp is not np:
            _train_chunk(routers, X, M, xp, pool)
            return
        parts = [slice(i, min(i + chunk, B)) for i in range(0, B, chunk)]
        for _ in pool.map(lambda s: _train_chunk(routers[s], X[s], M[s], np, None), parts):
            pass


def _masks(r: MLPRouter, n: int):
    """The two dropout masks ``gradients()`` would draw, in its order."""
    return r._dropout_mask((n, r.params["W1"].shape[0])), r._dropout_mask((n, r.params["W2"].shape[0]))


def _train_chunk(routers: Sequence[MLPRouter], X: np.ndarray, M: np.ndarray, xp, pool) -> None:
    n = X.shape[1]
    dt = routers[0].params["W1"].dtype
    each = pool.map if pool is not None else map
    masks = list(each(lambda r: _masks(r, n), routers))
    params = {k: xp.asarray(np.stack([r.params[k] for r in routers])) for k in _LAYERS}
    g = batched_gradients(params, xp.asarray(np.asarray(X, dtype=dt)), xp.asarray(np.asarray(M, dtype=dt)),
                          xp.asarray(np.stack([m[0] for m in masks])), xp.asarray(np.stack([m[1] for m in masks])),
                          xp)
    if xp is not np:
        g = {k: xp.asnumpy(v) for k, v in g.items()}

    def adam(b: int) -> None:
        routers[b].apply_gradients({k: np.ascontiguousarray(g[k][b]) for k in _LAYERS})

    for _ in each(adam, range(len(routers))):
        pass
