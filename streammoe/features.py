"""Feature and label bookkeeping shared by every model: validation, growth, imputation.

Why a separate module: the model, the daemon's decoder and the replay readers all need the
same rules for what a valid event is, and the same answer to "which column is feature f".

Rules (documented in the README):
- feature values must be real numbers (int, float, bool or NumPy scalars) within
  +-``MAX_FEATURE`` (1e30); NaN, inf, larger magnitudes, strings, None and containers raise
  ``ValueError`` naming the feature;
- columns are assigned when a feature is first *learned*; several new features in one event
  are ordered by name so that the key order of a dict never changes a result;
- a missing feature is imputed with the running mean of that feature over learned events
  (0.0 before any value was seen); features never learned are ignored at prediction.
- labels must be int, str or bool (NumPy scalars are converted); new labels may appear anytime.
"""
from __future__ import annotations

import math
import numbers
from itertools import chain
from operator import itemgetter
from typing import Any, Hashable, Iterable, Mapping

import numpy as np

_INF = float("inf")
#: Largest accepted feature magnitude.  Why a bound below the float64 range: the router computes
#: in float32 (max ~3.4e38) and the imputation means sum values in float64, so a single event
#: with a value like 1e300 turned the router's weights into NaN for good (every later event was
#: refused) or made ``predict_learn_many`` fail after learning part of its batch.  1e30 leaves
#: room for products and sums in both, and is far beyond any measured quantity.
MAX_FEATURE = 1e30


def check_value(name: Hashable, value: Any) -> float:
    """Return ``value`` as a finite float or raise ``ValueError`` naming the feature."""
    t = type(value)
    if t is int and not -1e308 <= value <= 1e308:
        raise ValueError(f"feature {name!r} is {value}, too large for a 64-bit float")
    if t is float or t is int:  # the common case, without the ABC machinery below
        v = float(value)
        if -MAX_FEATURE <= v <= MAX_FEATURE:  # false for NaN and +-inf
            return v
        if v - v == 0.0:
            raise ValueError(f"feature {name!r} is {v!r}, beyond +-{MAX_FEATURE:g} (features.MAX_FEATURE)")
        raise ValueError(f"feature {name!r} is {v!r}; features must be finite numbers")
    if isinstance(value, (bool, np.bool_)):
        return float(value)
    if not isinstance(value, numbers.Real):
        raise ValueError(f"feature {name!r} has non-numeric value {value!r} ({type(value).__name__})")
    try:
        v = float(value)
    except OverflowError:
        raise ValueError(f"feature {name!r} is {value}, too large for a 64-bit float") from None
    if not math.isfinite(v):
        raise ValueError(f"feature {name!r} is {v!r}; features must be finite numbers")
    if not -MAX_FEATURE <= v <= MAX_FEATURE:
        raise ValueError(f"feature {name!r} is {v!r}, beyond +-{MAX_FEATURE:g} (features.MAX_FEATURE)")
    return v


def check_features(x: Mapping) -> None:
    """Validate every value of ``x`` (raises ``ValueError`` naming the first bad feature)."""
    if type(x) is not dict and not isinstance(x, Mapping):
        raise ValueError(f"x must be a dict of feature -> number, got {type(x).__name__}")
    for name, value in x.items():
        t = type(value)
        if (t is float or t is int) and -MAX_FEATURE <= value <= MAX_FEATURE:
            continue
        check_value(name, value)


def plain_matrix(xs: list, names: list) -> np.ndarray | None:
    """The events' features as an ``(n, len(names))`` float64 matrix in column order, when every
    event is a plain ``dict`` with exactly the known features as finite ``float``/``int`` values.

    Why: the per-event checks and conversions of a batch cost more than everything else the
    compiled engine does per event.  This does the same work with C-level passes over the batch
    and gives the same floats (``float(value)``, as :func:`check_value` does).  It returns
    ``None`` for anything else (a missing, extra or invalid feature, another value type, a
    value beyond +-``MAX_FEATURE``), and the caller then takes the per-event path, which raises the precise
    error or imputes and grows as usual.
    """
    n, d = len(xs), len(names)
    if n == 0 or d == 0 or set(map(type, xs)) != {dict} or set(map(len, xs)) != {d}:
        return None
    try:  # every event has d keys and all d names, so its keys are exactly the known features
        rows = list(map(itemgetter(*names), xs))
    except KeyError:
        return None
    values = list(chain.from_iterable(rows)) if d > 1 else rows
    types = set(map(type, values))
    if not types <= {float, int}:
        return None
    try:
        R = np.array(values, dtype=np.float64)
    except OverflowError:
        return None
    if not (np.abs(R) <= MAX_FEATURE).all():  # NaN, inf, and magnitudes beyond MAX_FEATURE
        return None
    return R.reshape(n, d)


_PLAIN_LABELS = {int, str, bool, type(None)}


def plain_labels(ys: list, labels: "LabelSpace") -> bool:
    """Whether every label of a batch is ``None`` or a plain int/str/bool that
    :func:`normalise_label` and :meth:`LabelSpace.check` accept unchanged (one check per distinct
    label, not per event); ``False`` sends the caller to the per-event checks."""
    if not set(map(type, ys)) <= _PLAIN_LABELS:
        return False
    index, classes = labels.index, labels.classes
    for t, y in set(zip(map(type, ys), ys)):  # (type, label) pairs: 1 and True stay apart
        i = index.get(y)
        if i is not None and type(classes[i]) is not t:
            return False
    return True


def normalise_label(y: Any) -> int | str | bool:
    """Turn NumPy scalars into Python ones; refuse label types that cannot be stored faithfully."""
    t = type(y)
    if t is int or t is str or t is bool:
        return y
    if isinstance(y, np.generic):
        y = y.item()
    if isinstance(y, (bool, int, str)):
        return y
    raise ValueError(f"label {y!r} has type {type(y).__name__}; labels must be int, str or bool")


def _order_key(name: Hashable):
    return (type(name).__name__, repr(name))


class FeatureSpace:
    """Maps feature names to columns and keeps per-column running means for imputation."""

    def __init__(self):
        self.names: list = []
        self.index: dict = {}
        self.sums = np.zeros(0)
        self.counts = np.zeros(0)

    def __len__(self) -> int:
        return len(self.names)

    def register(self, x: Iterable[Hashable]) -> int:
        """Add columns for features not seen before; returns how many were added."""
        new = [k for k in x if k not in self.index]
        if not new:
            return 0
        for k in sorted(new, key=_order_key):
            self.index[k] = len(self.names)
            self.names.append(k)
        self.sums = np.concatenate([self.sums, np.zeros(len(new))])
        self.counts = np.concatenate([self.counts, np.zeros(len(new))])
        return len(new)

    def means(self) -> np.ndarray:
        return np.divide(self.sums, self.counts, out=np.zeros_like(self.sums), where=self.counts > 0)

    def vector(self, x: Mapping) -> np.ndarray:
        """Dense float64 vector: known features from ``x``, running means for the missing ones."""
        v = self.means()
        index = self.index
        for k, value in x.items():
            j = index.get(k)
            if j is not None:
                v[j] = check_value(k, value)
        return v

    def observe(self, x: Mapping) -> None:
        """Update the running means with the features present in ``x`` (call once per learned event)."""
        index = self.index
        for k, value in x.items():
            j = index[k]
            self.sums[j] += float(value)
            self.counts[j] += 1.0


class LabelSpace:
    """Maps labels (int/str/bool) to class indices in order of first appearance."""

    def __init__(self):
        self.classes: list = []
        self.index: dict = {}

    def __len__(self) -> int:
        return len(self.classes)

    def check(self, y) -> None:
        """Refuse a label equal to a known class of another type (``1`` vs ``True``, ``0`` vs ``False``):
        Python treats them as one dictionary key, so they would silently merge into one class."""
        i = self.index.get(y)
        if i is not None and type(self.classes[i]) is not type(y):
            known = self.classes[i]
            raise ValueError(f"label {y!r} ({type(y).__name__}) equals the known class {known!r} "
                             f"({type(known).__name__}); use one label type per class")

    def add(self, y) -> tuple[int, bool]:
        """Index of ``y`` and whether it is new."""
        y = normalise_label(y)
        self.check(y)
        i = self.index.get(y)
        if i is not None:
            return i, False
        self.index[y] = len(self.classes)
        self.classes.append(y)
        return len(self.classes) - 1, True
