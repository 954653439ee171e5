"""The compiled DriftMoE window loop and task step against plain per-event Python loops."""
from __future__ import annotations

import numpy as np
import pytest

from streammoe.experts.fast_loop import WindowResult, run_window, run_window_per_event, task_step, top_k_order
from streammoe.experts.fast_tree import TreePool

FIELDS = ("proba", "y_pred", "expert", "mask", "expert_pred")


def assert_same_pools(a: TreePool, b: TreePool) -> None:
    sa, sb = a.to_arrays(), b.to_arrays()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert np.array_equal(sa[k], sb[k]), k


def assert_same_results(ra: WindowResult, rb: WindowResult) -> None:
    for f in FIELDS:
        assert np.array_equal(getattr(ra, f), getattr(rb, f)), f


def window_data(rng, n: int, d: int, c: int, E: int, unlabelled: float = 0.1):
    """Events in diagonal class bands (trees need many axis splits), router weights from a
    softmax of random logits (with exact ties now and then, to exercise tie-breaking)."""
    X = rng.uniform(0.0, 10.0, size=(n, d))
    Y = np.minimum(np.digitize(X[:, 0] + X[:, 1], [7.0, 10.0, 13.0]), c - 1)
    Y[rng.random(n) < unlabelled] = -1
    logits = rng.normal(size=(n, E))
    logits[rng.random(n) < 0.1, :2] = 0.5  # a tie between experts 0 and 1
    W = np.exp(logits / 0.8)
    W /= W.sum(axis=1, keepdims=True)
    return W, X, Y.astype(np.int64)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_window_kernel_equals_per_event_loop_while_pool_grows(seed):
    rng = np.random.default_rng(seed)
    E, d, c = 6, 3, 2
    # eager trees (small grace, loose delta, large tie threshold) so that they grow in a test
    fast = TreePool(E, d, c, grace_period=8, delta=1e-3, tau=0.2)
    slow = TreePool(E, d, c, grace_period=8, delta=1e-3, tau=0.2)
    start_capacity = fast.capacity
    for w in range(14):
        if w == 4:  # a new feature appears
            d += 1
            fast.add_features(1)
            slow.add_features(1)
        if w in (6, 9):  # new classes appear
            c += 1
            fast.ensure_classes(c)
            slow.ensure_classes(c)
        W, X, Y = window_data(rng, 128, d, c, E)
        combine = ("top1", "mixture")[w % 2]
        k = (1, 3, 6, 9)[w % 4]
        ra = run_window(fast, W, X, Y, k, combine)
        rb = run_window_per_event(slow, W, X, Y, k, combine)
        assert_same_results(ra, rb)
        assert_same_pools(fast, slow)
    assert fast.capacity > start_capacity  # node arrays grew inside windows
    assert max(fast.n_nodes(t) for t in range(E)) > 15
    assert fast.n_classes == 4 and fast.n_features == 4


def test_window_semantics_by_hand():
    pool = TreePool(3, 2, 3, grace_period=1000)
    W = np.array([[0.2, 0.5, 0.3], [0.2, 0.5, 0.3], [0.4, 0.4, 0.2], [0.1, 0.1, 0.8]])
    X = np.array([[0.0, 1.0], [0.0, 1.0], [1.0, 0.0], [2.0, 2.0]])
    Y = np.array([2, 1, 0, -1])
    r = run_window(pool, W, X, Y, top_k=2)
    # event 0: nobody knows anything -> no prediction, fallback target is expert 0 (lowest index)
    assert r.y_pred[0] == -1 and np.array_equal(r.mask[0], [1, 0, 0])
    assert np.array_equal(r.expert, [1, 1, 0, 2])
    # experts 1 and 2 (top-2 of event 0) learned class 2, expert 0 did not
    assert np.array_equal(r.expert_pred[1], [-1, 2, 2])
    # event 1 (y=1): experts 1 and 2 both say 2, nobody gives class 1 any probability -> expert 0
    assert r.y_pred[1] == 2 and np.array_equal(r.mask[1], [1, 0, 0])
    # event 2: tie in weights between experts 0 and 1 -> top-1 is 0 (empty), answer -1
    assert r.y_pred[2] == -1
    # unlabelled event: zero mask, nothing learned
    assert not r.mask[3].any()
    assert top_k_order(W[2], 2) == [0, 1]


def test_fallback_mask_picks_highest_probability_for_true_class():
    pool = TreePool(3, 1, 3, grace_period=1000)
    x = np.array([[0.5]])
    for e, y in ((0, 0), (1, 1), (2, 1)):
        pool.learn(e, x[0], y)
    pool.learn(1, x[0], 2)  # expert 1 now gives class 2 some probability
    r = run_window(pool, np.full((1, 3), 1 / 3), x, np.array([2]), top_k=1)
    assert np.array_equal(r.expert_pred[0], [0, 1, 1])
    assert np.array_equal(r.mask[0], [0, 1, 0])


def test_mixture_combines_top_k_weighted_and_normalised():
    rng = np.random.default_rng(3)
    pool = TreePool(4, 2, 3, grace_period=1000)
    for e in range(4):
        for _ in range(5):
            pool.learn(e, rng.normal(size=2), int(rng.integers(0, 3)))
    W = np.array([[0.1, 0.4, 0.3, 0.2]])
    x = rng.normal(size=(1, 2))
    r = run_window(pool, W, x, np.array([-1]), top_k=2, combine="mixture")
    expect = 0.4 * pool.predict_proba(1, x[0]) + 0.3 * pool.predict_proba(2, x[0])
    assert np.allclose(r.proba[0], expect / expect.sum(), atol=1e-15)
    assert r.y_pred[0] == int(np.argmax(expect))


def reference_task_step(pool: TreePool, w, x, y, combine):
    """Task mode spelled out with the pool's per-event methods."""
    E = pool.n_trees
    P = [pool.predict_proba(e, x) for e in range(E)]
    p_mine = np.array([p[1] for p in P])
    proba = np.array(w, dtype=np.float64)
    if combine == "mixture":
        prod = [float(w[e]) * float(p_mine[e]) for e in range(E)]
        tot = 0.0
        for v in prod:
            tot += v
        if tot > 0.0:
            proba = np.array([v / tot for v in prod])
    mask = np.zeros(E)
    if y >= 0:
        mask[y] = 1.0
        for e in range(E):
            pool.learn(e, x, int(e == y))
    y_pred = int(np.argmax(proba)) if proba.max() > 0 else -1
    return proba, y_pred, int(np.argmax(w)), mask, p_mine


@pytest.mark.parametrize("combine", ["top1", "mixture"])
def test_task_step_equals_reference(combine):
    rng = np.random.default_rng(4)
    fast = TreePool(2, 3, 2, grace_period=10)
    slow = TreePool(2, 3, 2, grace_period=10)
    n_cls = 2
    for i in range(900):
        if i == 300:  # a third class (and its expert) appears
            n_cls = 3
            fast.add_trees(1)
            slow.add_trees(1)
        x = rng.uniform(0, 10, size=3)
        y = int(np.digitize(x[0], [3.0, 6.0])) % n_cls
        if rng.random() < 0.1:
            y = -1
        logits = rng.normal(size=n_cls)
        w = np.exp(logits) / np.exp(logits).sum()
        r = task_step(fast, w, x, y, combine)
        proba, y_pred, top1, mask, p_mine = reference_task_step(slow, w, x, y, combine)
        assert np.array_equal(r.proba, proba) and r.y_pred == y_pred and r.expert == top1
        assert np.array_equal(r.mask, mask) and np.array_equal(r.p_mine, p_mine)
    assert_same_pools(fast, slow)
    assert fast.n_nodes(0) > 1


@pytest.mark.parametrize("args,match", [
    (dict(W=np.ones((2, 3))), r"shape \(n, 2\)"),
    (dict(X=np.ones((2, 5))), r"X must have shape"),
    (dict(Y=np.array([0, 7])), "class index"),
    (dict(Y=np.array([0.0, 1.0])), "integer"),
    (dict(X=np.array([[np.inf, 0.0, 0.0], [0.0, 0.0, 0.0]])), "finite"),
    (dict(top_k=0), "top_k"),
    (dict(combine="vote"), "combine"),
])
def test_window_rejects_bad_input(args, match):
    pool = TreePool(2, 3, 2)
    kw = dict(W=np.full((2, 2), 0.5), X=np.zeros((2, 3)), Y=np.array([0, 1]), top_k=1, combine="top1")
    kw.update(args)
    with pytest.raises(ValueError, match=match):
        run_window(pool, kw["W"], kw["X"], kw["Y"], kw["top_k"], kw["combine"])


def test_task_step_rejects_bad_input():
    with pytest.raises(ValueError, match="binary"):
        task_step(TreePool(2, 3, 3), np.array([0.5, 0.5]), np.zeros(3), 0)
    pool = TreePool(2, 3, 2)
    with pytest.raises(ValueError, match="router weights"):
        task_step(pool, np.array([1.0]), np.zeros(3), 0)
    with pytest.raises(ValueError, match="expert/class index"):
        task_step(pool, np.array([0.5, 0.5]), np.zeros(3), 2)
