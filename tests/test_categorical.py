"""Categorical (string-valued) features: nominal splits in both tree engines, the router's
fixed-width encoding, the bound on distinct values, save/load, and accuracy against river's tree."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from river import tree

from streammoe import DriftMoE
from streammoe.experts.fast_tree import TreePool
from streammoe.experts.river_tree import RiverTreeExpert
from streammoe.pools import ArrayTreePool
from streammoe.state import MemoryStore, state_digest

COUNTRIES = ["FR", "DE", "US", "BR"]


def coded_stream(n: int, seed: int, n_cats: int, n_classes: int):
    """Dense rows ``[amount, c1, c2]`` (c1, c2 category codes) whose class depends on both codes."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        c1, c2, a = int(rng.integers(0, n_cats)), int(rng.integers(0, 4)), float(rng.normal())
        y = (c1 % n_classes + (c2 == 1) + (a > 0.5)) % n_classes
        if rng.random() < 0.1:
            y = int(rng.integers(0, n_classes))
        out.append(([a, c1, c2], int(y)))
    return out


def fraud_stream(n: int, seed: int, missing: bool = False, late_country: bool = False):
    """``amount, country, hour -> fraud``: the class depends on the country (and the amount)."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        country = COUNTRIES[int(rng.integers(0, 4))]
        if late_country and i > n // 2 and rng.random() < 0.3:
            country = "IT"
        amount = float(np.round(rng.exponential(50.0), 2))
        x = {"amount": amount, "country": country, "hour": int(rng.integers(0, 24))}
        y = int(country in ("BR", "IT") or (country == "US" and amount > 80.0))
        if rng.random() < 0.05:
            y = 1 - y
        if missing and i % 11 == 0:
            x.pop("country")
        out.append((x, y))
    return out


def per_event(model, evs):
    out = []
    for x, y in evs:
        out.append((model.predict_proba_one(x), model.last_expert))
        if y is not None:
            model.learn_one(x, y)
    return out


# --------------------------------------------------------------------------------- trees
@pytest.mark.parametrize("n,seed,n_cats,n_classes,tau,leaf", [
    (5000, 1, 3, 2, 0.05, "nba"), (8000, 2, 30, 2, 0.05, "nba"), (5000, 7, 12, 3, 0.25, "nba"),
    (6000, 3, 5, 4, 0.25, "nba"), (4000, 4, 20, 3, 0.25, "mc")])
def test_array_tree_with_nominal_features_is_bit_identical_to_river(n, seed, n_cats, n_classes, tau, leaf):
    """river's tree (multiway and binary nominal splits, river's default) against the array tree
    in river_exact mode: the same probabilities on every event and the same tree size (30
    categories exercise the value set's hash-table order, which breaks ties between equally good
    values, and categories unseen by a multiway branch)."""
    ht = tree.HoeffdingTreeClassifier(grace_period=50, delta=1e-7, tau=tau, leaf_prediction=leaf,
                                      nominal_attributes=[1, 2])
    pool = TreePool(1, 1, n_classes, tau=tau, leaf_prediction=leaf, river_exact=True)
    pool.add_features(2, [True, True], n_cats + 1)
    for v, y in coded_stream(n, seed, n_cats, n_classes):
        x = {0: v[0], 1: v[1], 2: v[2]}
        expected = np.zeros(n_classes)
        for c, p in ht.predict_proba_one(x).items():
            expected[c] = p
        np.testing.assert_array_equal(pool.predict_proba(0, np.array(v)), expected)
        ht.learn_one(x, y)
        pool.learn(0, np.array(v), y)
    assert pool.n_nodes(0) == ht.n_nodes >= 5
    nominal_splits = [f for f in pool.describe(0)["split_features"] if f > 0]
    assert nominal_splits  # the trees really split on categories


def test_array_tree_nominal_state_round_trip_continues_identically():
    data = coded_stream(6000, 5, 12, 3)
    pool = TreePool(2, 1, 3, tau=0.25)
    pool.add_features(2, [True, True], 13)
    for v, y in data[:3000]:
        pool.learn(0, np.array(v), y)
        pool.learn(1, np.array(v), (y + 1) % 3)
    clone = TreePool.from_arrays(pool.to_arrays())
    assert clone.nominal_features() == [1, 2] and clone.n_values == 13
    for v, y in data[3000:]:
        for t in range(2):
            np.testing.assert_array_equal(clone.predict_proba(t, np.array(v)), pool.predict_proba(t, np.array(v)))
            clone.learn(t, np.array(v), y)
            pool.learn(t, np.array(v), y)
    for name, arr in pool.to_arrays().items():
        np.testing.assert_array_equal(arr, clone.to_arrays()[name], err_msg=name)
    bad = pool.to_arrays()
    bad["cat_order"][0, 0, 0, 0] = 99
    with pytest.raises(ValueError, match="nominal categories"):
        TreePool.from_arrays(bad)
    with pytest.raises(ValueError, match="integer codes"):
        pool.predict_proba(0, np.array([0.0, 13.0, 1.0]))


def test_river_expert_with_nominal_columns_round_trips_bit_identically():
    data = [(np.array(v), y) for v, y in coded_stream(5000, 6, 10, 3)]
    expert = RiverTreeExpert(tau=0.25)
    expert.set_nominal([1, 2])
    for x, y in data[:2500]:
        expert.learn(x, y)
    blob = expert.to_state()
    restored = RiverTreeExpert.from_state(blob)
    assert restored.to_state() == blob and restored.tree.nominal_attributes == [1, 2]
    assert "Nominal" in repr(type(expert.tree._root))
    for x, y in data[2500:]:
        assert np.array_equal(expert.predict_proba(x, 3), restored.predict_proba(x, 3))
        expert.learn(x, y)
        restored.learn(x, y)
    assert expert.to_state() == restored.to_state()


# --------------------------------------------------------------------------------- the model
def test_driftmoe_learns_string_features_in_both_engines():
    for engine in ("river", "numba"):
        model = DriftMoE(engine=engine, seed=0)
        model.learn_one({"amount": 3.0, "country": "FR"}, 1)
        assert model.categorical_features_ == ["country"]
        assert set(model.predict_proba_one({"amount": 3.0, "country": "XX"})) == {1}  # unseen category
        assert model.predict_one({"amount": 1.0}) == 1  # missing category
        with pytest.raises(ValueError, match="categorical .* send its values as strings"):
            model.learn_one({"amount": 3.0, "country": 7}, 1)
        with pytest.raises(ValueError, match="numeric .* got text"):
            model.predict_one({"amount": "3.0", "country": "FR"})
        with pytest.raises(ValueError, match="event 1: feature 'country' is categorical"):
            model.predict_learn_many([{"amount": 1.0, "country": "FR"}, {"amount": 1.0, "country": 3}], [1, 0])
        assert model.n_learned_ == 1  # the batch was refused before anything was learned
        model.learn_one({"amount": 2.0, "country": "DE", "vip": True}, 0)  # booleans are 0/1
        assert model.categorical_features_ == ["country"]


@pytest.mark.parametrize("combine", ["top1", "mixture"])
def test_categorical_engines_make_the_same_decisions(combine):
    """With river's floating point reproduced, the array engine is the river engine on a
    categorical stream with a category that appears late and missing categories."""
    evs = fraud_stream(2500, seed=1, missing=True, late_country=True)
    reference = DriftMoE(engine="river", seed=3, combine=combine)
    fast = DriftMoE(engine="numba", seed=3, combine=combine)
    fast._pool = ArrayTreePool(fast.n_experts, dict(fast._pool.config, river_exact=True))
    for x, y in evs:
        pr, pf = reference.predict_proba_one(x), fast.predict_proba_one(x)
        assert reference.last_expert == fast.last_expert
        assert list(pr) == list(pf)
        assert (max(pr, key=pr.get) if pr else None) == (max(pf, key=pf.get) if pf else None)
        np.testing.assert_allclose(list(pr.values()), list(pf.values()), rtol=1e-12, atol=1e-15)
        reference.learn_one(x, y)
        fast.learn_one(x, y)
    np.testing.assert_array_equal(reference.expert_usage(), fast.expert_usage())
    country = fast.features_.index("country")
    assert fast._pool.trees.nominal_features() == [country]
    splits = [f for e in range(fast.n_experts_) for f in fast._pool.trees.describe(e)["split_features"]]
    assert country in splits  # the experts really split on the category


def test_windowed_path_equals_per_event_path_with_categories():
    evs = fraud_stream(3000, seed=2, missing=True, late_country=True)
    evs = [(x, None if i % 17 == 0 else y) for i, (x, y) in enumerate(evs)]
    batch = DriftMoE(engine="numba", seed=4, max_categories=4)
    single = DriftMoE(engine="numba", seed=4, max_categories=4)
    got = []
    for start in range(0, len(evs), 700):
        chunk = evs[start:start + 700]
        got += batch.predict_learn_many([x for x, _ in chunk], [y for _, y in chunk])
    assert got == per_event(single, evs)
    assert state_digest(batch.state_parts()) == state_digest(single.state_parts())
    assert batch.category_overflow_["country"] > 0  # "IT" was beyond max_categories=4


def test_category_bound_keeps_the_router_and_trees_flat():
    model = DriftMoE(engine="numba", seed=0, max_categories=8)
    rng = np.random.default_rng(0)
    for i in range(600):
        model.learn_one({"a": float(rng.normal()), "user": f"u{i}"}, int(i % 2))
    assert model._router.n_inputs == 1 + 9  # one numeric column, one one-hot block of 8 + "other"
    assert model._pool.trees.n_values == 9
    assert model.category_overflow_ == {"user": 600 - 8}
    assert model.describe()["category_overflow"] == {"user": 592}


@pytest.mark.parametrize("engine", ["numba", "river"])
def test_save_load_with_categories_continues_bit_identically(engine):
    evs = fraud_stream(1600, seed=3, missing=True, late_country=True)
    straight = DriftMoE(engine=engine, seed=1, window=64)
    expected = per_event(straight, evs)
    first = DriftMoE(engine=engine, seed=1, window=64)
    head = per_event(first, evs[:700])
    store = MemoryStore()
    first.save(store)
    resumed = DriftMoE.load(store)
    assert resumed.categorical_features_ == ["country"]
    assert head + per_event(resumed, evs[700:]) == expected
    assert state_digest(resumed.state_parts()) == state_digest(straight.state_parts())


@pytest.mark.parametrize("dtype", [object, "string"])
def test_pandas_text_columns(dtype):
    evs = fraud_stream(800, seed=4, missing=True)
    frame = pd.DataFrame([x for x, _ in evs])
    frame["country"] = frame["country"].astype(dtype)
    assert frame["country"].isna().any()
    y = pd.Series([y for _, y in evs])
    model = DriftMoE(seed=0, window=64)
    model.learn_many(frame.iloc[:600], y.iloc[:600])
    reference = DriftMoE(seed=0, window=64)
    for x, label in evs[:600]:
        reference.learn_one(x, label)
    assert state_digest(model.state_parts()) == state_digest(reference.state_parts())
    proba = model.predict_proba_many(frame.iloc[600:])
    assert list(proba.columns) == [1, 0] or list(proba.columns) == [0, 1]
    assert (model.predict_many(frame.iloc[600:]) == (proba.idxmax(axis=1))).all()


def test_a_class_that_depends_on_a_category_is_learned_as_well_as_river_hoeffding_tree():
    """Accuracy is prequential over one seeded stream, the same events for both."""
    evs = fraud_stream(6000, seed=5)
    ht = tree.HoeffdingTreeClassifier()
    model = DriftMoE(seed=42)
    hits_ht = hits_moe = 0
    for x, y in evs:
        hits_ht += ht.predict_one(x) == y
        hits_moe += model.predict_one(x) == y
        ht.learn_one(x, y)
        model.learn_one(x, y)
    assert hits_moe >= hits_ht, (hits_moe / len(evs), hits_ht / len(evs))


# --------------------------------------------------------------------------------- replay
def _fraud_csv(path, n: int = 3000, seed: int = 6):
    lines = ["amount,country,hour,fraud"]
    for x, y in fraud_stream(n, seed):
        lines.append(f"{x['amount']},{x['country']},{x['hour']},{y}")
    path.write_text("\n".join(lines) + "\n")
    return path


def test_replay_reads_a_text_column_as_categorical(tmp_path):
    """The CSV of the issue (`amount,country,hour,fraud`, country in FR/DE/US/BR), once refused
    whole, replays with DriftMoE beside river's tree, and learns it."""
    import json

    from typer.testing import CliRunner

    from streammoe.cli import app

    path = _fraud_csv(tmp_path / "cat.csv")
    out = tmp_path / "run"
    result = CliRunner().invoke(app, ["replay", str(path), "--model", "driftmoe", "--out", str(out), "-q"],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["bad_rows"] == 0 and summary["source"]["n"] == 3000
    assert summary["models"]["driftmoe"]["accuracy"] > 0.85
    # --categorical: numeric-looking codes (hour) read as categories too
    out2 = tmp_path / "run2"
    result = CliRunner().invoke(app, ["replay", str(path), "--categorical", "hour", "--out", str(out2), "-q"],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    from streammoe.connectors import open_source

    x, _ = next(iter(open_source(path, feature_types={"hour": "categorical"})))
    assert isinstance(x["hour"], str) and isinstance(x["country"], str) and isinstance(x["amount"], float)
    result = CliRunner().invoke(app, ["replay", str(path), "--categorical", "nope", "-q"])
    assert result.exit_code != 0 and "unknown columns" in result.output


# --------------------------------------------------------------------------------- serve
def test_serve_schema_accepts_categories_within_the_length_limit():
    from streammoe.service.schema import DecodeLimits, ReasonCode, decode_event

    ok = decode_event(b'{"id": "e1", "x": {"amount": 3, "country": "FR"}, "y": 1}')
    assert ok.x == {"amount": 3.0, "country": "FR"}
    limits = DecodeLimits(max_name_chars=8)
    assert decode_event(b'{"id": "e2", "x": {"country": "ABCDEFGH"}}', limits).x == {"country": "ABCDEFGH"}
    long = decode_event(b'{"id": "e3", "x": {"country": "ABCDEFGHI"}}', limits)
    assert long.reason_code is ReasonCode.BAD_FEATURE_VALUE and "9 characters" in long.reason
    for bad in (b"true", b"null", b"[1]", b'{"a": 1}'):
        dead = decode_event(b'{"id": "e4", "x": {"country": ' + bad + b"}}")
        assert dead.reason_code is ReasonCode.BAD_FEATURE_VALUE, bad
    # the decoded event goes straight into the model
    model = DriftMoE(seed=0)
    model.learn_one(ok.x, ok.y)
    assert model.categorical_features_ == ["country"]
