"""The one registry of model factories: DriftMoE presets and river's reference baselines.

``streammoe.PRESETS[name](seed=..., **overrides) -> DriftMoE``; ``BASELINES[name](seed) -> river
classifier``.  The CLI (``replay --model``, ``replay --compare``, ``bench``), the evaluation runner and
the benchmarks all build their models here, so a name means the same configuration everywhere.  Each factory
returns a fresh, unfitted :class:`~streammoe.model.DriftMoE`; ``overrides`` replace any of its
constructor parameters (e.g. ``engine='numba'``, ``window=128``), and an ``adaptive`` or
``experts`` override replaces the preset's value as a whole.  Presets with neural experts use
``engine='river'`` (the list pool; the compiled tree engine holds plain trees only); a pool of
neural experts alone (``driftmoe-neural``) still runs each router window compiled, one pass per
expert (:mod:`streammoe.experts.neural_window`), with the per-event path's results.

* ``driftmoe``          ``DriftMoE()`` with the library's defaults (every parameter as override);
* ``driftmoe-data``     the reference DriftMoE (data mode, 12 Hoeffding trees, top-3 learn);
* ``driftmoe-task``     the reference task mode (one-vs-rest tree per class);
* ``driftmoe-adaptive`` data mode + the drift-aware pool (:mod:`streammoe.adaptive`): drifting
  experts are frozen and replaced, recently accurate ones (recurring concepts) are recalled;
* ``driftmoe-hetero``   8 trees + 4 MoRA neural experts under one router, with the drift-aware pool;
  the neural experts learn every event (``learn_all``), the trees learn the events routed to them;
* ``driftmoe-neural``   3 MoRA neural experts (online MLP base, rank-1 adapter units) under a
  small router (hidden 32): the fastest configuration with neural experts.

Examples
--------
>>> from streammoe.presets import PRESETS, make_model, river_baselines
>>> model = make_model("driftmoe-adaptive", seed=1, window=64)
>>> model.mode, model.window, model.adaptive["budget"]
('data', 64, 24)
>>> sorted(river_baselines(seed=1))
['ARF', 'HoeffdingAdaptiveTree', 'HoeffdingTree']
"""
from __future__ import annotations

import inspect
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:  # the model (torch, numba) is imported when a factory runs, not with the registry
    from .model import DriftMoE

#: spec of the neural expert used by the neural presets (see :mod:`streammoe.experts.neural`)
MORA_SPEC: dict[str, Any] = {"kind": "mora"}
#: pool bound of the adaptive presets: the 12 live experts plus up to 12 frozen ones
ADAPTIVE: dict[str, Any] = {"budget": 24}


def _build(params: dict[str, Any], seed: int, overrides: dict[str, Any]) -> DriftMoE:
    from .model import DriftMoE

    if "seed" in overrides:
        raise ValueError("pass the seed as seed=..., not inside the overrides")
    merged = dict(params)
    merged.update(overrides)
    try:
        return DriftMoE(seed=seed, **merged)
    except TypeError as exc:  # an unknown override: name the valid ones
        valid = sorted(p for p in inspect.signature(DriftMoE).parameters if p != "seed")
        raise ValueError(f"{exc}; valid DriftMoE parameters: {valid}") from exc


def driftmoe(seed: int = 42, **overrides: Any) -> DriftMoE:
    """``DriftMoE()`` with the library's defaults."""
    return _build({}, seed, overrides)


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
    "driftmoe": driftmoe,
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


def _arf(seed: int) -> Any:
    from river import forest

    return forest.ARFClassifier(n_models=10, seed=seed)


def _hoeffding_tree(seed: int) -> Any:
    from river import tree

    return tree.HoeffdingTreeClassifier()


def _hoeffding_adaptive_tree(seed: int) -> Any:
    from river import tree

    return tree.HoeffdingAdaptiveTreeClassifier(seed=seed)


#: river's reference classifiers (the DriftMoE paper's baselines): ``BASELINES[name](seed)``
BASELINES: dict[str, Callable[[int], Any]] = {
    "ARF": _arf,
    "HoeffdingTree": _hoeffding_tree,
    "HoeffdingAdaptiveTree": _hoeffding_adaptive_tree,
}


def river_baselines(seed: int, names: list[str] | None = None) -> dict[str, Any]:
    """Fresh instances of the baselines (all, or ``names`` in that order)."""
    return {name: BASELINES[name](seed) for name in (names or list(BASELINES))}
