"""Expert pools: the uniform interface the model uses to reach its experts.

``ListPool`` holds independent :class:`~streammoe.experts.base.Expert` objects (river trees,
neural experts, a mix), built from JSON specs by :mod:`streammoe.experts.registry`.  The array
engine (``engine='numba'``) plugs in a pool with the same methods whose trees live in shared
arrays and whose windowed loop runs compiled.  A list pool of neural experts only also has a
compiled windowed loop (:mod:`streammoe.experts.neural_window`); ``windowed()`` says whether
a pool's ``run_window`` may be used.
"""
from __future__ import annotations

from typing import Protocol

import numpy as np

from .experts.base import Expert
from .experts.registry import expert_class, make_expert, normalise_spec
from .state.codec import pack_arrays, unpack_arrays


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
    def windowed(self) -> bool: ...
    def set_nominal(self, nominal: list[bool], n_values: int) -> None: ...
    def run_window(self, W: np.ndarray, X: np.ndarray, Y: np.ndarray, top_k: int, combine: str,
                   n_classes: int): ...


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
        self.nominal: list[int] = []  # categorical columns (their values are integer codes)
        for spec in specs:
            self.add_expert(spec)

    @property
    def n(self) -> int:
        return len(self.experts)

    def predict(self, e: int, x: np.ndarray, n_classes: int) -> np.ndarray:
        return self.experts[e].predict_proba(x, n_classes)

    def learn(self, e: int, x: np.ndarray, y: int) -> None:
        self.experts[e].learn(x, y)

    def set_nominal(self, nominal: list[bool], n_values: int) -> None:
        """Tell the experts which columns are categorical codes (trees split on them as nominal
        attributes; other experts see the codes as numbers)."""
        self.nominal = [j for j, nom in enumerate(nominal) if nom]
        for expert in self.experts:
            if hasattr(expert, "set_nominal"):
                expert.set_nominal(self.nominal)

    def windowed(self) -> bool:
        """Whether :meth:`run_window` can run this pool (every expert is neural)."""
        from .experts.neural_window import windowed

        return windowed(self.experts)

    def run_window(self, W: np.ndarray, X: np.ndarray, Y: np.ndarray, top_k: int, combine: str, n_classes: int):
        """A data-mode router window through neural experts, compiled per expert
        (:mod:`streammoe.experts.neural_window`); equal to the per-event calls, bit for bit."""
        from .experts.neural_window import run_window

        if not self.windowed():
            raise ValueError(f"run_window needs a pool of neural experts, got kinds {[x.kind for x in self.experts]}")
        return run_window(self.experts, W, X, Y, top_k, combine, n_classes)

    def add_expert(self, spec: dict | str | None = None) -> int:
        spec = normalise_spec(spec if spec is not None else self.config.get("default_spec", "tree"))
        c = self.config
        expert = make_expert(spec, seed=int(c["seed"]) + 7919 * self.created, grace_period=c["grace_period"],
                             delta=c["delta"], binary=c["binary"])
        self.created += 1
        if self.nominal and hasattr(expert, "set_nominal"):
            expert.set_nominal(self.nominal)
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
                "kinds": [x.kind for x in self.experts], "nominal": self.nominal}

    def part(self, e: int) -> bytes:
        return self.experts[e].to_state()

    def extra_parts(self) -> dict[str, bytes]:
        return {}

    def to_parts(self) -> dict[str, bytes]:
        return {f"expert/{e}": self.part(e) for e in range(self.n)}

    @classmethod
    def from_parts(cls, meta: dict, parts: dict[str, bytes]) -> "ListPool":
        pool = cls([], meta["config"])
        pool.specs = [dict(s) for s in meta["specs"]]
        pool.created = int(meta["created"])
        pool.nominal = [int(j) for j in meta.get("nominal", [])]
        pool.experts = [expert_class(kind).from_state(parts[f"expert/{e}"]) for e, kind in enumerate(meta["kinds"])]
        return pool


class ArrayTreePool:
    """Hoeffding-tree experts held in one :class:`~streammoe.experts.fast_tree.TreePool`.

    Same statistics and split rule as river's tree; the window of a data-mode model runs in one
    compiled kernel (:meth:`run_window`).  Each tree is still saved as its own part so a store
    can write only the experts that changed.
    """

    KIND = "array-ht"

    def __init__(self, n: int, config: dict, trees=None, frozen=None):
        from .experts.fast_tree import TreePool

        self.config = dict(config)
        self.trees = trees if trees is not None else TreePool(
            n, 0, 2 if config["binary"] else 0, grace_period=config["grace_period"], delta=config["delta"],
            max_nodes=int(config.get("max_nodes", 2**20 - 1)), river_exact=bool(config.get("river_exact", False)))
        self.frozen_flags = list(frozen) if frozen is not None else [False] * self.trees.n_trees

    @property
    def n(self) -> int:
        return self.trees.n_trees

    def set_nominal(self, nominal: list[bool], n_values: int) -> None:
        """Mark categorical columns (codes in ``[0, n_values)``); see :meth:`TreePool.add_features`."""
        self._fit(len(nominal), self.trees.n_classes, nominal, n_values)

    def _fit(self, d: int, n_classes: int, nominal: list[bool] | None = None, n_values: int = 0) -> None:
        """Grow the arrays to ``d`` features and ``n_classes`` classes (both only ever grow)."""
        if d > self.trees.n_features:
            k = d - self.trees.n_features
            self.trees.add_features(k, None if nominal is None else nominal[-k:], n_values)
        self.trees.ensure_classes(n_classes)

    def predict(self, e: int, x: np.ndarray, n_classes: int) -> np.ndarray:
        self._fit(x.shape[0], n_classes)
        return self.trees.predict_proba(e, x)[:n_classes]

    def learn(self, e: int, x: np.ndarray, y: int) -> None:
        if self.frozen_flags[e]:
            return
        self._fit(x.shape[0], 2 if self.config["binary"] else y + 1)
        self.trees.learn(e, x, y)

    def windowed(self) -> bool:
        return True

    def run_window(self, W: np.ndarray, X: np.ndarray, Y: np.ndarray, top_k: int, combine: str, n_classes: int):
        """One compiled pass over a window of events (see :func:`~streammoe.experts.fast_loop.run_window`)."""
        from .experts.fast_loop import run_window

        self._fit(X.shape[1], n_classes)
        return run_window(self.trees, W, X, Y, top_k=top_k, combine=combine)

    def add_expert(self, spec: dict | str | None = None) -> int:
        if spec is not None and normalise_spec(spec)["kind"] != "tree":
            raise ValueError("engine='numba' holds tree experts only; use engine='river' for other kinds")
        self.frozen_flags.append(False)
        return self.trees.add_trees(1)

    def remove_expert(self, e: int) -> None:
        from .experts.fast_tree import TreePool

        parts = [self.part(i) for i in range(self.n) if i != e]
        del self.frozen_flags[e]
        self.trees = _stack_trees([unpack_arrays(p) for p in parts], self.trees.to_arrays(), TreePool)

    def set_frozen(self, e: int, frozen: bool) -> None:
        self.frozen_flags[e] = bool(frozen)

    def kind(self, e: int) -> str:
        return self.KIND

    def frozen(self, e: int) -> bool:
        return self.frozen_flags[e]

    def meta(self) -> dict:
        return {"type": "array", "config": self.config, "frozen": self.frozen_flags}

    def part(self, e: int) -> bytes:
        """Tree ``e`` alone: its slice of every array, trimmed to its own nodes and leaf slots."""
        from .experts import fast_tree as ft

        a = self.trees.arrays
        n_nodes, n_leaves = int(a.n_nodes[e]), int(a.n_leaves[e])
        out = {}
        for name in ft._SAVED_FIELDS:
            arr = getattr(a, name)[e]
            if name in ft._NODE_FIELDS:
                arr = arr[:n_nodes]
            elif name not in ft._TREE_FIELDS:
                arr = arr[:n_leaves]
            out[name] = np.array(arr, copy=True)
        if self.trees.n_nominal:
            n_mw = int(a.n_mw[e])
            for name in ft._NOMINAL_FIELDS:
                arr = getattr(a, name)[e]
                if name in ("mw_child", "mw_order", "mw_n"):
                    arr = arr[:n_mw]
                elif name not in ("nom_index", "n_mw"):
                    arr = arr[:n_leaves]
                out[name] = np.array(arr, copy=True)
        return pack_arrays(out)

    def extra_parts(self) -> dict[str, bytes]:
        """The pool's shared header (tree configuration and array shape), written with the metadata."""
        from .experts import fast_tree as ft

        t = self.trees
        cfg = t.config()
        cfg["leaf_prediction"] = ft.LEAF_PREDICTIONS[t.leaf_prediction]
        cfg["max_bytes"] = -1 if t.max_bytes is None else t.max_bytes
        cfg["river_exact"] = 1.0 if t.river_exact else 0.0
        return {"pool": pack_arrays({
            "config": np.array([float(cfg[k]) for k in ft._CONFIG_KEYS], dtype=np.float64),
            "shape": np.array([t.n_trees, t.n_features, t.n_classes], dtype=np.int64)})}

    def to_parts(self) -> dict[str, bytes]:
        parts = {f"expert/{e}": self.part(e) for e in range(self.n)}
        parts.update(self.extra_parts())
        return parts

    @classmethod
    def from_parts(cls, meta: dict, parts: dict[str, bytes]) -> "ArrayTreePool":
        from .experts.fast_tree import TreePool

        head = unpack_arrays(parts["pool"])
        n = int(head["shape"][0])
        trees = _stack_trees([unpack_arrays(parts[f"expert/{e}"]) for e in range(n)], head, TreePool)
        return cls(n, meta["config"], trees=trees, frozen=meta["frozen"])


def _stack_trees(per_tree: list[dict], head: dict, TreePool) -> "object":
    """Rebuild a TreePool from per-tree arrays (zero-padded to the largest tree)."""
    from .experts import fast_tree as ft

    E, D, C = (int(v) for v in head["shape"])
    E = len(per_tree)
    n_used = max((int(t["n_nodes"]) for t in per_tree), default=0)
    s_used = max((int(t["n_leaves"]) for t in per_tree), default=0)
    d = {"config": np.asarray(head["config"]), "shape": np.array([E, D, C], dtype=np.int64)}
    for name in ft._SAVED_FIELDS:
        if name in ft._TREE_FIELDS:
            d[name] = np.array([t[name] for t in per_tree], dtype=np.int64).reshape(E)
            continue
        width = n_used if name in ft._NODE_FIELDS else s_used
        dtype = np.int64 if name in ft._INT_FIELDS else np.float64
        tail = {"class_w": (C,), "keys": (C,), "seen": (C,)}.get(name, (D, C) if name in ft._GAUSS_FIELDS else ())
        arr = np.zeros((E, width) + tail, dtype=dtype)
        for e, t in enumerate(per_tree):
            arr[e, : t[name].shape[0]] = t[name]
        d[name] = arr
    if per_tree and "nom_index" in per_tree[0]:
        Dn, V = per_tree[0]["cat_w"].shape[1:3]
        d["nom_index"] = np.array([t["nom_index"] for t in per_tree], dtype=np.int64).reshape(E, D)
        d["n_mw"] = np.array([t["n_mw"] for t in per_tree], dtype=np.int64).reshape(E)
        m_used = int(d["n_mw"].max()) if E else 0
        for name, tail, dtype in (("cat_w", (Dn, V, C), np.float64), ("cat_order", (Dn, V), np.int64),
                                  ("cat_n", (Dn,), np.int64), ("nseen", (C,), np.int64), ("n_nseen", (), np.int64),
                                  ("mw_child", (V,), np.int64), ("mw_order", (V,), np.int64), ("mw_n", (), np.int64)):
            width = m_used if name.startswith("mw_") else s_used
            arr = np.zeros((E, width) + tail, dtype=dtype)
            if name in ("cat_order", "nseen", "mw_child", "mw_order"):
                arr.fill(-1)
            for e, t in enumerate(per_tree):
                arr[e, : t[name].shape[0]] = t[name]
            d[name] = arr
    return TreePool.from_arrays(d)


def numba_available() -> bool:
    try:
        import numba  # noqa: F401
    except ImportError:
        return False
    return True


ENGINES = ("river", "numba", "auto")


def resolve_engine(engine: str) -> str:
    """``'auto'`` means the compiled array engine when numba imports, else river's trees."""
    if engine not in ENGINES:
        raise ValueError(f"unknown engine {engine!r}; choose one of {ENGINES}")
    if engine == "auto":
        return "numba" if numba_available() else "river"
    return engine


def make_pool(engine: str, specs: list, *, binary: bool, grace_period: int, delta: float, seed: int) -> ExpertPool:
    """Build a pool for ``engine`` from expert specs (``"tree"`` experts use the engine's trees)."""
    specs = [normalise_spec(s) for s in specs]
    plain_trees = all(s == {"kind": "tree"} for s in specs)
    engine = resolve_engine(engine) if (engine != "auto" or plain_trees) else "river"  # auto: mixed pools → list pool
    config = {"engine": engine, "binary": binary, "grace_period": grace_period, "delta": delta, "seed": seed,
              "default_spec": {"kind": "tree"}}
    if engine == "numba":
        if not plain_trees:
            raise ValueError("engine='numba' holds plain tree experts only; use engine='river' for "
                             "heterogeneous pools or per-expert options")
        return ArrayTreePool(len(specs), config)
    return ListPool(specs, config)


def pool_from_parts(meta: dict, parts: dict[str, bytes]) -> ExpertPool:
    """Inverse of ``pool.to_parts()`` + ``pool.meta()``."""
    if meta["type"] == "list":
        return ListPool.from_parts(meta, parts)
    if meta["type"] == "array":
        return ArrayTreePool.from_parts(meta, parts)
    raise ValueError(f"unknown pool type {meta['type']!r} in saved state")
