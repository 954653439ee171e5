"""Feature and label bookkeeping shared by every model: validation, growth, imputation.

Why a separate module: the model, the daemon's decoder and the replay readers all need the
same rules for what a valid event is, and the same answer to "which column is feature f".

Rules (documented in the README):
- feature values are real numbers (int, float, bool or NumPy scalars; booleans are 0/1) within
  +-``MAX_FEATURE`` (1e30), or strings: a feature whose first learned value is a string is
  *categorical* (nominal) for good.  NaN, inf, larger magnitudes, None and containers raise
  ``ValueError`` naming the feature, and so does a string for a numeric feature or a number for
  a categorical one;
- a categorical feature's values get integer codes in order of first *learned* appearance, at
  most ``max_categories`` per feature; values beyond that bound, values never learned (at
  prediction) and a missing categorical feature all share one more code, "other"
  (``max_categories``).  Values mapped to "other" because the bound was reached are counted
  (``FeatureSpace.overflow``).  Trees receive the code (and split on it as a nominal
  attribute); the router receives a fixed-width one-hot block of ``max_categories + 1``
  columns per categorical feature (:meth:`FeatureSpace.encode`), so memory stays flat;
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
#: Default bound on the distinct values of one categorical feature (see the module docstring).
MAX_CATEGORIES = 32


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
        if isinstance(value, str):  # a category; its feature's kind is checked by FeatureSpace
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
    """Maps feature names to columns, keeps per-column running means for imputation, and codes
    the values of categorical features (see the module docstring)."""

    def __init__(self, max_categories: int = MAX_CATEGORIES):
        if not isinstance(max_categories, (int, np.integer)) or isinstance(max_categories, bool) \
                or max_categories < 1:
            raise ValueError(f"max_categories must be an int >= 1, got {max_categories!r}")
        self.names: list = []
        self.index: dict = {}
        self.sums = np.zeros(0)
        self.counts = np.zeros(0)
        self._getter, self._getter_n = None, -1
        self.max_categories = int(max_categories)
        #: per column: whether it is categorical
        self.nominal: list[bool] = []
        #: per categorical column: value -> code, in code order
        self.categories: dict[int, dict[str, int]] = {}
        #: learned values mapped to "other" because their feature already had max_categories values
        self.overflow: dict = {}
        self._router_dim = 0

    def __len__(self) -> int:
        return len(self.names)

    @property
    def other(self) -> int:
        """The shared code of values beyond the bound, unknown values and missing categories."""
        return self.max_categories

    @property
    def has_nominal(self) -> bool:
        return bool(self.categories)

    @property
    def n_values(self) -> int:
        """Codes a categorical column can hold (``max_categories`` plus "other")."""
        return self.max_categories + 1

    @property
    def router_dim(self) -> int:
        """Width of the router's input: one column per numeric feature, ``n_values`` per
        categorical one."""
        return self._router_dim

    def check(self, x: Mapping) -> None:
        """Refuse a string for a known numeric feature or a non-string for a categorical one
        (``ValueError`` naming the feature); unknown features are not checked here."""
        index, nominal = self.index, self.nominal
        for k, value in x.items():
            j = index.get(k)
            if j is None:
                continue
            if nominal[j]:
                if not isinstance(value, str):
                    raise ValueError(f"feature {k!r} is categorical (first learned as text) but got "
                                     f"{value!r} ({type(value).__name__}); send its values as strings")
            elif isinstance(value, str):
                raise ValueError(f"feature {k!r} is numeric (first learned as a number) but got text "
                                 f"{value[:40]!r}")

    def register(self, x: Mapping | Iterable[Hashable]) -> int:
        """Add columns for features not seen before; returns how many were added.  A feature
        whose value here is a string becomes categorical (names alone: numeric features)."""
        new = [k for k in x if k not in self.index]
        if not new:
            return 0
        for k in sorted(new, key=_order_key):
            j = len(self.names)
            self.index[k] = j
            self.names.append(k)
            is_nominal = isinstance(x, Mapping) and isinstance(x[k], str)
            self.nominal.append(is_nominal)
            if is_nominal:
                self.categories[j] = {}
            self._router_dim += self.n_values if is_nominal else 1
        self.sums = np.concatenate([self.sums, np.zeros(len(new))])
        self.counts = np.concatenate([self.counts, np.zeros(len(new))])
        return len(new)

    def code(self, j: int, value: str, learn: bool = False) -> int:
        """Code of ``value`` in categorical column ``j``; ``learn=True`` assigns a new code
        (or counts an overflow when the column is full)."""
        codes = self.categories[j]
        c = codes.get(value)
        if c is not None:
            return c
        if not learn:
            return self.other
        if len(codes) < self.max_categories:
            codes[value] = c = len(codes)
            return c
        name = self.names[j]
        self.overflow[name] = self.overflow.get(name, 0) + 1
        return self.other

    def new_category(self, x: Mapping) -> bool:
        """Whether learning ``x`` would give some categorical value a new code."""
        index, cats = self.index, self.categories
        for k, value in x.items():
            j = index.get(k)
            if j is not None and j in cats and value not in cats[j] and len(cats[j]) < self.max_categories:
                return True
        return False

    def count_overflow(self, xs: list) -> None:
        """Count the values of learned events ``xs`` that map to "other" because their feature is
        full (what :meth:`code` counts on the per-event path; no value here is new with room)."""
        index, cats = self.index, self.categories
        for x in xs:
            for k, value in x.items():
                j = index.get(k)
                if j is not None and j in cats and value not in cats[j]:
                    self.overflow[k] = self.overflow.get(k, 0) + 1

    def means(self) -> np.ndarray:
        m = np.divide(self.sums, self.counts, out=np.zeros_like(self.sums), where=self.counts > 0)
        for j in self.categories:
            m[j] = self.other
        return m

    def vector(self, x: Mapping, learn: bool = False) -> np.ndarray:
        """Dense float64 vector: known features from ``x``, running means for the missing numeric
        ones, codes for categorical ones ("other" when missing or unknown); ``learn=True``
        assigns codes to new categories."""
        v = self.means()
        index = self.index
        cats = self.categories
        for k, value in x.items():
            j = index.get(k)
            if j is not None:
                if j in cats:
                    if not isinstance(value, str):
                        self.check({k: value})
                    v[j] = self.code(j, value, learn)
                else:
                    if isinstance(value, str):
                        self.check({k: value})
                    v[j] = check_value(k, value)
        return v

    def plain_row(self, x: Any) -> np.ndarray | None:
        """``x``'s values in column order when ``x`` is a plain ``dict`` holding exactly the known
        features with ``float``/``int`` values, else ``None`` (the caller then checks ``x`` value
        by value).  Why: the per-event path converts one dict per call, and this is the
        conversion without a Python step per feature beyond a type test.  The values are not
        range-checked here: the compiled step refuses NaN, inf and magnitudes beyond
        ``MAX_FEATURE`` before it changes anything."""
        names = self.names
        d = len(names)
        if type(x) is not dict or len(x) != d or d == 0:
            return None
        if self._getter_n != d:  # names only ever grow: their count identifies the getter
            self._getter, self._getter_n = itemgetter(*names), d
        try:
            values = self._getter(x)
        except KeyError:
            return None
        if d == 1:
            values = (values,)
        for v in values:
            t = type(v)
            if t is not float and t is not int:
                return None
        try:
            return np.array(values, dtype=np.float64)
        except OverflowError:  # an int beyond the float range: check_value names it
            return None

    def row(self, x: Mapping) -> np.ndarray:
        """Known numeric features of ``x`` in column order (checked, as floats), NaN where
        missing; features not known are ignored.  (For models without categorical features: the
        compiled per-event path's input.)"""
        v = np.full(len(self.names), np.nan)
        index = self.index
        for k, value in x.items():
            j = index.get(k)
            if j is not None:
                v[j] = check_value(k, value)
        return v

    def matrix(self, xs: list) -> np.ndarray:
        """Rows of already checked events as an ``(n, d)`` matrix: codes in categorical columns
        ("other" when missing or unknown), NaN for missing numeric features (to impute)."""
        n, d = len(xs), len(self.names)
        R = np.full((n, d), np.nan)
        cats = self.categories
        for j in cats:
            R[:, j] = self.other
        index = self.index
        for i, x in enumerate(xs):
            row = R[i]
            for k, value in x.items():
                j = index.get(k)
                if j is None:
                    continue
                if j in cats:
                    c = cats[j].get(value)
                    row[j] = self.other if c is None else c
                else:
                    row[j] = float(value)
        return R

    def observe(self, x: Mapping, xv: np.ndarray) -> None:
        """Update the running sums with the numeric features present in ``x`` (call once per
        learned event, ``xv`` its vector; categorical columns keep zero sums)."""
        index, cats = self.index, self.categories
        for k in x:
            j = index[k]
            if j in cats:
                continue
            self.sums[j] += xv[j]
            self.counts[j] += 1.0

    def encode(self, X: np.ndarray) -> np.ndarray:
        """The router's input for rows ``X`` (``(n, d)`` vectors): numeric columns as they are,
        each categorical column as a one-hot block of ``n_values`` columns.  Without
        categorical features this is ``X`` itself."""
        if not self.categories:
            return X
        n = X.shape[0]
        out = np.zeros((n, self._router_dim))
        pos = 0
        rows = np.arange(n)
        for j, nominal in enumerate(self.nominal):
            if nominal:
                out[rows, pos + X[:, j].astype(np.int64)] = 1.0
                pos += self.n_values
            else:
                out[:, pos] = X[:, j]
                pos += 1
        return out

    # -- state ---------------------------------------------------------------------------------
    def state(self) -> dict:
        """JSON-able description of the categorical columns (codes, overflow counts)."""
        return {"max_categories": self.max_categories,
                "nominal": [j for j, nom in enumerate(self.nominal) if nom],
                "categories": [list(self.categories[j]) for j in sorted(self.categories)],
                "overflow": [[k, v] for k, v in self.overflow.items()]}

    @classmethod
    def restore(cls, names: list, state: dict | None, max_categories: int = MAX_CATEGORIES) -> "FeatureSpace":
        """Inverse of :meth:`state` plus the column names (``state=None``: all numeric)."""
        state = state or {"max_categories": max_categories, "nominal": [], "categories": [], "overflow": []}
        fs = cls(int(state["max_categories"]))
        nominal = set(int(j) for j in state["nominal"])
        for j, name in enumerate(names):
            fs.index[name] = j
            fs.names.append(name)
            fs.nominal.append(j in nominal)
            fs._router_dim += fs.n_values if j in nominal else 1
        for j, values in zip(sorted(nominal), state["categories"]):
            fs.categories[j] = {v: c for c, v in enumerate(values)}
        fs.overflow = {k: int(v) for k, v in state["overflow"]}
        fs.sums, fs.counts = np.zeros(len(names)), np.zeros(len(names))
        return fs


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
