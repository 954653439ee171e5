"""Device code: the tree pool and router kernels compiled for CUDA (Numba-CUDA), CuPy, and the choice of device.

* :mod:`~streammoe.gpu.cuda_trees` — the tree code of :mod:`streammoe.experts.fast_tree`
  compiled a second time for CUDA (imported on demand, since importing ``numba.cuda`` decides
  once whether the simulator is used);
* :mod:`~streammoe.gpu.cuda_router` — the routers' forward pass on the device;
* :mod:`~streammoe.gpu.backend` — ``device='cpu'|'cuda'|'auto'`` resolution with a clear
  fallback message.

The keyed models that drive these kernels (and their CPU twins) live in :mod:`streammoe.keyed`.
Nothing here imports river, so these modules also run where only NumPy and Numba(-CUDA) are
installed (a GPU box).
"""
from .backend import DEVICES, CudaUnavailableWarning, cuda_available, resolve_device

__all__ = ["DEVICES", "CudaUnavailableWarning", "cuda_available", "resolve_device", "KeyedDriftMoE", "KeyedResult"]


def __getattr__(name: str):
    # ``streammoe.gpu.KeyedDriftMoE`` was the old home of the keyed model; kept as an alias.
    if name in ("KeyedDriftMoE", "KeyedResult"):
        from .. import keyed

        return getattr(keyed, name)
    raise AttributeError(f"module 'streammoe.gpu' has no attribute {name!r}")
