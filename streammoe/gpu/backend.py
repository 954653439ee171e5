"""Where the array kernels run: ``'cpu'``, ``'cuda'`` or ``'auto'``.

Why a module of its own: importing ``numba.cuda`` is slow-ish and, without a driver, it can
only tell that CUDA is missing when asked; CuPy may be absent altogether.  Every GPU entry
point asks :func:`resolve_device` once, and a missing GPU is never an error: the CPU path
computes the same results, so the caller gets it with a warning that says why.

``NUMBA_ENABLE_CUDASIM=1`` (set before ``numba.cuda`` is first imported) makes Numba's CUDA
simulator stand in for a GPU: ``'cuda'`` then runs the CUDA kernels as Python, which is how
the test suite checks them on machines without a GPU.
"""
from __future__ import annotations

import functools
import os
import warnings

__all__ = ["DEVICES", "CudaUnavailableWarning", "cuda_status", "cuda_available", "cupy_available",
           "is_simulator", "resolve_device"]

DEVICES = ("cpu", "cuda", "auto")


class CudaUnavailableWarning(UserWarning):
    """``device='cuda'`` was asked for but CUDA cannot run here; the CPU path runs instead."""


def is_simulator() -> bool:
    """True when Numba's CUDA simulator replaces the GPU (``NUMBA_ENABLE_CUDASIM=1``)."""
    return os.environ.get("NUMBA_ENABLE_CUDASIM", "0") not in ("", "0")


@functools.lru_cache(maxsize=1)
def cuda_status() -> tuple[bool, str]:
    """``(usable, reason)``: can Numba-CUDA kernels run here, and if not, why not."""
    try:
        from numba import cuda
    except Exception as exc:  # numba built without CUDA support, or a broken install
        return False, f"numba.cuda cannot be imported ({exc})"
    try:
        if cuda.is_available():
            return True, "CUDA simulator" if is_simulator() else "CUDA device"
        return False, "no CUDA driver or GPU was found (numba.cuda.is_available() is False)"
    except Exception as exc:
        return False, f"CUDA initialisation failed ({exc})"


def cuda_available() -> bool:
    return cuda_status()[0]


@functools.lru_cache(maxsize=1)
def cupy_available() -> bool:
    """True when CuPy imports and sees a real GPU (never in the simulator)."""
    if is_simulator():
        return False
    try:
        import cupy

        return cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:
        return False


def resolve_device(device: str) -> str:
    """Map ``'cpu'``/``'cuda'``/``'auto'`` to the device that will really run: ``'cpu'`` or ``'cuda'``.

    ``'auto'`` picks CUDA when it works, silently otherwise; an explicit ``'cuda'`` that cannot
    run falls back to the CPU with a :class:`CudaUnavailableWarning` naming the reason.
    """
    if device not in DEVICES:
        raise ValueError(f"device must be one of {DEVICES}, got {device!r}")
    if device == "cpu":
        return "cpu"
    ok, reason = cuda_status()
    if ok:
        return "cuda"
    if device == "cuda":
        warnings.warn(f"device='cuda' asked for, but {reason}; running on the CPU instead "
                      "(same results, CPU speed)", CudaUnavailableWarning, stacklevel=2)
    return "cpu"
