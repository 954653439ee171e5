"""``serve.keyed_engine = "pool"``: the keyed models of one partition as one :class:`KeyedDriftMoE`.

Why: with ``serve.model_per = "key"`` a partition may hold thousands of keys.  A dict of
``DriftMoE`` makes one Python call chain per key and batch; the pool keeps all of the partition's
keys in stacked arrays (one tree pool, stacked routers) and runs each batch of events in a few
compiled launches, whatever the number of keys (``benchmarks/serve_keyed.py`` measures both).

What the daemon's events become: keys are numbered in the order the partition first meets them
(key ``i`` is a DriftMoE seeded ``seed + i``); features are the columns of the partition's first
accepted event, in its order - every key of the partition must carry exactly those (the pool
needs ``serve.feature_policy = "strict"``); labels are numbered in the order first seen in the
partition (or by ``serve.classes``).  Each key then behaves exactly like a data-mode
``DriftMoE(seed=seed + i)`` fed the key's events, bit for bit, when it meets its labels in that
same order (DriftMoE numbers classes by first sight; a binary stream whose keys all start with
the same label, or declared ``serve.classes``, satisfy it) - ``tests/test_keyed_serve.py``.

State (no pickle): the :class:`KeyedDriftMoE` parts under ``pool/`` in the partition's hash plus
``pool/index`` (JSON: key names, feature columns, labels); a checkpoint writes the routers of
the keys that trained since the last one only.
"""
from __future__ import annotations

import inspect
import json
from typing import Any, Iterable, Optional

import numpy as np

__all__ = ["KeyedPool", "POOL_PREFIX", "pool_params", "split_pool_parts"]

POOL_PREFIX = "pool/"
_INDEX = "index"
_FORMAT = "streammoe/keyed-pool@1"
#: DriftMoE parameters the pool cannot honour (it is data mode with Hoeffding-tree experts only)
_DRIFTMOE_ONLY = {"mode": "data", "experts": None, "adaptive": None}


def pool_params(params: dict) -> dict:
    """The ``model.params`` as :class:`KeyedDriftMoE` keywords; ``ValueError`` naming what the
    pool cannot do (``engine`` is accepted and ignored: the pool has its own compiled path)."""
    from ..keyed import KeyedDriftMoE

    accepted = set(inspect.signature(KeyedDriftMoE.__init__).parameters) - {"self", "n_keys", "n_features",
                                                                             "n_classes"}
    out = {}
    for name, value in params.items():
        if name in _DRIFTMOE_ONLY:
            if value != _DRIFTMOE_ONLY[name]:
                raise ValueError(f"serve.keyed_engine = 'pool' runs data-mode DriftMoE models with tree experts; "
                                 f"model.params {name}={value!r} needs serve.keyed_engine = 'models'")
        elif name == "engine":
            continue
        elif name not in accepted:
            raise ValueError(f"model.params {name!r} is not a KeyedDriftMoE parameter "
                             f"(serve.keyed_engine = 'pool')")
        else:
            out[name] = value
    KeyedDriftMoE(1, 1, **out)  # refuse bad values now, not at the first event
    return out


class KeyedPool:
    """One partition's keyed models (see the module docstring); not thread-safe."""

    def __init__(self, params: dict, classes: Optional[tuple] = None):
        self.params = dict(params)
        self.model: Any = None
        self.keys: list[str] = []
        self.index: dict[str, int] = {}
        self.features: Optional[list[str]] = None
        self.fixed_classes = classes is not None
        self.labels: list = list(classes) if classes is not None else []
        self._label_index = {(type(c), c): i for i, c in enumerate(self.labels)}
        self._saved_steps = np.zeros(0, dtype=np.int64)  # router_steps at the last checkpoint
        self._stored = False

    # --- queries ---------------------------------------------------------------------------
    @property
    def n_keys(self) -> int:
        return len(self.keys)

    def n_learned(self, key: str) -> int:
        i = self.index.get(key)
        return 0 if i is None or self.model is None else int(self.model.n_learned[i])

    def label_type(self) -> Optional[type]:
        return type(self.labels[0]) if self.labels else None

    # --- events ----------------------------------------------------------------------------
    def _prepare(self, keys: list[str], xs: list[dict], ys: list) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        from ..keyed import KeyedDriftMoE

        if self.features is None:
            self.features = list(xs[0])
        if self.model is None:
            n_classes = len(self.labels) if self.fixed_classes else None
            self.model = KeyedDriftMoE(1, len(self.features), n_classes, **self.params)
            self.keys, self.index = [], {}
            fresh = 1
        else:
            fresh = 0
        new = [k for k in dict.fromkeys(keys) if k not in self.index]
        if new:
            missing = len(new) - fresh
            if missing > 0:
                self.model.add_keys(missing)
            for k in new:
                self.index[k] = len(self.keys)
                self.keys.append(k)
        cols = self.features
        try:
            X = np.array([[x[f] for f in cols] for x in xs], dtype=np.float64).reshape(len(xs), len(cols))
        except (TypeError, ValueError):  # a string: a categorical feature
            bad = next(f for x in xs for f in cols if isinstance(x[f], str))
            raise ValueError(f"feature {bad!r} is categorical; the keyed pool (serve.keyed_engine = 'pool') "
                             f"takes numeric features only (use serve.keyed_engine = 'models')") from None
        kidx = np.fromiter((self.index[k] for k in keys), dtype=np.int64, count=len(keys))
        y = np.fromiter((-1 if v is None else self._label(v) for v in ys), dtype=np.int64, count=len(ys))
        return kidx, X, y

    def _label(self, v: Any) -> int:
        i = self._label_index.get((type(v), v))
        if i is None:
            if self.fixed_classes:
                raise ValueError(f"label {v!r} is not one of serve.classes {self.labels}")
            i = self._label_index[(type(v), v)] = len(self.labels)
            self.labels.append(v)
        return i

    def predict_learn(self, keys: list[str], xs: list[dict], ys: list) -> list[tuple[dict, int, int]]:
        """``(proba, expert, model_version)`` per event, answered by its key's model before it
        learns the event's label (``None``: no label).  ``proba`` names the classes the key has
        learned before the event, as a per-key DriftMoE would; ``model_version`` is the number of
        labels the key had learned."""
        if not keys:
            return []
        kidx, X, y = self._prepare(keys, xs, ys)
        m = self.model
        # the classes each key has learned, in class order (rows read before the call learns)
        known = {k: np.flatnonzero(m.class_counts[k] > 0).tolist() for k in np.unique(kidx).tolist()}
        version = {k: int(m.n_learned[k]) for k in known}
        res = m.learn_predict_window(kidx, X, y)
        out = []
        labels = self.labels
        rows, experts = res.proba.tolist(), res.expert.tolist()
        for k, row, expert, yi in zip(kidx.tolist(), rows, experts, y.tolist()):
            cs = known[k]
            out.append(({labels[c]: row[c] for c in cs}, expert, version[k]))
            if yi >= 0:
                version[k] += 1
                if yi not in cs:
                    known[k] = sorted(cs + [yi])
        return out

    def learn(self, keys: list[str], xs: list[dict], ys: list) -> None:
        """Learn labelled events in order (``DriftMoE.learn_batch`` of each key, all at once)."""
        if keys:
            self.model.learn_predict_window(*self._prepare(keys, xs, ys))

    # --- state -----------------------------------------------------------------------------
    def dirty_parts(self) -> dict[str, bytes]:
        """Parts (``pool/`` names) changed since :meth:`mark_clean`: meta, stats, window, trees,
        the index, and the routers of keys that are new or trained since."""
        if self.model is None:
            return {}
        steps = self.model.router_steps
        old = self._saved_steps
        changed = np.flatnonzero(steps[: old.shape[0]] != old).tolist() + list(range(old.shape[0], steps.shape[0]))
        parts = self.model.state_parts(routers=None if not self._stored else changed)
        index = {"format": _FORMAT, "keys": self.keys, "features": self.features, "labels": self.labels,
                 "fixed_classes": self.fixed_classes}
        parts["index"] = json.dumps(index, separators=(",", ":")).encode()
        return {POOL_PREFIX + name: blob for name, blob in parts.items()}

    def mark_clean(self) -> None:
        if self.model is not None:
            self._saved_steps = self.model.router_steps.copy()
            self._stored = True

    @classmethod
    def from_parts(cls, parts: dict[str, bytes], params: dict, classes: Optional[tuple] = None) -> "KeyedPool":
        """Rebuild from the ``pool/`` parts of a partition's hash (prefix already stripped)."""
        from ..keyed import KeyedDriftMoE
        from ..state.codec import StateFormatError

        pool = cls(params, classes)
        try:
            index = json.loads(parts[_INDEX])
            assert index["format"] == _FORMAT
            keys, features, labels = list(index["keys"]), list(index["features"]), list(index["labels"])
        except (KeyError, ValueError, TypeError, AssertionError) as exc:
            raise StateFormatError(f"the keyed pool's index part is missing or malformed: {exc!r}") from exc
        model = KeyedDriftMoE.from_parts({k: v for k, v in parts.items() if k != _INDEX})
        if model.n_keys != len(keys) or model.n_features != len(features):
            raise StateFormatError(f"the keyed pool holds {model.n_keys} keys of {model.n_features} features, "
                                   f"its index names {len(keys)} keys and {len(features)} features")
        pool.model, pool.keys, pool.features = model, keys, features
        pool.index = {k: i for i, k in enumerate(keys)}
        if not pool.fixed_classes:
            pool.labels = labels
            pool._label_index = {(type(c), c): i for i, c in enumerate(labels)}
        pool.mark_clean()
        return pool


def split_pool_parts(parts: Iterable[tuple[str, bytes]]) -> tuple[dict[str, bytes], dict[str, bytes]]:
    """``(pool parts without the prefix, the other parts)``."""
    pool, rest = {}, {}
    for name, blob in parts:
        if name.startswith(POOL_PREFIX):
            pool[name[len(POOL_PREFIX):]] = blob
        else:
            rest[name] = blob
    return pool, rest
