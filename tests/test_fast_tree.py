"""TreePool (array Hoeffding trees) against river's HoeffdingTreeClassifier, state round trips,
memory caps, growth of features/classes/trees, and input checks."""
from __future__ import annotations

import io

import numpy as np
import pytest
from river import tree
from river.datasets import synth
from river.tree.nodes.branch import DTBranch

from streammoe.experts.fast_tree import TreePool

STREAMS = {
    "sea": lambda: synth.SEA(variant=0, seed=1),
    "led": lambda: synth.LED(seed=1),
    "led24": lambda: synth.LED(seed=1, noise_percentage=0.1, irrelevant_features=True),
    "rbf5": lambda: synth.RandomRBF(seed_model=1, seed_sample=1, n_classes=5, n_features=10, n_centroids=50),
}


def dense(name: str, n: int):
    """The stream as river dicts and as dense arrays (classes indexed in sorted order)."""
    data = list(STREAMS[name]().take(n))
    keys = list(data[0][0].keys())
    X = np.array([[x[k] for k in keys] for x, _ in data], dtype=np.float64)
    labels = sorted({y for _, y in data})
    Y = np.array([labels.index(y) for _, y in data], dtype=np.int64)
    return data, keys, labels, X, Y


def river_vs_pool(name: str, n: int, tau: float = 0.05, river_exact: bool = True):
    data, keys, labels, X, Y = dense(name, n)
    ht = tree.HoeffdingTreeClassifier(grace_period=50, delta=1e-7, tau=tau, leaf_prediction="nba")
    pool = TreePool(1, X.shape[1], len(labels), grace_period=50, delta=1e-7, tau=tau,
                    river_exact=river_exact)
    max_diff, ok_r, ok_p = 0.0, 0, 0
    for i, (x, y) in enumerate(data):
        pr = ht.predict_proba_one(x)
        rv = np.zeros(len(labels))
        for label, p in pr.items():
            rv[labels.index(label)] = p
        pv = pool.predict_proba(0, X[i])
        max_diff = max(max_diff, float(np.abs(rv - pv).max()))
        ok_r += bool(pr) and max(pr, key=pr.get) == y
        ok_p += pv.sum() > 0 and labels[int(np.argmax(pv))] == y
        ht.learn_one(x, y)
        pool.learn(0, X[i], int(Y[i]))
    return ht, pool, keys, max_diff, ok_r / n, ok_p / n


def structure_diffs(ht, pool, keys):
    """Paths where river's tree and tree 0 of the pool differ (feature, threshold or leafness)."""
    a, out = pool.arrays, []

    def walk(rnode, node, path):
        if isinstance(rnode, DTBranch):
            f = keys.index(rnode.feature)
            if a.feature[0, node] != f or a.threshold[0, node] != rnode.threshold:
                out.append(path)
                return
            walk(rnode.children[0], a.left[0, node], path + "L")
            walk(rnode.children[1], a.right[0, node], path + "R")
        elif a.feature[0, node] >= 0:
            out.append(path)

    walk(ht._root, 0, "")
    return out


@pytest.mark.parametrize("name,n,tau", [("sea", 20_000, 0.05), ("led", 5_000, 0.05),
                                        ("led24", 6_000, 0.25), ("rbf5", 20_000, 0.05),
                                        ("rbf5", 8_000, 0.25)])
def test_river_exact_mode_is_bit_identical_to_river(name, n, tau):
    ht, pool, keys, max_diff, acc_r, acc_p = river_vs_pool(name, n, tau)
    assert max_diff == 0.0
    assert acc_r == acc_p
    assert pool.n_leaves(0) == ht.n_leaves and pool.n_nodes(0) == ht.n_nodes
    assert structure_diffs(ht, pool, keys) == []
    if name in ("sea", "rbf5") or tau > 0.05:
        assert pool.n_nodes(0) > 1  # the comparison covered real splits


@pytest.mark.parametrize("name,n", [("sea", 20_000), ("rbf5", 20_000)])
def test_default_mode_matches_river_accuracy_and_structure(name, n):
    ht, pool, keys, max_diff, acc_r, acc_p = river_vs_pool(name, n, river_exact=False)
    assert abs(acc_r - acc_p) <= 0.005
    assert max_diff < 1e-12
    assert pool.n_leaves(0) == ht.n_leaves


def synthetic(seed: int, n: int, d: int, c: int):
    """Tree-shaped data: the class is read off thresholds on the first feature (5% noise)."""
    rng = np.random.default_rng(seed)
    X = rng.uniform(0.0, 10.0, size=(n, d))
    Y = np.digitize(X[:, 0], [2.5, 5.0, 7.5]) % c
    noise = rng.random(n) < 0.05
    Y[noise] = rng.integers(0, c, int(noise.sum()))
    return X, Y.astype(np.int64)


def test_untrained_tree_predicts_zeros_and_probabilities_sum_to_one():
    pool = TreePool(2, 3, 4)
    assert np.array_equal(pool.predict_proba(1, np.zeros(3)), np.zeros(4))
    X, Y = synthetic(0, 300, 3, 4)
    for x, y in zip(X, Y):
        pool.learn(0, x, int(y))
    p = pool.predict_proba(0, X[0])
    assert p.shape == (4,) and abs(p.sum() - 1.0) < 1e-12 and (p >= 0).all()
    assert np.array_equal(pool.predict_proba(1, X[0]), np.zeros(4))


def test_round_trip_is_exact_and_continues_identically():
    X, Y = synthetic(1, 3000, 5, 3)
    pool = TreePool(3, 5, 3, grace_period=20)
    for i in range(1500):
        pool.learn(i % 3, X[i], int(Y[i]))
    state = pool.to_arrays()
    assert all(isinstance(v, np.ndarray) and v.dtype.kind in "if" for v in state.values())
    buf = io.BytesIO()
    np.savez(buf, **state)
    buf.seek(0)
    with np.load(buf, allow_pickle=False) as z:
        restored = TreePool.from_arrays({k: z[k] for k in z.files})
    again = restored.to_arrays()
    assert state.keys() == again.keys() and all(np.array_equal(state[k], again[k]) for k in state)
    assert restored.config() == pool.config()
    for i in range(1500, 3000):
        for t in range(3):
            assert np.array_equal(pool.predict_proba(t, X[i]), restored.predict_proba(t, X[i]))
        pool.learn(i % 3, X[i], int(Y[i]))
        restored.learn(i % 3, X[i], int(Y[i]))
    a, b = pool.to_arrays(), restored.to_arrays()
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert max(pool.n_nodes(t) for t in range(3)) > 3


def test_from_arrays_rejects_damaged_state():
    pool = TreePool(2, 3, 2)
    state = pool.to_arrays()
    with pytest.raises(ValueError, match="lacks fields"):
        TreePool.from_arrays({k: v for k, v in state.items() if k != "g_mean"})
    bad = dict(state, class_w=state["class_w"][:, :, :1])
    with pytest.raises(ValueError, match="class_w"):
        TreePool.from_arrays(bad)
    bad = dict(state, feature=state["feature"].astype(np.float64))
    with pytest.raises(ValueError, match="feature"):
        TreePool.from_arrays(bad)
    pool = TreePool(1, 3, 4, grace_period=20)
    X, Y = synthetic(7, 600, 3, 4)
    for x, y in zip(X, Y):
        pool.learn(0, x, int(y))
    state = pool.to_arrays()
    assert pool.n_nodes(0) > 1
    # indices that would send the unchecked kernels outside their arrays or into a loop
    for field, value, match in (("left", 0, "left children"), ("feature", 3, "split features"),
                                ("slot", 99, "slots"), ("n_nodes", 99, "counts")):
        bad = {k: v.copy() for k, v in state.items()}
        if bad[field].ndim == 2:
            target = 0 if field != "slot" else int(np.argmax(state["feature"][0] < 0))
            bad[field][0, target] = value
        else:
            bad[field][0] = value
        with pytest.raises(ValueError, match=match):
            TreePool.from_arrays(bad)
    bad = {k: v.copy() for k, v in state.items()}
    bad["keys"][0, 0, 0] = 5
    with pytest.raises(ValueError, match="keys"):
        TreePool.from_arrays(bad)


def test_node_cap_stops_splitting_but_leaves_keep_learning():
    X, Y = synthetic(2, 4000, 4, 3)
    pool = TreePool(1, 4, 3, grace_period=10, max_nodes=7)
    for x, y in zip(X, Y):
        pool.learn(0, x, int(y))
    assert pool.n_nodes(0) == 7
    seen = pool.arrays.class_w[0, :pool.n_leaves(0)].sum()
    assert seen > 3000  # every event still reached a leaf's statistics
    free = TreePool(1, 4, 3, grace_period=10)
    for x, y in zip(X, Y):
        free.learn(0, x, int(y))
    assert free.n_nodes(0) > 7


def test_byte_cap_bounds_each_tree():
    X, Y = synthetic(3, 6000, 6, 4)
    cap = 5_000  # room for about 5 nodes at 6 features and 4 classes
    pool = TreePool(2, 6, 4, grace_period=10, max_bytes=cap)
    free = TreePool(2, 6, 4, grace_period=10, max_bytes=None)
    for i, (x, y) in enumerate(zip(X, Y)):
        pool.learn(i % 2, x, int(y))
        free.learn(i % 2, x, int(y))
    assert 3 <= pool.node_cap() < free.n_nodes(0)
    assert pool.n_nodes(0) <= pool.node_cap() and pool.n_nodes(0) >= 3
    assert pool.nbytes_per_tree() <= cap < free.nbytes_per_tree()


def test_features_and_classes_grow_mid_stream():
    X, Y = synthetic(4, 2000, 5, 4)
    pool = TreePool(2, 3, 2, grace_period=20)
    for i in range(600):
        if Y[i] < 2:
            pool.learn(0, X[i, :3], int(Y[i]))
    before = pool.predict_proba(0, X[700, :3])
    pool.add_features(2)
    pool.ensure_classes(4)
    assert (pool.n_features, pool.n_classes) == (5, 4)
    after = pool.predict_proba(0, np.concatenate([X[700, :3], [0.0, 0.0]]))
    assert np.array_equal(after[:2], before) and np.array_equal(after[2:], [0.0, 0.0])
    for i in range(600, 2000):
        pool.learn(0, X[i], int(Y[i]))
    p = pool.predict_proba(0, X[1999])
    assert p.shape == (4,) and p[2:].sum() > 0
    first = pool.add_trees(2)
    assert first == 2 and pool.n_trees == 4 and pool.n_nodes(3) == 1
    assert np.array_equal(pool.predict_proba(3, X[0]), np.zeros(4))


def test_copy_and_reset_tree():
    X, Y = synthetic(5, 1500, 4, 3)
    pool = TreePool(3, 4, 3, grace_period=20)
    for x, y in zip(X, Y):
        pool.learn(0, x, int(y))
    pool.copy_tree(0, 2)
    for x in X[:50]:
        assert np.array_equal(pool.predict_proba(0, x), pool.predict_proba(2, x))
    for x, y in zip(X[:200], Y[:200]):
        pool.learn(0, x, int(y))
        pool.learn(2, x, int(y))
    assert np.array_equal(pool.predict_proba(0, X[7]), pool.predict_proba(2, X[7]))
    pool.reset_tree(0)
    assert pool.n_nodes(0) == 1 and np.array_equal(pool.predict_proba(0, X[0]), np.zeros(3))
    assert pool.describe(2)["n_nodes"] == pool.n_nodes(2) > 1


def test_numpy_reset_equals_the_reset_kernel():
    """Pools reset their trees with NumPy fills (no kernel to compile at start-up): the same state."""
    from streammoe.experts.fast_tree import _reset_tree, _reset_tree_kernel

    X, Y = synthetic(5, 1500, 4, 3)
    a = TreePool(2, 4, 3, grace_period=20)
    for x, y in zip(X, Y):
        a.learn(1, x, int(y))
    assert a.n_nodes(1) > 3
    b = TreePool(2, 4, 3, grace_period=20)
    for name in a.arrays._fields:
        getattr(b.arrays, name)[...] = getattr(a.arrays, name)
    _reset_tree(a.arrays, 1)
    _reset_tree_kernel(b.arrays, 1)
    for name in a.arrays._fields:
        assert np.array_equal(getattr(a.arrays, name), getattr(b.arrays, name)), name
    assert np.array_equal(a.arrays.feature, TreePool(2, 4, 3, grace_period=20).arrays.feature)


def test_leaf_prediction_modes():
    X, Y = synthetic(6, 800, 3, 3)
    for mode in ("mc", "nb", "nba"):
        pool = TreePool(1, 3, 3, leaf_prediction=mode)
        for x, y in zip(X, Y):
            pool.learn(0, x, int(y))
        ht = tree.HoeffdingTreeClassifier(grace_period=50, leaf_prediction=mode)
        for x, y in zip(X, Y):
            ht.learn_one(dict(enumerate(x)), int(y))
        pr = ht.predict_proba_one(dict(enumerate(X[3])))
        assert np.allclose(pool.predict_proba(0, X[3]), [pr.get(c, 0.0) for c in range(3)], atol=1e-12)


@pytest.mark.parametrize("call,match", [
    (lambda p: p.learn(0, np.zeros(2), 0), "3 features"),
    (lambda p: p.learn(0, np.array([0.0, np.nan, 1.0]), 0), "NaN"),
    (lambda p: p.learn(0, np.zeros(3), 5), "class index"),
    (lambda p: p.learn(0, np.zeros(3), -1), "class index"),
    (lambda p: p.predict_proba(0, np.zeros((1, 3))), "3 features"),
])
def test_bad_input_is_rejected_clearly(call, match):
    pool = TreePool(2, 3, 2)
    with pytest.raises(ValueError, match=match):
        call(pool)
    with pytest.raises(IndexError, match="out of range"):
        pool.predict_proba(2, np.zeros(3))


@pytest.mark.parametrize("kwargs", [dict(grace_period=0), dict(delta=1.5), dict(tau=-1),
                                    dict(leaf_prediction="vote"), dict(max_nodes=0),
                                    dict(max_bytes=0), dict(grace_period="50")])
def test_bad_parameters_are_rejected(kwargs):
    with pytest.raises(ValueError):
        TreePool(1, 2, 2, **kwargs)
