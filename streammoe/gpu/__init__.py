"""Parallel kernels for tree pools and keyed models: CPU threads (Numba) or CUDA (Numba-CUDA).

* :class:`~streammoe.gpu.keyed.KeyedDriftMoE` — many independent DriftMoE models (one per key)
  learned together, one launch for all their trees per router window;
* :mod:`~streammoe.gpu.tree_window` — the exact "trees in parallel inside a router window"
  decomposition and its CPU driver;
* :mod:`~streammoe.gpu.cuda_trees` — the same tree code compiled for CUDA (imported on demand,
  since importing ``numba.cuda`` decides once whether the simulator is used);
* :mod:`~streammoe.gpu.backend` — ``device='cpu'|'cuda'|'auto'`` resolution with a clear
  fallback message.

Nothing here imports river, so these modules also run where only NumPy and Numba(-CUDA) are
installed (a GPU box).
"""
from .backend import DEVICES, CudaUnavailableWarning, cuda_available, resolve_device
from .keyed import KeyedDriftMoE, KeyedResult

__all__ = ["DEVICES", "CudaUnavailableWarning", "KeyedDriftMoE", "KeyedResult", "cuda_available",
           "resolve_device"]
