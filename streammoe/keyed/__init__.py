"""Keyed models: one DriftMoE per key (tenant, device), thousands learned together per launch.

* :class:`~streammoe.keyed.model.KeyedDriftMoE` — many independent DriftMoE models with shared
  hyper-parameters, stacked in arrays and stepped one router window per launch;
* :mod:`~streammoe.keyed.tree_window` — the exact "trees in parallel inside a router window"
  decomposition and its CPU (``prange``) driver; :mod:`streammoe.gpu.cuda_trees` runs the same
  body on a GPU;
* :mod:`~streammoe.keyed.router_batch` — one Adam step for many routers at once.
"""
from .model import KeyedDriftMoE, KeyedResult

__all__ = ["KeyedDriftMoE", "KeyedResult"]
