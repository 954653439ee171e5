"""The compiled per-event path (``predict_one`` / ``predict_proba_one`` / ``learn_one`` in one Numba
call each, :mod:`streammoe.experts.event_step`) must give, bit for bit, what the Python per-event
path and the windowed ``predict_learn_many`` give: predictions and saved state, in data and task
mode, with top-1 and mixture answers, with features and classes appearing mid-stream and
features missing.  The router's softmax runs NumPy's own ``exp`` inside the kernel; that too is
checked against ``np.exp`` / the NumPy softmax."""
from __future__ import annotations

import hashlib

import numpy as np
import pytest
from numba import njit

from streammoe.connectors import open_source
from streammoe.features import FeatureSpace
from streammoe.model import DriftMoE
from streammoe.routers.mlp import PAIRWISE_MAX, pairwise_sum, softmax, softmax_row
from streammoe.routers.numpy_exp import exp_loop_address, numpy_exp

N = 900


def _events(stream: str, n: int = N) -> list:
    """A stream with missing features, a feature that appears mid-stream and a late class."""
    rng = np.random.default_rng(7)
    out = []
    for i, (x, y) in enumerate(open_source(stream, n=n, seed=5)):
        x = dict(x)
        if i > n // 3 and rng.random() < 0.1:
            x.pop(sorted(x)[int(rng.integers(len(x)))])
        if i > n // 2:
            x["late"] = float(i % 7)
        if i > 2 * n // 3 and i % 5 == 0:
            y = "late_class"
        out.append((x, y))
    return out


def _digest(model: DriftMoE, preds: list) -> str:
    h = hashlib.sha256(repr(preds).encode())
    for name, blob in sorted(model.state_parts().items()):
        h.update(name.encode())
        h.update(blob)
    return h.hexdigest()


def _per_event(params: dict, events: list, compiled: bool) -> tuple[str, list]:
    model = DriftMoE(**params)
    if not compiled:  # the Python per-event path, as before the compiled step existed
        model._compiled_path = lambda: None
    preds, labels = [], []
    for x, y in events:
        preds.append((model.predict_proba_one(x), model.last_expert))
        labels.append(model.predict_one(x))
        model.learn_one(x, y)
    return _digest(model, preds), labels


def _windowed(params: dict, events: list) -> str:
    model = DriftMoE(**params)
    preds = model.predict_learn_many([x for x, _ in events], [y for _, y in events])
    return _digest(model, preds)


CONFIGS = [
    {"mode": "data", "combine": "top1", "window": 64},
    {"mode": "data", "combine": "mixture", "window": 64},
    {"mode": "task", "combine": "top1"},
    {"mode": "task", "combine": "mixture"},
]


@pytest.mark.parametrize("stream", ["sea_a", "led_a"])
@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: f"{c['mode']}-{c['combine']}")
def test_compiled_per_event_equals_python_per_event_and_windowed(stream, config):
    params = dict(config, engine="numba", hidden=32, seed=3)
    events = _events(stream)
    compiled, labels = _per_event(params, events, compiled=True)
    python, python_labels = _per_event(params, events, compiled=False)
    assert compiled == python
    assert labels == python_labels
    assert compiled == _windowed(params, events)


def test_the_compiled_path_serves_the_default_models():
    model = DriftMoE(engine="numba")
    assert model._compiled_path() is not None
    assert DriftMoE(engine="river")._compiled_path() is None
    assert DriftMoE(engine="numba", adaptive={"budget": 16})._compiled_path() is None
    model.learn_one({"a": 1.0}, 0)
    model.freeze_expert(0)
    assert model._compiled_path() is None  # frozen experts: the Python path skips their learning


def test_saved_and_loaded_model_continues_on_the_compiled_path(tmp_path):
    events = _events("sea_a", 600)
    a, b = DriftMoE(engine="numba", hidden=32, window=32), DriftMoE(engine="numba", hidden=32, window=32)
    for x, y in events[:300]:
        a.learn_one(x, y)
        b.learn_one(x, y)
    a.save(tmp_path)
    a = DriftMoE.load(tmp_path)
    for x, y in events[300:]:
        assert a.predict_proba_one(x) == b.predict_proba_one(x)
        a.learn_one(x, y)
        b.learn_one(x, y)
    assert _digest(a, []) == _digest(b, [])


@pytest.mark.parametrize("x", [
    {"a": float("nan"), "b": 1.0},
    {"a": 1e31, "b": 1.0},
    {"a": "x", "b": 1.0},           # text for a numeric feature
    {"a": 2**1100, "b": 1.0},
    {"a": None, "b": 1.0},
])
def test_bad_values_are_refused_with_the_python_paths_errors_and_change_nothing(x):
    models = [DriftMoE(engine="numba", hidden=16), DriftMoE(engine="numba", hidden=16)]
    models[1]._compiled_path = lambda: None
    errors = []
    for model in models:
        for i in range(40):
            model.learn_one({"a": float(i % 5), "b": float(i % 3)}, i % 2)
        before = _digest(model, [])
        for call in (lambda: model.learn_one(x, 1), lambda: model.predict_one(x)):
            with pytest.raises(ValueError) as exc:
                call()
            errors.append(str(exc.value))
        assert _digest(model, []) == before
    assert errors[:2] == errors[2:]


def test_plain_row_steps_aside_for_anything_but_exactly_the_known_float_features():
    fs = FeatureSpace()
    fs.register(["a", "b"])
    assert fs.plain_row({"b": 2, "a": 1.5}).tolist() == [1.5, 2.0]
    for x in ({"a": 1.0}, {"a": 1.0, "b": 2.0, "c": 3.0}, {"a": 1.0, "c": 2.0}, {"a": True, "b": 1.0},
              {"a": np.float64(1.0), "b": 1.0}, {"a": 2**1100, "b": 1.0}, [1.0, 2.0]):
        assert fs.plain_row(x) is None
    assert np.isnan(fs.row({"a": 1.0, "z": 5.0})[1])


def test_kernel_softmax_is_numpys_softmax_bit_for_bit():
    fn = exp_loop_address()
    assert fn, "NumPy's exp loop could not be reached: the compiled path would be off"

    @njit
    def rows(L, t, fn, out):
        z = np.empty(L.shape[1])
        for i in range(L.shape[0]):
            softmax_row(L[i], t, fn, z, out[i])

    rng = np.random.default_rng(0)
    for E in (1, 3, 8, 12, 17, PAIRWISE_MAX):
        L = (rng.normal(size=(200, E)) * 4).astype(np.float32)
        out = np.empty((200, E))
        rows(L, 0.8, fn, out)
        assert out.tobytes() == softmax(L, 0.8).tobytes()


def test_numpy_exp_and_pairwise_sum_match_numpy():
    fn = exp_loop_address()
    rng = np.random.default_rng(1)
    z = rng.uniform(-700, 0, 5000)
    got = np.empty_like(z)
    numpy_exp(fn, z, got)
    assert got.tobytes() == np.exp(z).tobytes()

    @njit
    def total(a):
        return pairwise_sum(a, a.shape[0])

    for n in (0, 1, 7, 8, 9, 15, 16, 33, 100, PAIRWISE_MAX):
        a = np.exp(rng.normal(size=n) * 6)
        assert total(a) == a.sum()


def test_a_refused_event_after_a_router_step_does_not_reuse_stale_weights():
    """The weights kept for 'learn after predict of the same row' must not survive a router step
    followed by a refused event."""
    events = _events("sea_a", 300)
    a, b = DriftMoE(engine="numba", hidden=16, window=8), DriftMoE(engine="numba", hidden=16, window=8)
    b._compiled_path = lambda: None
    for x, y in events:
        for m in (a, b):
            m.predict_one(x)
            m.learn_one(x, y)  # a window of 8: the router steps often
            with pytest.raises(ValueError):
                m.predict_one({k: float("nan") for k in x})
        assert a.predict_proba_one(x) == b.predict_proba_one(x)
    assert _digest(a, []) == _digest(b, [])


def test_a_pickled_or_copied_model_continues_exactly():
    import copy
    import pickle

    events = _events("led_a", 400)
    a = DriftMoE(engine="numba", hidden=16, window=32)
    for x, y in events[:200]:
        a.predict_one(x)
        a.learn_one(x, y)
    b, c = pickle.loads(pickle.dumps(a)), copy.deepcopy(a)
    for x, y in events[200:]:
        assert a.predict_proba_one(x) == b.predict_proba_one(x) == c.predict_proba_one(x)
        for m in (a, b, c):
            m.learn_one(x, y)
    assert _digest(a, []) == _digest(b, []) == _digest(c, [])


def test_a_categorical_feature_mid_stream_hands_over_to_the_python_path_exactly():
    """Numeric events run compiled; once a text feature is learned the router's input is encoded
    (one-hot blocks) and the model continues on the Python path, with the same results."""
    events = []
    for i, (x, y) in enumerate(_events("sea_a", 500)):
        x = dict(x)
        if i >= 250:
            x["shop"] = "FR" if y == 1 else ("DE" if i % 3 else "US")
        events.append((x, y))
    params = {"engine": "numba", "hidden": 16, "window": 32}
    model = DriftMoE(**params)
    for x, y in events[:250]:
        model.learn_one(x, y)
    assert model._compiled_path() is not None
    model.learn_one(*events[250])
    assert model._compiled_path() is None
    assert _per_event(params, events, compiled=True) == _per_event(params, events, compiled=False)
