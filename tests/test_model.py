"""DriftMoE as a river estimator: river's own checks, determinism, bad input, save/load."""
from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
import pytest
from river import datasets
from river.checks import check_estimator
from river.datasets import synth

from streammoe import DriftMoE
from streammoe.state import FileStore, MemoryStore, StateFormatError, state_digest


def sea(n, seed=1, variant=0):
    return list(synth.SEA(variant=variant, seed=seed, noise=0.1).take(n))


def prequential(model, events):
    preds = []
    for x, y in events:
        preds.append(model.predict_proba_one(x))
        model.learn_one(x, y)
    return preds


@pytest.mark.parametrize("params", [{"hidden": 16, "window": 16}, {"mode": "task", "hidden": 16},
                                    {"hidden": 16, "window": 16, "combine": "mixture"}])
def test_river_check_estimator(params):
    check_estimator(DriftMoE(**params))


def test_learns_sea_better_than_majority():
    events = sea(4000)
    model = DriftMoE(seed=3)
    correct = sum(max(p, key=p.get) == y if p else False for p, (_, y) in zip(prequential(model, events), events))
    majority = max(np.mean([y for _, y in events]), 1 - np.mean([y for _, y in events]))
    assert correct / len(events) > majority + 0.1
    assert model.router_steps_ == 4000 // 256
    assert model.expert_usage().sum() == 4000


@pytest.mark.parametrize("mode", ["data", "task"])
def test_same_seed_same_predictions(mode):
    events = list(datasets.ImageSegments().take(600))
    a = prequential(DriftMoE(mode=mode, seed=7, window=32), events)
    b = prequential(DriftMoE(mode=mode, seed=7, window=32), events)
    assert a == b
    c = prequential(DriftMoE(mode=mode, seed=8, window=32), events)
    assert a != c


def test_key_order_never_matters():
    events = list(datasets.ImageSegments().take(400))
    rng = np.random.default_rng(0)
    shuffled = []
    for x, y in events:
        keys = list(x)
        rng.shuffle(keys)
        shuffled.append(({k: x[k] for k in keys}, y))
    assert prequential(DriftMoE(seed=1, window=32), events) == prequential(DriftMoE(seed=1, window=32), shuffled)


def test_labels_int_str_bool_and_new_classes_mid_stream():
    model = DriftMoE(mode="task", seed=0, window=8)
    xs = sea(900)
    for i, (x, y) in enumerate(xs):
        label = ["a", "b"][int(y)] if i < 300 else (True if y else False) if i < 600 else int(y) + 10
        model.learn_one(x, label)
    # bool True == int 1 in Python dicts, so True shares a class with nothing else here
    assert set(model.classes_[:2]) == {"a", "b"} and set(model.classes_[2:]) == {False, True, 10, 11}
    assert model.n_experts_ == len(model.classes_)  # task mode grew one expert per class
    assert set(model.predict_proba_one(xs[0][0])) == set(model.classes_)


def test_features_appearing_and_missing():
    model = DriftMoE(seed=0, window=8)
    for i in range(200):
        x = {"a": i % 7, "b": (i * 3) % 5}
        if i >= 100:
            x["c"] = float(i % 2)  # appears later
        if i % 10 == 0:
            x.pop("a")  # sometimes missing: imputed with its running mean
        model.learn_one(x, i % 2)
    assert model.features_ == ["b", "a", "c"]  # event 0 lacked "a": columns follow first appearance
    assert model._router.n_inputs == 3
    assert model.predict_one({"b": 1.0}) in (0, 1)
    assert model.predict_one({"zzz": 1.0}) in (0, 1)  # unknown features are ignored


# (a string is a category of a new categorical feature: see tests/test_categorical.py)
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -math.inf, None, [1.0], {"v": 1}])
def test_bad_feature_values_raise_naming_the_feature(bad):
    model = DriftMoE()
    model.learn_one({"ok": 1.0}, 0)
    with pytest.raises(ValueError, match="temperature_sensor"):
        model.learn_one({"ok": 1.0, "temperature_sensor": bad}, 1)
    with pytest.raises(ValueError, match="temperature_sensor"):
        model.predict_one({"temperature_sensor": bad})
    assert model.n_learned_ == 1  # nothing half-learned


def test_bad_labels_raise():
    with pytest.raises(ValueError, match="label"):
        DriftMoE().learn_one({"a": 1.0}, 1.5)


def test_bad_constructor_arguments():
    with pytest.raises(ValueError, match="mode"):
        DriftMoE(mode="regime")
    with pytest.raises(ValueError, match="engine"):
        DriftMoE(engine="fortran")


def test_learn_many_matches_learn_one():
    events = list(datasets.ImageSegments().take(300))
    one, many = DriftMoE(seed=2, window=32), DriftMoE(seed=2, window=32)
    for x, y in events:
        one.learn_one(x, y)
    X = pd.DataFrame([x for x, _ in events])
    many.learn_many(X, pd.Series([y for _, y in events]))
    assert state_digest(one.state_parts()) == state_digest(many.state_parts())
    probe = X.iloc[:20]
    pd.testing.assert_frame_equal(one.predict_proba_many(probe), many.predict_proba_many(probe))
    assert list(one.predict_many(probe)) == [one.predict_one(x) for x in events_x(events[:20])]


def events_x(events):
    return [x for x, _ in events]


@pytest.mark.parametrize("mode", ["data", "task"])
def test_save_load_continues_exactly(tmp_path, mode):
    events = list(datasets.ImageSegments().take(900))
    head, tail = events[:450], events[450:]
    straight = DriftMoE(mode=mode, seed=5, window=64)
    prequential(straight, head)
    expected = prequential(straight, tail)

    first = DriftMoE(mode=mode, seed=5, window=64)
    prequential(first, head)
    first.save(tmp_path)  # mid-window: the router's window buffer must survive too
    assert FileStore(tmp_path).names() == ["model"]
    resumed = DriftMoE.load(tmp_path)
    assert prequential(resumed, tail) == expected
    assert state_digest(resumed.state_parts()) == state_digest(straight.state_parts())


def test_dirty_parts_track_changes():
    model = DriftMoE(seed=0, window=1000)
    for x, y in sea(60):
        model.learn_one(x, y)
    model.mark_clean()
    x, y = sea(1, seed=9)[0]
    model.learn_one(x, y)
    dirty = set(model.dirty_parts())
    assert {"meta", "stats", "window"} <= dirty
    assert "router" not in dirty  # no router step in this window yet
    assert len([p for p in dirty if p.startswith("expert/")]) == model.top_k
    store = MemoryStore()
    model.save(store)
    store.write("model", model.dirty_parts(), replace=False)
    assert state_digest(store.read("model")) == state_digest(model.state_parts())


def test_state_is_not_pickle_and_rejects_garbage():
    model = DriftMoE(seed=0)
    for x, y in sea(100):
        model.learn_one(x, y)
    parts = model.state_parts()
    assert all(b"\x80\x04" not in blob[:2] for blob in parts.values())
    broken = dict(parts, router=b"not an npz")
    with pytest.raises(StateFormatError):
        DriftMoE.from_parts(broken)


def test_introspection():
    model = DriftMoE(seed=0, window=32)
    for x, y in itertools.islice(sea(500), 500):
        model.learn_one(x, y)
    w = model.router_weights({"0": 1.0, "1": 2.0, "2": 3.0})
    assert w.shape == (12,) and abs(w.sum() - 1) < 1e-12
    model.predict_one({"0": 1.0, "1": 2.0, "2": 3.0})
    assert model.last_expert == int(np.argmax(w))
    info = model.describe()
    assert info["n_learned"] == 500 and len(info["experts"]) == 12
    acc = model.expert_accuracy()
    assert np.all((acc[~np.isnan(acc)] >= 0) & (acc[~np.isnan(acc)] <= 1))


def test_labels_that_python_would_merge_are_refused():
    model = DriftMoE(seed=0)
    model.learn_one({"a": 1.0}, True)
    before = state_digest(model.state_parts())
    with pytest.raises(ValueError, match="equals the known class True"):
        model.learn_one({"a": 2.0}, 1)
    with pytest.raises(ValueError, match="event 1"):
        model.predict_learn_many([{"a": 1.0}, {"a": 2.0}], [True, 1])
    assert state_digest(model.state_parts()) == before
    model.learn_one({"a": 2.0}, False)
    assert model.classes_ == [True, False]
