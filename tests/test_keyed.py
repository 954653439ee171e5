"""KeyedDriftMoE on the CPU: K keyed models learned together equal K separate DriftMoE models."""
from __future__ import annotations

import copy
import warnings

import numpy as np
import pytest

from streammoe.experts import fast_tree as ft
from streammoe.gpu import CudaUnavailableWarning, cuda_available, resolve_device
from streammoe.keyed import KeyedDriftMoE
from streammoe.keyed.router_batch import train_routers
from streammoe.routers.mlp import MLPRouter

K, D, C, E, TOP_K = 3, 3, 3, 4, 2
# small router and eager trees so that a few hundred events cross several windows and splits
KW = dict(n_experts=E, top_k=TOP_K, hidden=8, window=32, grace_period=5, delta=0.05)


def keyed_stream(seed: int, n: int, unlabelled: float = 0.1):
    """Interleaved events of K keys, each key its own concept; each key meets its labels in the
    order 0, 1, 2 (DriftMoE numbers classes by first sight, keyed models use the labels)."""
    rng = np.random.default_rng(seed)
    keys = rng.integers(0, K, n)
    X = rng.uniform(0.0, 10.0, size=(n, D))
    Y = (np.digitize(X[:, 0], [3.3, 6.6]) + np.digitize(X[:, 1], [5.0]) * (keys % 2) + keys) % C
    Y[rng.random(n) < unlabelled] = -1
    for key in range(K):
        first = np.nonzero((keys == key) & (Y >= 0))[0][:C]
        Y[first] = np.arange(C)
    return keys, X, Y.astype(np.int64)


def run_keyed(model: KeyedDriftMoE, keys, X, Y, chunk: int):
    outs = [model.learn_predict_window(keys[s:s + chunk], X[s:s + chunk], Y[s:s + chunk])
            for s in range(0, len(keys), chunk)]
    return (np.concatenate([o.y_pred for o in outs]), np.concatenate([o.proba for o in outs]),
            np.concatenate([o.expert for o in outs]))


def tree_fields(pool: ft.TreePool, t: int) -> dict:
    """Tree ``t``'s saved arrays trimmed to its own nodes and leaf slots."""
    a = pool.arrays
    out = {}
    for name in ft._SAVED_FIELDS:
        arr = getattr(a, name)[t]
        if name in ft._NODE_FIELDS:
            arr = arr[: a.n_nodes[t]]
        elif name not in ft._TREE_FIELDS:
            arr = arr[: a.n_leaves[t]]
        out[name] = arr
    return out


def assert_same_state(a: KeyedDriftMoE, b: KeyedDriftMoE) -> None:
    pa, pb = a.pool, b.pool
    for t in range(pa.n_trees):
        fa, fb = tree_fields(pa, t), tree_fields(pb, t)
        for name in fa:
            assert np.array_equal(fa[name], fb[name]), (t, name)
    for ra, rb in zip(a.routers, b.routers):
        for name in ra.params:
            assert np.array_equal(ra.params[name], rb.params[name]), name
    for name in ("class_counts", "n_learned", "router_steps", "usage", "_win_n", "_win_x", "_win_m"):
        assert np.array_equal(getattr(a, name), getattr(b, name)), name


@pytest.mark.parametrize("combine", ["top1", "mixture"])
def test_keyed_equals_separate_driftmoe_models(combine):
    pytest.importorskip("river")
    from streammoe import DriftMoE

    keys, X, Y = keyed_stream(0, 1500)
    km = KeyedDriftMoE(K, D, C, combine=combine, seed=7, **KW)
    y_pred, proba, expert = run_keyed(km, keys, X, Y, chunk=400)
    assert (km.router_steps >= 10).all()
    grown = 0
    for key in range(K):
        model = DriftMoE(engine="numba", combine=combine, seed=7 + key, **KW)
        sel = np.nonzero(keys == key)[0]
        xs = [{f"f{j}": float(v) for j, v in enumerate(X[i])} for i in sel]
        ys = [int(Y[i]) if Y[i] >= 0 else None for i in sel]
        res = []
        for s in range(0, len(sel), 90):
            res += model.predict_learn_many(xs[s:s + 90], ys[s:s + 90])
        assert model.classes_ == list(range(C))
        ref_proba = np.array([[p.get(c, 0.0) for c in range(C)] for p, _ in res])
        ref_pred = np.array([max(p, key=p.get) if p else -1 for p, _ in res])
        assert np.array_equal(ref_proba, proba[sel])
        assert np.array_equal(ref_pred, y_pred[sel])
        learned = np.array([p != {} for p, _ in res])  # DriftMoE names no expert before any class
        assert np.array_equal(np.array([e for _, e in res])[learned], expert[sel][learned])
        trees = model._pool.trees
        for e in range(E):
            mine, ref = tree_fields(km.pool, key * E + e), tree_fields(trees, e)
            for name in ref:
                assert np.array_equal(mine[name], ref[name]), (key, e, name)
            grown += trees.n_nodes(e) > 1
        for name, value in model._router.params.items():
            assert np.array_equal(km.routers[key].params[name], value), (key, name)
        assert km.router_steps[key] == model.router_steps_
        assert np.array_equal(km.usage[key], model.expert_usage())
    assert grown >= E  # the comparison covered trees that split


def test_batch_boundaries_and_interleaving_change_nothing():
    keys, X, Y = keyed_stream(1, 900)
    one = KeyedDriftMoE(K, D, C, **KW)
    r1 = run_keyed(one, keys, X, Y, chunk=900)
    many = KeyedDriftMoE(K, D, C, **KW)
    r2 = run_keyed(many, keys, X, Y, chunk=37)
    # another interleaving of the same per-key streams: all of key 2, then key 0, then key 1
    perm = np.concatenate([np.nonzero(keys == k)[0] for k in (2, 0, 1)])
    other = KeyedDriftMoE(K, D, C, **KW)
    r3 = run_keyed(other, keys[perm], X[perm], Y[perm], chunk=250)
    inv = np.argsort(perm)
    for a, b, c in zip(r1, r2, r3):
        assert np.array_equal(a, b)
        assert np.array_equal(a, c[inv])
    assert_same_state(one, many)
    assert_same_state(one, other)


def test_growing_classes_equal_declared_classes():
    keys, X, Y = keyed_stream(2, 700)
    declared = KeyedDriftMoE(K, D, C, **KW)
    growing = KeyedDriftMoE(K, D, None, **KW)
    for s in range(0, len(keys), 100):
        a = declared.learn_predict_window(keys[s:s + 100], X[s:s + 100], Y[s:s + 100])
        b = growing.learn_predict_window(keys[s:s + 100], X[s:s + 100], Y[s:s + 100])
        assert np.array_equal(a.y_pred, b.y_pred)
        assert np.array_equal(a.proba[:, : b.proba.shape[1]], b.proba)
        assert not a.proba[:, b.proba.shape[1]:].any()
    assert growing.n_classes == C
    assert_same_state(declared, growing)


def test_added_key_is_a_fresh_model_with_its_own_seed():
    keys, X, Y = keyed_stream(3, 600)
    full = KeyedDriftMoE(K, D, C, **KW)
    r_full = run_keyed(full, keys, X, Y, chunk=600)
    grown = KeyedDriftMoE(K - 1, D, C, **KW)
    early = keys != K - 1
    grown.learn_predict_window(keys[early][:200], X[early][:200], Y[early][:200])
    assert grown.add_keys(1) == K - 1
    # key K-1's events all come after the others' first 200: per-key streams are unchanged
    order = np.concatenate([np.nonzero(early)[0][:200], np.nonzero(early)[0][200:], np.nonzero(~early)[0]])
    rest = order[200:]
    r = grown.learn_predict_window(keys[rest], X[rest], Y[rest])
    assert np.array_equal(r.y_pred, r_full[0][rest])
    assert np.array_equal(r.proba, r_full[1][rest])
    assert_same_state(full, grown)


def test_predict_only_changes_nothing_and_answers_with_the_prior_first():
    keys, X, Y = keyed_stream(4, 300)
    km = KeyedDriftMoE(K, D, C, **KW)
    blank = km.predict(keys[:10], X[:10])
    assert (blank.y_pred == -1).all() and not blank.proba.any()
    km.learn_predict_window(keys[:5], X[:5], Y[:5])
    before = copy.deepcopy(km)
    r = km.predict(keys, X)
    assert_same_state(before, km)
    assert (km.n_learned == before.n_learned).all()
    seen = km.class_counts.sum(axis=1) > 0
    assert (r.y_pred[seen[keys]] >= 0).all()
    assert np.allclose(r.proba[seen[keys]].sum(axis=1), 1.0)


@pytest.mark.parametrize("call, message", [
    (lambda m: m.learn_predict_window([0, 5], np.zeros((2, D)), [0, 1]), "event 1: key 5 outside"),
    (lambda m: m.learn_predict_window([0, -1], np.zeros((2, D)), [0, 1]), "event 1: key -1 outside"),
    (lambda m: m.learn_predict_window([0.5], np.zeros((1, D)), [0]), "keys must be a 1-D array of integer"),
    (lambda m: m.learn_predict_window([0], np.zeros((1, D + 1)), [0]), "X must have shape"),
    (lambda m: m.learn_predict_window([0, 1], np.array([[0.0] * D, [np.nan] * D]), [0, 1]),
     "event 1: X contains NaN"),
    (lambda m: m.learn_predict_window([0, 1], np.zeros((2, D)), [0, C]), "event 1: label 3 outside"),
    (lambda m: m.learn_predict_window([0, 1], np.zeros((2, D)), [-2, 0]), "event 0: label -2 is negative"),
    (lambda m: m.learn_predict_window([0], np.zeros((1, D)), [0.5]), "y must be a 1-D integer array"),
    (lambda m: m.add_keys(-1), "add_keys needs a non-negative int"),
])
def test_bad_input_is_a_clear_error_and_changes_nothing(call, message):
    km = KeyedDriftMoE(K, D, C, **KW)
    km.learn_predict_window([0, 1], np.ones((2, D)), [0, 1])
    before = copy.deepcopy(km)
    with pytest.raises(ValueError, match=message):
        call(km)
    assert_same_state(before, km)


@pytest.mark.parametrize("kwargs, message", [
    (dict(n_keys=0), "n_keys must be an int >= 1"),
    (dict(n_classes=0), "n_classes must be None or an int >= 1"),
    (dict(combine="vote"), "combine must be one of"),
    (dict(device="tpu"), "device must be one of"),
    (dict(router_device="tpu"), "router_device must be"),
    (dict(temperature=0.0), "temperature must be > 0"),
])
def test_bad_parameters(kwargs, message):
    args = dict(n_keys=K, n_features=D, n_classes=C)
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        KeyedDriftMoE(args.pop("n_keys"), args.pop("n_features"), args.pop("n_classes"), **args)


@pytest.mark.parametrize("n, hidden, chunk", [(32, 8, 2), (17, 16, 32), (256, 32, 3)])
def test_batched_router_training_equals_one_router_at_a_time(n, hidden, chunk):
    rng = np.random.default_rng(n)
    routers = []
    for key in range(5):
        r = MLPRouter(0, E, hidden=hidden, seed=11 + key)
        r.add_inputs(D)
        routers.append(r)
    alone = copy.deepcopy(routers)
    for _ in range(3):
        X = rng.normal(size=(5, n, D))
        M = (rng.random((5, n, E)) < 0.3).astype(np.float64)
        train_routers(routers, X, M, chunk=chunk, workers=2)
        for b, r in enumerate(alone):
            r.train_step(X[b], M[b])
    for a, b in zip(routers, alone):
        assert a.steps == b.steps == 3
        for name in a.params:
            assert np.array_equal(a.params[name], b.params[name])
            assert np.array_equal(a.m[name], b.m[name]) and np.array_equal(a.v[name], b.v[name])
        assert a.rng.bit_generator.state == b.rng.bit_generator.state


def test_device_resolution():
    assert resolve_device("cpu") == "cpu"
    with pytest.raises(ValueError, match="device must be one of"):
        resolve_device("gpu")
    if cuda_available():
        assert resolve_device("auto") == "cuda"
        return
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert resolve_device("auto") == "cpu"  # silent
    with pytest.warns(CudaUnavailableWarning, match="running on the CPU instead"):
        assert resolve_device("cuda") == "cpu"
    with pytest.warns(CudaUnavailableWarning):
        km = KeyedDriftMoE(1, D, C, device="cuda", **KW)
    assert km.device == "cpu"


# ----------------------------------------------------------------------------- save / load
def window_rows(m: KeyedDriftMoE):
    """The filled rows of every key's window buffer (the rest is never read)."""
    filled = np.arange(m.window) < m._win_n[:, None]
    return m._win_x[filled], m._win_m[filled]


@pytest.mark.parametrize("combine, n_classes", [("top1", C), ("mixture", None)])
def test_saved_and_loaded_mid_stream_continues_bit_identically(tmp_path, combine, n_classes):
    from streammoe.state.codec import state_digest

    keys, X, Y = keyed_stream(5, 1100)
    late = keys == K - 1  # the last key only appears after the load
    order = np.concatenate([np.nonzero(~late)[0][:500], np.nonzero(~late)[0][500:], np.nonzero(late)[0]])
    keys, X, Y = keys[order], X[order], Y[order]
    whole = KeyedDriftMoE(K, D, n_classes, combine=combine, seed=9, **KW)
    r_whole = run_keyed(whole, keys, X, Y, chunk=130)
    first = KeyedDriftMoE(K - 1, D, n_classes, combine=combine, seed=9, **KW)
    run_keyed(first, keys[:500], X[:500], Y[:500], chunk=130)
    assert (first._win_n > 0).any() and (first.router_steps > 0).all()  # saved mid-window, after training
    first.save(tmp_path)
    loaded = KeyedDriftMoE.load(tmp_path)
    assert state_digest(loaded.state_parts()) == state_digest(first.state_parts())
    assert loaded.add_keys(1) == K - 1
    r_rest = run_keyed(loaded, keys[500:], X[500:], Y[500:], chunk=130)
    for a, b in zip(r_whole, r_rest):
        assert np.array_equal(a[500:], b)
    assert state_digest(loaded.state_parts()) == state_digest(whole.state_parts())
    assert (loaded.router_steps[K - 1] > 0) and loaded.n_classes == C
    for a, b in zip(window_rows(loaded), window_rows(whole)):
        assert np.array_equal(a, b)
    for name in ("class_counts", "n_learned", "router_steps", "usage", "_win_n"):
        assert np.array_equal(getattr(loaded, name), getattr(whole, name)), name


def test_state_parts_are_plain_and_loading_keeps_the_parameters():
    keys, X, Y = keyed_stream(6, 200)
    km = KeyedDriftMoE(K, D, None, combine="mixture", seed=4, tree_options=dict(max_nodes=63), **KW)
    km.learn_predict_window(keys, X, Y)
    parts = km.state_parts()
    assert sorted(parts) == sorted(["meta", "stats", "window", "trees"] + [f"router/{k}" for k in range(K)])
    assert all(b"pickle" not in v for v in parts.values())
    back = KeyedDriftMoE.from_parts(parts)
    for name in ("n_keys", "n_features", "n_classes", "n_experts", "top_k", "hidden", "lr", "window",
                 "temperature", "seed", "combine", "fixed_classes", "device", "router_device"):
        assert getattr(back, name) == getattr(km, name), name
    assert back.pool.max_nodes == 63 and back.pool.grace_period == km.pool.grace_period
    assert back.state_parts() == parts


def _corrupt(parts: dict, name: str, blob: bytes | None) -> dict:
    out = dict(parts)
    if blob is None:
        del out[name]
    else:
        out[name] = blob
    return out


@pytest.mark.parametrize("change, message", [
    (lambda p: _corrupt(p, "meta", b'{"format": "streammoe/driftmoe@1"}'), "not a KeyedDriftMoE state"),
    (lambda p: _corrupt(p, "meta", b"\x00\x01garbage"), "not a valid JSON blob"),
    (lambda p: _corrupt(p, "meta", None), "lacks its 'meta' part"),
    (lambda p: _corrupt(p, "router/2", None), "lacks its 'router/2' part"),
    (lambda p: _corrupt(p, "stats", p["stats"][: len(p["stats"]) // 2]), "not a valid array blob"),
    (lambda p: _corrupt(p, "trees", p["trees"][:-40]), "not a valid array blob"),
    (lambda p: _corrupt(p, "router/1", p["router/1"][:100]), "not a valid array blob"),
    (lambda p: _corrupt(p, "router/0", p["stats"]), "router/0 part is not a router state"),
    (lambda p: _corrupt(p, "window", p["stats"]), "window part: array 'X'"),
    (lambda p: _corrupt(p, "trees", p["window"]), "trees part"),
])
def test_bad_or_foreign_state_is_a_clear_value_error(change, message):
    from streammoe.state.codec import StateFormatError

    keys, X, Y = keyed_stream(7, 150)
    km = KeyedDriftMoE(K, D, C, **KW)
    km.learn_predict_window(keys, X, Y)
    with pytest.raises(StateFormatError, match=message):
        KeyedDriftMoE.from_parts(change(km.state_parts()))
    assert issubclass(StateFormatError, ValueError)


def test_a_driftmoe_save_is_refused_as_foreign(tmp_path):
    pytest.importorskip("river")
    from streammoe import DriftMoE

    m = DriftMoE(engine="numba", **KW)
    m.learn_one({"a": 1.0}, 0)
    m.save(tmp_path)
    with pytest.raises(ValueError, match="not a KeyedDriftMoE state"):
        KeyedDriftMoE.load(tmp_path)
