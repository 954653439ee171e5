"""The batch fast path of ``predict_learn_many``: C-level checks and conversion of plain batches
(``plain_matrix`` / ``plain_labels``) and the learners' top-k membership must agree with the
per-event rules, and must step aside (``None`` / ``False``) for anything those rules treat specially."""
from __future__ import annotations

import numpy as np
import pytest

from streammoe.features import FeatureSpace, LabelSpace, check_features, plain_labels, plain_matrix
from streammoe.model import DriftMoE

NAMES = ["a", "b", "c"]


def per_event_matrix(xs):
    fs = FeatureSpace()
    fs.register(NAMES)
    for x in xs:
        check_features(x)
    return np.array([fs.vector(x) for x in xs])


@pytest.mark.parametrize("xs", [
    [{"a": 1.5, "b": -2.0, "c": 3.25}, {"c": 0.0, "a": 1e30, "b": -0.0}],      # key order does not matter
    [{"a": 1, "b": 2**60 + 1, "c": -7}, {"a": 0.5, "b": 3, "c": 2}],         # ints, converted as float(v)
])
def test_plain_batches_convert_exactly_as_the_per_event_rules(xs):
    got = plain_matrix(xs, NAMES)
    assert got is not None
    want = per_event_matrix(xs)
    assert got.dtype == np.float64 and got.tobytes() == want.tobytes()


@pytest.mark.parametrize("bad", [
    {"a": 1.0, "b": 2.0},                       # missing feature: imputation is the per-event path's job
    {"a": 1.0, "b": 2.0, "c": 3.0, "d": 4.0},   # extra (new) feature: growth
    {"a": 1.0, "b": 2.0, "x": 3.0},             # same count, unknown name
    {"a": float("nan"), "b": 2.0, "c": 3.0},
    {"a": float("inf"), "b": 2.0, "c": 3.0},
    {"a": "1.5", "b": 2.0, "c": 3.0},           # numpy would parse the string; the rules refuse it
    {"a": True, "b": 2.0, "c": 3.0},            # bools and numpy scalars: per-event rules
    {"a": np.float32(1.5), "b": 2.0, "c": 3.0},
    {"a": 15 * 10**307, "b": 2.0, "c": 3.0},    # an int beyond +-1e308 is refused per event
    {"a": 10**308 * 2, "b": 2.0, "c": 3.0},
    {"a": 10**400, "b": 2.0, "c": 3.0},
    {"a": 1e300, "b": 2.0, "c": 3.0},           # beyond features.MAX_FEATURE: refused per event
    {"a": 10**31, "b": 2.0, "c": 3.0},
    {"a": None, "b": 2.0, "c": 3.0},
])
def test_anything_unusual_takes_the_per_event_path(bad):
    assert plain_matrix([{"a": 1.0, "b": 2.0, "c": 3.0}, bad], NAMES) is None


def test_labels_that_would_merge_or_need_converting_take_the_per_event_path():
    labels = LabelSpace()
    labels.add(1)
    labels.add("x")
    assert plain_labels([1, "x", None, 2, "y"], labels)
    assert not plain_labels([1, True], labels)        # True equals the known class 1 (an int)
    assert not plain_labels([np.int64(1)], labels)    # numpy scalars are normalised per event
    assert not plain_labels([1.0], labels)            # floats are refused per event


def test_batch_with_int_and_float_features_equals_the_per_event_loop():
    rng = np.random.default_rng(5)
    evs = [({"a": int(rng.integers(-3, 4)), "b": float(rng.normal()), "c": int(rng.integers(0, 2))},
            int(rng.integers(0, 3)) if i % 7 else None) for i in range(1500)]
    batch, single = DriftMoE(engine="numba", seed=1, window=64), DriftMoE(engine="numba", seed=1, window=64)
    got = []
    for s in range(0, len(evs), 300):
        chunk = evs[s:s + 300]
        got += batch.predict_learn_many([x for x, _ in chunk], [y for _, y in chunk])
    want = []
    for x, y in evs:
        want.append((single.predict_proba_one(x), single.last_expert))
        if y is not None:
            single.learn_one(x, y)
    assert got == want
    assert batch.state_parts() == single.state_parts()


def test_top_k_members_are_the_stable_argsort_top_k():
    from streammoe.experts.fast_loop import top_k_members

    rng = np.random.default_rng(0)
    for _ in range(50):
        n, E = int(rng.integers(1, 40)), int(rng.integers(1, 15))
        W = rng.integers(0, 4, size=(n, E)).astype(np.float64)  # many ties
        k = int(rng.integers(1, E + 1))
        want = np.zeros(E, dtype=bool)
        want[np.unique(np.argsort(-W, axis=1, kind="stable")[:, :k])] = True
        assert (top_k_members(W, k) == want).all()
