"""Pools of neural experts: the windowed path (one compiled pass per expert per router window)
equals the per-event path bit for bit, and the pool's memory stays bounded across drifts."""
from __future__ import annotations

import numpy as np
import pytest

from streammoe import DriftMoE
from streammoe.connectors.synthetic import SyntheticSource
from streammoe.experts import neural_window
from streammoe.experts.neural import AdapterMixtureExpert
from streammoe.presets import make_model

#: eager neural experts: drifts, unit pruning and growth all happen within a few thousand events
EAGER = {"kind": "mora", "drift_delta": 0.05, "idle_window": 300, "idle": 0.05, "batch": 8}


def events(name: str, n: int, seed: int = 42) -> tuple[list, list]:
    ev = list(SyntheticSource(name, n=n, seed=seed))
    return [x for x, _ in ev], [y for _, y in ev]


def run_both(make, xs, ys, chunk: int = 333):
    """The same events through ``predict_learn_many`` (windowed) and the per-event path."""
    fast, slow = make(), make()
    got = []
    for s in range(0, len(xs), chunk):
        got += fast.predict_learn_many(xs[s:s + chunk], ys[s:s + chunk])
    want = []
    for x, y in zip(xs, ys):
        want.append((slow.predict_proba_one(x), slow.last_expert))
        if y is not None:
            slow.learn_one(x, y)
    return fast, slow, got, want


def assert_identical(fast: DriftMoE, slow: DriftMoE, got: list, want: list) -> None:
    assert got == want  # probabilities compared as floats: bit for bit
    a, b = fast.state_parts(), slow.state_parts()
    assert a.keys() == b.keys()
    assert [k for k in a if a[k] != b[k]] == []
    assert fast.expert_usage().tolist() == slow.expert_usage().tolist()


@pytest.fixture
def counted(monkeypatch):
    """Counts how the windowed runs ended, to prove the rare paths were taken."""
    seen = {"step": 0, "grow": 0, "split": 0}
    kernel, feed = neural_window.expert_events, neural_window._feed_adwin

    def counting_kernel(*args):
        out = kernel(*args)
        seen["step"] += out[1] == neural_window.STOP_STEP
        seen["grow"] += out[1] == neural_window.STOP_GROW
        return out

    def counting_feed(ex, errs):
        t = feed(ex, errs)
        seen["split"] += t is not None and t < len(errs) - 1
        return t

    monkeypatch.setattr(neural_window, "expert_events", counting_kernel)
    monkeypatch.setattr(neural_window, "_feed_adwin", counting_feed)
    return seen


@pytest.mark.parametrize("stream", ["sea_a", "led_a"])
def test_neural_preset_windowed_equals_per_event(stream):
    xs, ys = events(stream, 4000)
    fast, slow, got, want = run_both(lambda: make_model("driftmoe-neural", seed=7), xs, ys)
    assert fast._pool.windowed()
    assert_identical(fast, slow, got, want)


@pytest.mark.parametrize("stream,overrides", [
    ("led_a", {}),
    ("led_g", {"combine": "mixture", "top_k": 2, "window": 50}),
    ("sea_a", {"window": 128}),
    ("led_a", {"top_k": 3, "window": 97}),
])
def test_drifts_pruning_and_growth_inside_windows_change_nothing(stream, overrides, counted):
    xs, ys = events(stream, 6000, seed=3)
    params = dict({"experts": [dict(EAGER) for _ in range(3)], "top_k": 1, "hidden": 16}, **overrides)
    fast, slow, got, want = run_both(lambda: DriftMoE(seed=11, engine="river", **params), xs, ys)
    assert_identical(fast, slow, got, want)
    assert counted["step"] > 0
    if not overrides:  # the first case takes every rare path of the windowed run
        experts = fast._pool.experts
        assert sum(e.n_drifts for e in experts) > 0 and sum(e.n_pruned for e in experts) > 0
        assert counted["grow"] > 0  # an expert's first learned event (growth) inside a window
        assert counted["split"] > 0  # a drift inside a compiled run made it re-run up to the drift


def test_unlabelled_events_new_features_new_classes_lora_and_frozen_experts():
    rng = np.random.default_rng(5)
    xs, ys = [], []
    for i in range(3000):
        d = 3 if i < 1200 else 4  # a fourth feature appears mid-stream
        x = {f"f{j}": float(v) for j, v in enumerate(rng.normal(size=d))}
        if i % 11 == 5:
            del x["f1"]  # missing: imputed with its running mean
        c = 3 if i < 2000 else 4  # a new class appears mid-stream
        y = int((x["f0"] > 0) + (x.get("f2", 0) > 0.5) + (c == 4 and x["f0"] > 1.5))
        xs.append(x)
        ys.append(None if i % 7 == 3 else y)
    specs = [dict(EAGER), {"kind": "lora", "batch": 4}, dict(EAGER, block=2, units=3, top_k=2)]

    def make():
        m = DriftMoE(seed=2, engine="river", experts=specs, top_k=2, hidden=16, window=64, combine="mixture")
        m._pool.set_frozen(1, False)
        return m

    fast, slow, got, want = run_both(make, xs, ys, chunk=250)
    assert_identical(fast, slow, got, want)

    # a frozen expert keeps predicting and never learns, on both paths
    fast._pool.set_frozen(0, True)
    slow._pool.set_frozen(0, True)
    before = fast._pool.part(0)
    more_x, more_y = xs[:600], ys[:600]
    got = fast.predict_learn_many(more_x, more_y)
    want = [slow._predict_learn_one(x, y) for x, y in zip(more_x, more_y)]
    assert got == want and fast._pool.part(0) == before
    assert fast.state_parts() == slow.state_parts()


def test_saved_model_continues_on_the_windowed_path_exactly(tmp_path):
    xs, ys = events("led_a", 3000, seed=9)
    a = make_model("driftmoe-neural", seed=1)
    a.predict_learn_many(xs[:1300], ys[:1300])
    a.save(tmp_path)
    b = DriftMoE.load(tmp_path)
    ref = make_model("driftmoe-neural", seed=1)
    for x, y in zip(xs[:1300], ys[:1300]):
        ref._predict_learn_one(x, y)
    assert b.predict_learn_many(xs[1300:], ys[1300:]) == [ref._predict_learn_one(x, y) for x, y in
                                                           zip(xs[1300:], ys[1300:])]
    assert b.state_parts() == ref.state_parts()


def test_pools_with_other_experts_take_the_per_event_path():
    assert not make_model("driftmoe-hetero")._pool.windowed()
    assert not DriftMoE(engine="river", experts=["tree", "mora"])._pool.windowed()
    with pytest.raises(ValueError, match="neural experts"):
        DriftMoE(engine="river", experts=["tree"])._pool.run_window(np.ones((1, 1)), np.zeros((1, 0)),
                                                                    np.zeros(1, dtype=np.int64), 1, "top1", 0)


def _adapter_bytes_bound(e: AdapterMixtureExpert, d: int, C: int) -> int:
    """Weights, two Adam moments and a full micro-batch at the unit budget (``max_units``)."""
    o = e.options
    H, R = o["hidden"], o["max_units"] * o["block"]
    params = H * d + H + C * H + C + R * H + R * C
    return 8 * (3 * params + o["batch"] * d)


def test_neural_pool_memory_stays_within_its_budget_across_drifts():
    """Every drift freezes units and grows new ones; max_units bounds what an expert holds, so the
    model's saved state stops growing however many drifts the stream brings."""
    xs, ys = events("led_a", 8000, seed=4)
    spec = dict(EAGER, max_units=6, units=4, grow=2)
    m = DriftMoE(seed=3, engine="river", experts=[dict(spec) for _ in range(3)], top_k=1, hidden=16)
    sizes = []
    for s in range(0, len(xs), 500):
        m.predict_learn_many(xs[s:s + 500], ys[s:s + 500])
        for e in m._pool.experts:
            assert e.n_units <= 6
            assert e.nbytes() <= _adapter_bytes_bound(e, 24, 10)
        sizes.append(sum(len(b) for b in m.state_parts().values()))
    assert sum(e.n_drifts for e in m._pool.experts) >= 3  # several drifts happened
    # after the pool has filled its unit budget, the state does not keep growing
    assert max(sizes) <= 1.25 * sizes[len(sizes) // 4]


def test_drift_aware_neural_pool_memory_is_bounded_by_its_budget():
    """With the drift-aware pool, drifting experts are frozen and replaced; the budget bounds how many
    experts exist and max_units bounds each one, so the experts' bytes are bounded by their product."""
    xs, ys = events("led_a", 6000, seed=8)
    spec = dict(EAGER, max_units=6, units=4, grow=2)
    budget = 5
    m = DriftMoE(seed=5, engine="river", experts=[dict(spec) for _ in range(3)], top_k=1, hidden=16,
                 adaptive={"budget": budget, "grace": 100, "delta": 0.05})
    for s in range(0, len(xs), 500):
        m.predict_learn_many(xs[s:s + 500], ys[s:s + 500])
        experts = m._pool.experts
        assert len(experts) <= budget
        assert sum(e.nbytes() for e in experts) <= budget * _adapter_bytes_bound(experts[0], 24, 10)
        saved = [b for k, b in m.state_parts().items() if k.startswith("expert/")]
        assert len(saved) <= budget  # saved parts: the arrays plus their headers, counters and ADWIN
        assert max(len(b) for b in saved) <= 1.5 * _adapter_bytes_bound(experts[0], 24, 10)
    log = m.drift_log
    assert any(e["action"] == "prune" for e in log)  # the budget was reached and enforced
