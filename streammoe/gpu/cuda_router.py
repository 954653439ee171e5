"""The routers' forward pass on the GPU, one block per event, equal to the CPU pass bit for bit.

One block of threads (one per hidden unit) per event on the GPU; the simulator, which pays per
block, gives each block a run of events instead.

Why it can be exact: :func:`streammoe.routers.mlp._forward` fixes the order of operations —
each hidden unit starts from its bias and adds ``w * x`` input by input, skipping zero inputs,
in the router's float type.  A thread per hidden unit does exactly that here; with
``fastmath=False`` and no fused multiply-add (see :mod:`streammoe.gpu.cuda_trees`), IEEE
multiplies and adds round the same way on both sides.  Rows are gathered by key, so a block
reads its key's weights (stacked on a leading key axis) from cache.

The stacked weights stay on the device between windows; :class:`DeviceRouters` re-sends only
the routers that trained.
"""
from __future__ import annotations

import numpy as np
from numba import cuda

from .backend import is_simulator
from .cuda_trees import _jit_options, _no_fma

__all__ = ["DeviceRouters"]


@cuda.jit(device=True, **_jit_options())
def _unit(WT, b, key, src, i, j):  # pragma: no cover
    """Unit ``j`` of row ``i`` of one layer: its bias, then ``w * a`` input by input in order,
    skipping zero inputs (the order of :func:`streammoe.routers.mlp._forward`)."""
    acc = b[key, j]
    for k in range(src.shape[1]):
        a = src[i, k]
        if a != 0.0:
            acc += WT[key, k, j] * a
    return acc


@cuda.jit(**_jit_options())
def _forward_kernel(W1T, b1, W2T, b2, W3T, b3, rowkey, X, H1, H2, out, rows_per_block):  # pragma: no cover
    j = cuda.threadIdx.x
    first = cuda.blockIdx.x * rows_per_block
    for i in range(first, min(first + rows_per_block, X.shape[0])):
        key = rowkey[i]
        if j < H1.shape[1]:
            H1[i, j] = _unit(W1T, b1, key, X, i, j)
            if H1[i, j] < 0.0:
                H1[i, j] = 0.0
        cuda.syncthreads()
        if j < H2.shape[1]:
            H2[i, j] = _unit(W2T, b2, key, H1, i, j)
            if H2[i, j] < 0.0:
                H2[i, j] = 0.0
        cuda.syncthreads()
        if j < out.shape[1]:
            out[i, j] = _unit(W3T, b3, key, H2, i, j)


class DeviceRouters:
    """Device copies of stacked forward weights ``[W1T, b1, W2T, b2, W3T, b3]`` (key axis first)."""

    def __init__(self, host: list[np.ndarray]):
        self.host = host
        self.dev = [cuda.to_device(np.ascontiguousarray(a)) for a in host]

    def update(self, keys: np.ndarray) -> None:
        """Re-send the weights of ``keys`` (all of them at once when many changed)."""
        if len(keys) * 4 > self.host[0].shape[0]:
            for d, h in zip(self.dev, self.host):
                d.copy_to_device(h)
            return
        for key in keys:
            for d, h in zip(self.dev, self.host):
                d[int(key)].copy_to_device(h[int(key)])

    def logits(self, rowkey: np.ndarray, X: np.ndarray) -> np.ndarray:
        """Logits of rows ``X`` (already in the weights' float type), row i with key ``rowkey[i]``."""
        m = X.shape[0]
        dt = self.host[0].dtype
        E, h1n, h2n = self.host[5].shape[1], self.host[1].shape[1], self.host[3].shape[1]
        out = np.empty((m, E), dtype=dt)
        if m == 0:
            return out
        threads = max(h1n, h2n, E)
        rows = 1
        if is_simulator():  # the simulator pays per thread and per block, not per row
            rows = 64
        else:  # whole warps on hardware
            threads = -(-threads // 32) * 32
        d_out = cuda.device_array((m, E), dtype=dt)
        H1 = cuda.device_array((m, h1n), dtype=dt)
        H2 = cuda.device_array((m, h2n), dtype=dt)
        with _no_fma():
            _forward_kernel[-(-m // rows), threads](*self.dev, cuda.to_device(np.ascontiguousarray(rowkey)),
                                                    cuda.to_device(np.ascontiguousarray(X)), H1, H2, d_out, rows)
        d_out.copy_to_host(out)
        return out
