"""Named presets: every factory builds a working, seeded, deterministic DriftMoE; overrides apply."""
from __future__ import annotations

import numpy as np
import pytest
from river import checks

import streammoe
from streammoe import DriftMoE
from streammoe.presets import PRESETS, _build, make_model


def events(n: int, seed: int):
    rng = np.random.default_rng(seed)
    X = rng.uniform(0, 10, size=(n, 3))
    y = np.where(X[:, 0] + X[:, 1] > 10, "hi", "lo")
    y[n // 2:] = np.where(X[n // 2:, 0] > 5, "hi", "lo")
    return [({f"x{j}": float(v) for j, v in enumerate(x)}, str(t)) for x, t in zip(X, y)]


def test_the_required_presets_exist_and_are_exported():
    assert {"driftmoe-data", "driftmoe-task", "driftmoe-adaptive", "driftmoe-hetero"} <= set(PRESETS)
    assert streammoe.PRESETS is PRESETS


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_preset_learns_and_is_deterministic(name):
    stream = events(400, 1)
    runs = []
    for _ in range(2):
        model = PRESETS[name](seed=7, hidden=64)
        assert isinstance(model, DriftMoE) and model.seed == 7
        preds = []
        for x, y in stream:
            preds.append(model.predict_one(x))
            model.learn_one(x, y)
        runs.append(preds)
    assert runs[0] == runs[1]
    acc = np.mean([p == y for p, (_, y) in zip(runs[0], stream)])
    assert acc > 0.6, f"{name} accuracy {acc}"


def test_preset_contents():
    assert make_model("driftmoe-data")._get_params() == DriftMoE()._get_params()
    assert make_model("driftmoe-task").mode == "task"
    assert make_model("driftmoe-adaptive").adaptive["budget"] >= 12
    kinds = [e["kind"] for e in make_model("driftmoe-hetero").describe()["experts"]]
    assert "river-ht" in kinds and "mora" in kinds
    assert {e["kind"] for e in make_model("driftmoe-neural").describe()["experts"]} == {"mora"}


def test_overrides_and_errors():
    m = make_model("driftmoe-adaptive", seed=3, window=64, adaptive={"budget": 20})
    assert (m.window, m.adaptive, m.seed) == (64, {"budget": 20}, 3)
    assert make_model("driftmoe-hetero", seed=1)._get_params() != make_model("driftmoe-hetero", seed=2)._get_params()
    with pytest.raises(ValueError, match="unknown model preset 'nope'"):
        make_model("nope")
    with pytest.raises(ValueError, match="valid DriftMoE parameters"):
        make_model("driftmoe-data", windw=3)
    with pytest.raises(ValueError, match="seed="):
        _build({}, 1, {"seed": 2})


def test_neural_preset_passes_river_checks():
    checks.check_estimator(make_model("driftmoe-neural", hidden=16))
