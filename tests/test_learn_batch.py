"""``DriftMoE.learn_batch`` (the daemon's path for delayed labels) equals a loop of ``learn_one``."""
from __future__ import annotations

import pytest

from streammoe import PRESETS, DriftMoE
from streammoe.connectors import open_source
from streammoe.state.codec import state_digest


def _digest(model: DriftMoE) -> str:
    return state_digest(model.state_parts())


@pytest.mark.parametrize("name, overrides, stream", [
    ("driftmoe-data", {}, "sea_a"),
    ("driftmoe-data", {"engine": "river"}, "sea_a"),
    ("driftmoe-data", {}, "led_a"),
    ("driftmoe-task", {}, "sea_a"),
    ("driftmoe-neural", {}, "sea_a"),
    ("driftmoe-adaptive", {}, "sea_a"),
])
def test_learn_batch_equals_learn_one_loop(name, overrides, stream):
    data = list(open_source(stream, n=1200, seed=5))
    one, batch = (PRESETS[name](seed=3, window=64, **overrides) for _ in range(2))
    for start in range(0, len(data), 97):  # chunks that straddle router windows
        chunk = data[start:start + 97]
        for x, y in chunk:
            one.learn_one(x, y)
        batch.learn_batch([x for x, _ in chunk], [y for _, y in chunk])
        probe = chunk[0][0]
        assert one.predict_proba_one(probe) == batch.predict_proba_one(probe)
    assert _digest(one) == _digest(batch)


def test_learn_batch_with_new_features_and_classes_mid_batch():
    one, batch = DriftMoE(n_experts=4, window=16, seed=1), DriftMoE(n_experts=4, window=16, seed=1)
    xs = [{"a": float(i % 7)} if i < 30 else {"a": float(i % 7), "b": i / 10.0} for i in range(80)]
    ys = ["x" if i % 3 else "y" for i in range(60)] + ["z"] * 20
    for x, y in zip(xs, ys):
        one.learn_one(x, y)
    batch.learn_batch(xs, ys)
    assert _digest(one) == _digest(batch)


def test_learn_batch_checks_every_event_before_learning_anything():
    model = DriftMoE(n_experts=3, seed=1)
    model.learn_one({"a": 1.0}, 1)
    before = _digest(model)
    with pytest.raises(ValueError, match="event 2"):
        model.learn_batch([{"a": 1.0}, {"a": 2.0}, {"a": "hot"}], [0, 1, 0])
    with pytest.raises(ValueError, match="label for every event"):
        model.learn_batch([{"a": 1.0}], [None])
    with pytest.raises(ValueError, match="2 events but 1 labels"):
        model.learn_batch([{"a": 1.0}, {"a": 2.0}], [1])
    assert _digest(model) == before
