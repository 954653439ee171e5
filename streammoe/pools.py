"""Expert pools: the uniform interface the model uses to reach its experts.

``ListPool`` holds independent :class:`~streammoe.experts.base.Expert` objects (river trees,
neural experts, a mix).  The array engine (``engine='numba'``) plugs in a pool with the same
methods whose experts live in shared arrays and whose windowed loop runs compiled.
"""
from __future__ import annotations

from typing import Callable, Protocol

import numpy as np

from .experts.base import Expert


class ExpertPool(Protocol):
    n: int

    def predict(self, e: int, x: np.ndarray, n_classes: int) -> np.ndarray: ...
    def learn(self, e: int, x: np.ndarray, y: int) -> None: ...
    def add_expert(self) -> int: ...
    def kind(self, e: int) -> str: ...
    def frozen(self, e: int) -> bool: ...
    def meta(self) -> dict: ...
    def part(self, e: int) -> bytes: ...
    def to_parts(self) -> dict[str, bytes]: ...


def expert_classes() -> dict[str, type]:
    """Registry ``kind -> class`` used to restore experts from their state blobs."""
    from .experts.river_tree import RiverTreeExpert

    classes = {RiverTreeExpert.kind: RiverTreeExpert}
    try:
        from .experts import neural
    except ImportError:  # neural experts are optional at this layer
        return classes
    classes.update(getattr(neural, "EXPERT_CLASSES", {}))
    return classes


class ListPool:
    """A list of independent experts; ``factory`` makes a fresh one when the pool grows."""

    def __init__(self, experts: list[Expert], factory: Callable[[], Expert] | None = None, spec: dict | None = None):
        self.experts = list(experts)
        self.factory = factory
        self.spec = spec or {}

    @property
    def n(self) -> int:
        return len(self.experts)

    def predict(self, e: int, x: np.ndarray, n_classes: int) -> np.ndarray:
        return self.experts[e].predict_proba(x, n_classes)

    def learn(self, e: int, x: np.ndarray, y: int) -> None:
        self.experts[e].learn(x, y)

    def add_expert(self) -> int:
        if self.factory is None:
            raise RuntimeError("this pool has no factory to grow new experts")
        self.experts.append(self.factory())
        return self.n - 1

    def kind(self, e: int) -> str:
        return self.experts[e].kind

    def frozen(self, e: int) -> bool:
        return bool(self.experts[e].frozen)

    def meta(self) -> dict:
        return {"type": "list", "spec": self.spec, "kinds": [x.kind for x in self.experts]}

    def part(self, e: int) -> bytes:
        return self.experts[e].to_state()

    def to_parts(self) -> dict[str, bytes]:
        return {f"expert/{e}": self.part(e) for e in range(self.n)}


def _river_tree_factory(binary: bool, grace_period: int, delta: float):
    from .experts.river_tree import RiverTreeExpert

    return lambda: RiverTreeExpert(grace_period=grace_period, delta=delta, binary=binary)


def make_pool(engine: str, n: int, *, binary: bool, grace_period: int, delta: float) -> ExpertPool:
    """Build an empty pool of ``n`` tree experts for the given engine."""
    spec = {"engine": engine, "binary": binary, "grace_period": grace_period, "delta": delta}
    if engine == "river":
        factory = _river_tree_factory(binary, grace_period, delta)
        return ListPool([factory() for _ in range(n)], factory, spec)
    raise ValueError(f"unknown engine {engine!r}; choose 'river'")


def pool_from_parts(meta: dict, parts: dict[str, bytes]) -> ExpertPool:
    """Inverse of ``pool.to_parts()`` + ``pool.meta()``."""
    if meta["type"] == "list":
        classes = expert_classes()
        experts = []
        for e, kind in enumerate(meta["kinds"]):
            if kind not in classes:
                raise ValueError(f"unknown expert kind {kind!r} in saved state")
            experts.append(classes[kind].from_state(parts[f"expert/{e}"]))
        spec = meta["spec"]
        factory = _river_tree_factory(spec["binary"], spec["grace_period"], spec["delta"]) if spec else None
        return ListPool(experts, factory, spec)
    raise ValueError(f"unknown pool type {meta['type']!r} in saved state")
