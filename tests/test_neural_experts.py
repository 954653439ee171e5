"""Neural experts (LoRA / MoRA adapter mixtures): gating, budget, frozen units, determinism, state."""
from __future__ import annotations

import io
import zipfile

import numpy as np
import pytest
import torch

from streammoe import DriftMoE
from streammoe.experts.neural import AdapterMixtureExpert, LoRAExpert
from streammoe.experts.registry import expert_class, known_kinds, make_expert
from streammoe.state.codec import StateFormatError, state_digest


def flip_stream(n_per: int, seed: int, segments=(0, 1, 0), d: int = 4):
    """Two linearly separable concepts over the same inputs; concept 1 is concept 0 with labels flipped."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n_per * len(segments), d))
    y = (X[:, 0] + 0.5 * X[:, 1] > 0).astype(int)
    flip = np.repeat(np.asarray(segments), n_per)
    return X, np.where(flip == 1, 1 - y, y)


def run(expert, X, y, C=2):
    hits = []
    for x, t in zip(X, y):
        hits.append(int(np.argmax(expert.predict_proba(x, C)) == t))
        expert.learn(x, int(t))
    return np.array(hits)


def test_registered_kinds_and_specs():
    assert {"mora", "lora"} <= set(known_kinds())
    e = make_expert({"kind": "mora", "units": 4, "top_k": 1}, seed=1, grace_period=50, delta=1e-7, binary=False)
    assert isinstance(e, AdapterMixtureExpert) and e.n_units == 4 and e.kind == "mora"
    lora = make_expert("lora", seed=1, grace_period=50, delta=1e-7, binary=False)
    assert isinstance(lora, LoRAExpert) and lora.n_ranks == 4 and expert_class("lora") is LoRAExpert
    with pytest.raises(ValueError, match="unknown mora expert option"):
        make_expert({"kind": "mora", "rnak": 3}, seed=1, grace_period=50, delta=1e-7, binary=False)


@pytest.mark.parametrize("bad", [{"top_k": 0}, {"hidden": 1.5}, {"base": "sometimes"}, {"units": 20},
                                 {"drift_delta": 2.0}, {"lr": float("nan")}, {"batch": True}])
def test_bad_options_are_named(bad):
    name = next(iter(bad))
    with pytest.raises(ValueError, match=name if name != "units" else "max_units"):
        AdapterMixtureExpert(seed=0, **bad)


def test_knows_nothing_before_first_step_then_learns():
    X, y = flip_stream(600, 1, segments=(0,))
    e = AdapterMixtureExpert(seed=3, batch=8)
    assert not e.predict_proba(X[0], 2).any()
    hits = run(e, X, y)
    assert e.n_steps == 600 // 8
    assert hits[-200:].mean() > 0.9
    p = e.predict_proba(X[0], 3)
    assert p.shape == (3,) and p[2] == 0.0 and abs(p.sum() - 1) < 1e-12


def test_gating_picks_at_most_k_units_and_batch_equals_single():
    X, y = flip_stream(400, 2, segments=(0,))
    e = AdapterMixtureExpert(seed=5, units=8, top_k=3)
    run(e, X, y)
    for x in X[:50]:
        active = e.active_units(x)
        assert 1 <= len(active) <= 3
    lora = LoRAExpert(seed=5, units=3, top_k=1, max_units=4)
    run(lora, X, y)
    assert all(len(lora.active_units(x)) == 1 for x in X[:20])
    # the per-event gate (fast path) and the micro-batch gate agree row by row
    Xs = X[:64]
    _, batch_mask = e._forward(Xs)
    single = np.stack([e._forward(x[None, :])[1][0] for x in Xs])
    assert np.array_equal(batch_mask, single)


def test_drift_freezes_units_grows_new_ones_within_budget_and_frozen_units_never_change():
    X, y = flip_stream(1500, 3, segments=(0, 1, 0, 1))
    e = AdapterMixtureExpert(seed=7, units=4, top_k=2, grow=2, max_units=6, drift_delta=0.01)
    snapshots: dict[int, tuple[np.ndarray, np.ndarray]] = {}  # unit id -> (A row, B row) when first seen frozen
    max_units = 0
    for x, t in zip(X, y):
        e.predict_proba(x, 2)
        e.learn(x, int(t))
        max_units = max(max_units, e.n_units)
        for u in np.flatnonzero(e.unit_frozen):
            key = int(e.unit_id[u])
            rows = (e.p["A"][u].copy(), e.p["B"][u, :2].copy())
            if key in snapshots:
                assert np.array_equal(snapshots[key][0], rows[0]) and np.array_equal(snapshots[key][1], rows[1])
            else:
                snapshots[key] = rows
        # every event keeps a trainable unit active so learning never stalls
        if e.unit_frozen.any():
            assert (~e.unit_frozen[e.active_units(x)]).any()
    assert e.n_drifts >= 2
    assert e.unit_frozen.sum() >= 2
    assert max_units <= 6
    assert e.n_pruned >= 1


def test_idle_trainable_units_are_pruned():
    X, y = flip_stream(700, 4, segments=(0,))
    e = AdapterMixtureExpert(seed=1, units=8, top_k=2, idle=1.0, idle_window=100, grow=0)
    run(e, X, y)
    assert e.n_units == 2 and e.n_pruned == 6


def test_frozen_expert_parameters_never_change():
    X, y = flip_stream(300, 5, segments=(0, 1))
    e = AdapterMixtureExpert(seed=2, batch=16)
    run(e, X[:300], y[:300])
    e.learn(X[300], int(y[300]))  # leave a partial micro-batch in the buffer
    e.frozen = True
    blob = e.to_state()
    params = {k: v.copy() for k, v in e.p.items()}
    run(e, X[301:], y[301:])
    assert all(np.array_equal(params[k], e.p[k]) for k in params)
    assert e.to_state() == blob
    e.frozen = False
    run(e, X[301:400], y[301:400])
    assert not np.array_equal(params["Wo"], e.p["Wo"])


def test_base_online_vs_frozen_after_warmup():
    X, y = flip_stream(400, 6, segments=(0,))
    e = AdapterMixtureExpert(seed=1, base="frozen", warmup=160, batch=16)
    run(e, X[:160], y[:160])
    assert e.base_frozen
    W1, Wo, mean = e.p["W1"].copy(), e.p["Wo"].copy(), e.mean.copy()
    A = e.p["A"].copy()
    run(e, X[160:], y[160:])
    assert np.array_equal(W1, e.p["W1"]) and np.array_equal(Wo, e.p["Wo"]) and np.array_equal(mean, e.mean)
    assert not np.array_equal(A, e.p["A"])  # the adapter still learns
    online = AdapterMixtureExpert(seed=1, warmup=160)
    run(online, X, y)
    assert not online.base_frozen


def test_growing_features_and_classes_and_bad_input():
    rng = np.random.default_rng(0)
    e = AdapterMixtureExpert(seed=0, batch=4)
    for i in range(40):
        d = 2 if i < 20 else 5
        x = rng.normal(size=d)
        e.predict_proba(x, 3)
        e.learn(x, int(i % (2 if i < 30 else 3)))
    assert e.n_features == 5 and e.n_classes == 3
    assert e.predict_proba(rng.normal(size=6), 4).shape == (4,)
    with pytest.raises(ValueError, match="only n_classes=2"):
        e.predict_proba(rng.normal(size=5), 2)
    with pytest.raises(ValueError, match="vectors may only grow"):
        e.learn(np.zeros(3), 0)
    with pytest.raises(ValueError, match="non-finite"):
        e.learn(np.array([0, np.nan, 0, 0, 0.0]), 0)
    with pytest.raises(ValueError, match="class index"):
        e.learn(np.zeros(5), -1)
    with pytest.raises(ValueError, match="class index"):
        e.learn(np.zeros(5), 1.5)


def test_determinism_with_seeds():
    X, y = flip_stream(500, 8, segments=(0, 1))
    a, b, c = (AdapterMixtureExpert(seed=s, drift_delta=0.01) for s in (11, 11, 12))
    ha, hb, _ = run(a, X, y), run(b, X, y), run(c, X, y)
    assert np.array_equal(ha, hb) and a.to_state() == b.to_state()
    assert a.to_state() != c.to_state()
    # the caller's torch thread setting is left as it was
    assert torch.get_num_threads() >= 1


def test_state_round_trip_continues_exactly_without_pickle():
    X, y = flip_stream(700, 9, segments=(0, 1, 0))
    for cls in (AdapterMixtureExpert, LoRAExpert):
        e = cls(seed=4, drift_delta=0.01)
        run(e, X[:1003], y[:1003])  # mid micro-batch, after a drift
        blob = e.to_state()
        with zipfile.ZipFile(io.BytesIO(blob)) as z:
            for name in z.namelist():  # every member is a plain .npy that loads with allow_pickle=False
                np.load(io.BytesIO(z.read(name)), allow_pickle=False)
        r = cls.from_state(blob)
        assert r.to_state() == blob
        ha, hb = run(e, X[1003:], y[1003:]), run(r, X[1003:], y[1003:])
        assert np.array_equal(ha, hb) and e.to_state() == r.to_state()
    with pytest.raises(StateFormatError):
        LoRAExpert.from_state(AdapterMixtureExpert(seed=0).to_state())
    with pytest.raises(StateFormatError):
        AdapterMixtureExpert.from_state(b"not a state")


def test_driftmoe_with_neural_experts_saves_and_continues(tmp_path):
    X, y = flip_stream(300, 10, segments=(0, 1, 0))
    events = [({f"f{j}": float(v) for j, v in enumerate(x)}, int(t)) for x, t in zip(X, y)]
    m = DriftMoE(experts=["tree", {"kind": "mora", "units": 4}, "lora"], hidden=16, window=32, seed=3, engine="river")
    for x, t in events[:450]:
        m.predict_one(x)
        m.learn_one(x, t)
    m.save(tmp_path)
    r = DriftMoE.load(tmp_path)
    assert state_digest(r.state_parts()) == state_digest(m.state_parts())
    for x, t in events[450:]:
        assert m.predict_proba_one(x) == r.predict_proba_one(x)
        m.learn_one(x, t)
        r.learn_one(x, t)
    assert state_digest(r.state_parts()) == state_digest(m.state_parts())
    assert [e["kind"] for e in m.describe()["experts"]] == ["river-ht", "mora", "lora"]
