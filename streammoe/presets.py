"""Named model configurations: ``streammoe.PRESETS[name](seed=..., **overrides) -> DriftMoE``.

Why presets: the CLI (``streammoe replay --model NAME``), the benchmarks and users comparing
variants all need the same handful of configurations spelled the same way.  Each factory
returns a fresh, unfitted :class:`~streammoe.model.DriftMoE`; ``overrides`` replace any of its
constructor parameters (e.g. ``engine='numba'``, ``window=128``), and an ``adaptive`` or
``experts`` override replaces the preset's value as a whole.  Presets with neural experts use
``engine='river'`` (the list pool; the compiled tree engine holds plain trees only); a pool of
neural experts alone (``driftmoe-neural``) still runs each router window compiled, one pass per
expert (:mod:`streammoe.experts.neural_window`), with the per-event path's results.

* ``driftmoe-data``     the reference DriftMoE (data mode, 12 Hoeffding trees, top-3 learn);
* ``driftmoe-task``     the reference task mode (one-vs-rest tree per class);
* ``driftmoe-adaptive`` data mode + the drift-aware pool (:mod:`streammoe.adaptive`): drifting
  experts are frozen and replaced, recently accurate ones (recurring concepts) are recalled;
* ``driftmoe-hetero``   8 trees + 4 MoRA neural experts under one router, with the drift-aware pool;
  the neural experts learn every event (``learn_all``), the trees learn the events routed to them;
* ``driftmoe-neural``   3 MoRA neural experts (online MLP base, rank-1 adapter units) under a
  small router (hidden 32): the fastest configuration with neural experts.
"""
from __future__ import annotations

import inspect
from typing import Any, Callable

from .model import DriftMoE

#: spec of the neural expert used by the neural presets (see :mod:`streammoe.experts.neural`)
MORA_SPEC: dict[str, Any] = {"kind": "mora"}
#: pool bound of the adaptive presets: the 12 live experts plus up to 12 frozen ones
ADAPTIVE: dict[str, Any] = {"budget": 24}


def _build(params: dict[str, Any], seed: int, overrides: dict[str, Any]) -> DriftMoE:
    if "seed" in overrides:
        raise ValueError("pass the seed as seed=..., not inside the overrides")
    merged = dict(params)
    merged.update(overrides)
    try:
        return DriftMoE(seed=seed, **merged)
    except TypeError as exc:  # an unknown override: name the valid ones
        valid = sorted(p for p in inspect.signature(DriftMoE).parameters if p != "seed")
        raise ValueError(f"{exc}; valid DriftMoE parameters: {valid}") from exc


def driftmoe_data(seed: int = 42, **overrides: Any) -> DriftMoE:
    """The reference DriftMoE in data mode."""
    return _build({"mode": "data"}, seed, overrides)


def driftmoe_task(seed: int = 42, **overrides: Any) -> DriftMoE:
    """The reference DriftMoE in task mode."""
    return _build({"mode": "task"}, seed, overrides)


def driftmoe_adaptive(seed: int = 42, **overrides: Any) -> DriftMoE:
    """Data mode with the drift-aware pool (freeze / grow / recall / prune)."""
    return _build({"mode": "data", "adaptive": dict(ADAPTIVE)}, seed, overrides)


def driftmoe_hetero(seed: int = 42, **overrides: Any) -> DriftMoE:
    """Trees and MoRA neural experts under one router, with the drift-aware pool."""
    experts = ["tree"] * 8 + [dict(MORA_SPEC) for _ in range(4)]
    adaptive = dict(ADAPTIVE, learn_all=["mora"])  # neural experts learn every event, trees are routed
    return _build({"mode": "data", "experts": experts, "adaptive": adaptive, "engine": "river"}, seed, overrides)


def driftmoe_neural(seed: int = 42, **overrides: Any) -> DriftMoE:
    """A small pool of MoRA neural experts under a small router."""
    experts = [dict(MORA_SPEC) for _ in range(3)]
    return _build({"mode": "data", "experts": experts, "top_k": 1, "hidden": 32, "engine": "river"}, seed,
                  overrides)


PRESETS: dict[str, Callable[..., DriftMoE]] = {
    "driftmoe-data": driftmoe_data,
    "driftmoe-task": driftmoe_task,
    "driftmoe-adaptive": driftmoe_adaptive,
    "driftmoe-hetero": driftmoe_hetero,
    "driftmoe-neural": driftmoe_neural,
}


def make_model(name: str, seed: int = 42, **overrides: Any) -> DriftMoE:
    """``PRESETS[name](seed=seed, **overrides)`` with a clear error for an unknown name."""
    try:
        factory = PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown model preset {name!r}; choose one of {', '.join(PRESETS)}") from None
    return factory(seed=seed, **overrides)
