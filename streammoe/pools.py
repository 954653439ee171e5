"""Expert pools: the uniform interface the model uses to reach its experts.

``ListPool`` holds independent :class:`~streammoe.experts.base.Expert` objects (river trees,
neural experts, a mix), built from JSON specs by :mod:`streammoe.experts.registry`.  The array
engine (``engine='numba'``) plugs in a pool with the same methods whose trees live in shared
arrays and whose windowed loop runs compiled.
"""
from __future__ import annotations

from typing import Protocol

import numpy as np

from .experts.base import Expert
from .experts.registry import expert_class, make_expert, normalise_spec


class ExpertPool(Protocol):
    n: int

    def predict(self, e: int, x: np.ndarray, n_classes: int) -> np.ndarray: ...
    def learn(self, e: int, x: np.ndarray, y: int) -> None: ...
    def add_expert(self, spec: dict | None = None) -> int: ...
    def remove_expert(self, e: int) -> None: ...
    def set_frozen(self, e: int, frozen: bool) -> None: ...
    def kind(self, e: int) -> str: ...
    def frozen(self, e: int) -> bool: ...
    def meta(self) -> dict: ...
    def part(self, e: int) -> bytes: ...
    def to_parts(self) -> dict[str, bytes]: ...


class ListPool:
    """A list of independent experts built from specs.

    ``config`` holds what every expert shares (tree parameters, one-vs-rest or not, the base
    seed); expert ``i`` of the pool's history gets seed ``seed + 7919 * i`` so growth is deterministic.
    """

    def __init__(self, specs: list[dict], config: dict):
        self.config = dict(config)
        self.specs: list[dict] = []
        self.experts: list[Expert] = []
        self.created = 0
        for spec in specs:
            self.add_expert(spec)

    @property
    def n(self) -> int:
        return len(self.experts)

    def predict(self, e: int, x: np.ndarray, n_classes: int) -> np.ndarray:
        return self.experts[e].predict_proba(x, n_classes)

    def learn(self, e: int, x: np.ndarray, y: int) -> None:
        self.experts[e].learn(x, y)

    def add_expert(self, spec: dict | str | None = None) -> int:
        spec = normalise_spec(spec if spec is not None else self.config.get("default_spec", "tree"))
        c = self.config
        expert = make_expert(spec, seed=int(c["seed"]) + 7919 * self.created, grace_period=c["grace_period"],
                             delta=c["delta"], binary=c["binary"])
        self.created += 1
        self.specs.append(spec)
        self.experts.append(expert)
        return self.n - 1

    def remove_expert(self, e: int) -> None:
        del self.experts[e]
        del self.specs[e]

    def set_frozen(self, e: int, frozen: bool) -> None:
        self.experts[e].frozen = frozen

    def kind(self, e: int) -> str:
        return self.experts[e].kind

    def frozen(self, e: int) -> bool:
        return bool(self.experts[e].frozen)

    def meta(self) -> dict:
        return {"type": "list", "config": self.config, "specs": self.specs, "created": self.created,
                "kinds": [x.kind for x in self.experts]}

    def part(self, e: int) -> bytes:
        return self.experts[e].to_state()

    def to_parts(self) -> dict[str, bytes]:
        return {f"expert/{e}": self.part(e) for e in range(self.n)}

    @classmethod
    def from_parts(cls, meta: dict, parts: dict[str, bytes]) -> "ListPool":
        pool = cls([], meta["config"])
        pool.specs = [dict(s) for s in meta["specs"]]
        pool.created = int(meta["created"])
        pool.experts = [expert_class(kind).from_state(parts[f"expert/{e}"]) for e, kind in enumerate(meta["kinds"])]
        return pool


def make_pool(engine: str, specs: list, *, binary: bool, grace_period: int, delta: float, seed: int) -> ExpertPool:
    """Build a pool for ``engine`` from expert specs (``"tree"`` experts use the engine's trees)."""
    config = {"engine": engine, "binary": binary, "grace_period": grace_period, "delta": delta, "seed": seed,
              "default_spec": {"kind": "tree"}}
    if engine == "river":
        return ListPool([normalise_spec(s) for s in specs], config)
    raise ValueError(f"unknown engine {engine!r}; choose 'river'")


def pool_from_parts(meta: dict, parts: dict[str, bytes]) -> ExpertPool:
    """Inverse of ``pool.to_parts()`` + ``pool.meta()``."""
    if meta["type"] == "list":
        return ListPool.from_parts(meta, parts)
    raise ValueError(f"unknown pool type {meta['type']!r} in saved state")
