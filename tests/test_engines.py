"""The array engine (engine='numba') against the per-event path and against river's trees."""
from __future__ import annotations

import numpy as np
import pytest

from streammoe import DriftMoE
from streammoe.connectors import open_source
from streammoe.pools import ArrayTreePool
from streammoe.state import MemoryStore, state_digest


def events(name, n, seed=1):
    return list(open_source(name, n=n, seed=seed))


def per_event(model, evs):
    out = []
    for x, y in evs:
        out.append((model.predict_proba_one(x), model.last_expert))
        if y is not None:
            model.learn_one(x, y)
    return out


def accuracy(answers, evs):
    return np.mean([(max(p, key=p.get) if p else None) == y for (p, _), (_, y) in zip(answers, evs)])


def awkward_stream(n=3000, seed=0):
    """Features that appear late or go missing, a class that appears late, unlabelled events."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        x = {"a": float(rng.normal()), "b": float(rng.integers(0, 5))}
        if i > 700:
            x["late"] = float(rng.random())
        if i % 13 == 0:
            x.pop("a")
        y = int(x.get("a", 0) > 0) + (2 if i > 1500 and x["b"] > 3 else 0)
        out.append((x, None if i % 17 == 0 else y))
    return out


@pytest.mark.parametrize("name,n", [("sea_a", 4000), ("led_g", 2000), ("awkward", 3000)])
@pytest.mark.parametrize("combine", ["top1", "mixture"])
def test_windowed_path_equals_per_event_path(name, n, combine):
    evs = awkward_stream(n) if name == "awkward" else events(name, n)
    batch, single = DriftMoE(engine="numba", seed=4, combine=combine), DriftMoE(engine="numba", seed=4, combine=combine)
    got = []
    for start in range(0, n, 700):  # uneven batches that straddle router windows
        chunk = evs[start:start + 700]
        got += batch.predict_learn_many([x for x, _ in chunk], [y for _, y in chunk])
    assert got == per_event(single, evs)
    assert state_digest(batch.state_parts()) == state_digest(single.state_parts())


@pytest.mark.parametrize("name,n", [("sea_a", 3000), ("led_a", 1500), ("rbf_m", 1500)])
def test_numba_engine_with_river_exact_trees_is_the_river_engine(name, n):
    """With river's floating point reproduced, the array engine makes the river engine's decisions."""
    evs = events(name, n)
    reference = DriftMoE(engine="river", seed=3)
    fast = DriftMoE(engine="numba", seed=3)
    fast._pool = ArrayTreePool(fast.n_experts, dict(fast._pool.config, river_exact=True))
    for x, y in evs:
        pr, pf = reference.predict_proba_one(x), fast.predict_proba_one(x)
        assert (max(pr, key=pr.get) if pr else None) == (max(pf, key=pf.get) if pf else None)
        assert reference.last_expert == fast.last_expert
        np.testing.assert_allclose([pr.get(c, 0.0) for c in pf], list(pf.values()), rtol=1e-12, atol=1e-15)
        reference.learn_one(x, y)
        fast.learn_one(x, y)
    np.testing.assert_array_equal(reference.expert_usage(), fast.expert_usage())


@pytest.mark.parametrize("name,n", [("sea_a", 20000), ("led_a", 8000)])
def test_numba_accuracy_within_half_a_point_of_river(name, n):
    evs = events(name, n, seed=7)
    xs, ys = [x for x, _ in evs], [y for _, y in evs]
    fast = accuracy(DriftMoE(engine="numba", seed=42).predict_learn_many(xs, ys), evs)
    slow = accuracy(DriftMoE(engine="river", seed=42).predict_learn_many(xs, ys), evs)
    assert abs(fast - slow) <= 0.005, (fast, slow)


def test_numba_save_load_and_dirty_parts():
    evs = events("led_a", 1200)
    straight = DriftMoE(engine="numba", seed=1)
    expected = per_event(straight, evs)
    first = DriftMoE(engine="numba", seed=1)
    head = per_event(first, evs[:700])
    store = MemoryStore()
    first.save(store)
    assert first.state_parts().keys() >= {"pool", "expert/0", "expert/11", "router", "window", "meta", "stats"}
    resumed = DriftMoE.load(store)
    assert head + per_event(resumed, evs[700:]) == expected
    assert state_digest(resumed.state_parts()) == state_digest(straight.state_parts())
    # only the experts that learned are dirty; writing them over the old state gives the new state
    resumed.save(store)  # save() marks the model clean
    resumed.predict_learn_many([evs[0][0]], [evs[0][1]])
    dirty = resumed.dirty_parts()
    assert len([p for p in dirty if p.startswith("expert/")]) == resumed.top_k
    store.write("model", dirty, replace=False)
    assert state_digest(store.read("model")) == state_digest(resumed.state_parts())


def test_auto_engine_and_task_mode_grow_trees():
    model = DriftMoE(mode="task", seed=0)
    assert model._pool.config["engine"] == "numba"
    for x, y in events("led_a", 400):
        model.learn_one(x, y)
    assert model.n_experts_ == len(model.classes_) == 10
    clone = DriftMoE.from_parts(model.state_parts())
    x = events("led_a", 1, seed=9)[0][0]
    assert clone.predict_proba_one(x) == model.predict_proba_one(x)


def test_numba_engine_refuses_other_expert_kinds():
    with pytest.raises(ValueError, match="tree experts only"):
        DriftMoE(engine="numba", experts=["tree", {"kind": "tree", "grace_period": 10}])


@pytest.mark.parametrize("engine", ["numba", "river"])
def test_label_answers_match_the_probabilities(engine):
    evs = awkward_stream(1200, seed=3)
    xs, ys = [x for x, _ in evs], [y for _, y in evs]
    with_proba = DriftMoE(engine=engine, seed=2, window=64).predict_learn_many(xs, ys)
    labels = DriftMoE(engine=engine, seed=2, window=64).predict_learn_many(xs, ys, proba=False)
    assert labels == [(max(p, key=p.get) if p else None, e) for p, e in with_proba]
