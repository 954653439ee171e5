"""The CUDA kernels on a real GPU against the CPU path; CuPy router training stays close.

Skipped without a CUDA device (and under the simulator, which ``test_gpu_sim.py`` covers and
where results are bit-identical).  On hardware the results are close, not equal: on an H100
(Numba-CUDA 0.30.4) the Welford accumulators (Gaussian means and M2) differ in the last bits, and
once trees grow this flips some split decisions (the tree-kernel test below is an expected failure
that documents it; see ``benchmarks/results/keyed_gpu.md``).
"""
from __future__ import annotations

import copy

import numpy as np
import pytest

from streammoe.gpu.backend import cuda_status, cupy_available, is_simulator

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(is_simulator() or not cuda_status()[0], reason=f"needs a CUDA GPU ({cuda_status()[1]})"),
]


@pytest.mark.xfail(strict=True, reason=(
    "known divergence on hardware: once trees split, last-bit differences of the CUDA build's Welford "
    "updates / libdevice maths flip some split decisions (H100, numba-cuda 0.30.4: 400 of 48,000 expert "
    "predictions differed, node counts 25-37 vs 23-35); exact equality needs round-to-nearest intrinsics "
    "(no FMA) and the CPU's log/erf in the device functions"))
def test_tree_kernel_on_the_gpu_equals_the_cpu_kernel():
    from streammoe.experts.fast_tree import TreePool
    from streammoe.gpu import cuda_trees
    from streammoe.keyed import tree_window

    rng = np.random.default_rng(0)
    E, d, c, n = 12, 6, 4, 4000  # few enough trees that each learns ~1000 events and splits
    X = rng.uniform(0.0, 1.0, size=(n, d))
    Y = np.argmax(X @ rng.normal(size=(d, c)), axis=1).astype(np.int64)
    Y[rng.random(n) < 0.1] = -1
    W = rng.dirichlet(np.ones(E), size=n)
    top, rank = tree_window.top_k_ranks(W, 3)
    ptr = np.array([0, n], dtype=np.int64)
    cpu, gpu = (TreePool(E, d, c, grace_period=10, delta=1e-2, tau=0.2) for _ in range(2))
    dpool = cuda_trees.DevicePool(gpu)
    outs = []
    for run, pool in ((tree_window.run_trees_cpu, cpu), (cuda_trees.run_trees_cuda, dpool)):
        ep = np.full((n, E), -1, dtype=np.int64)
        pt, Pk = np.zeros((n, E)), np.zeros((n, 3, c))
        run(pool, E, ptr, X, Y, rank, ep, pt, Pk)
        outs.append((ep, pt, Pk))
    (ep_c, pt_c, pk_c), (ep_g, pt_g, pk_g) = outs
    assert np.array_equal(ep_c, ep_g)  # every expert's prediction of every event
    assert np.allclose(pt_c, pt_g, rtol=1e-12, atol=1e-15) and np.allclose(pk_c, pk_g, rtol=1e-12, atol=1e-15)
    sc, sg = cpu.to_arrays(), dpool.to_host().to_arrays()
    for f in sc:
        if f in ("g_mean", "g_m2"):  # last-bit differences of the running moments
            assert np.allclose(sc[f], sg[f], rtol=1e-12, atol=1e-15), f
        else:  # the tree: structure, thresholds, counts, class orders
            assert np.array_equal(sc[f], sg[f]), f
    assert sc["n_nodes"].max() > 15  # grew past the first capacity on the device


def test_keyed_model_on_the_gpu_equals_the_cpu():
    from streammoe.keyed import KeyedDriftMoE

    rng = np.random.default_rng(1)
    K, d, c, n = 40, 5, 3, 12000
    keys = rng.integers(0, K, n)
    X = rng.uniform(0.0, 1.0, size=(n, d))
    Y = (np.digitize(X[:, 0], [0.33, 0.66]) + keys) % c
    kw = dict(n_experts=6, top_k=2, hidden=64, window=64, grace_period=10, delta=1e-3, seed=9)
    cpu = KeyedDriftMoE(K, d, c, device="cpu", **kw)
    gpu = KeyedDriftMoE(K, d, c, device="cuda", **kw)
    assert gpu.device == "cuda"
    agree = total = 0
    for s in range(0, n, 3000):
        a = cpu.learn_predict_window(keys[s:s + 3000], X[s:s + 3000], Y[s:s + 3000])
        b = gpu.learn_predict_window(keys[s:s + 3000], X[s:s + 3000], Y[s:s + 3000])
        agree += int((a.y_pred == b.y_pred).sum())
        total += len(a.y_pred)
    assert agree / total >= 0.999
    assert np.array_equal(cpu.router_steps, gpu.router_steps)
    assert abs(int(cpu.pool.arrays.n_nodes.sum()) - int(gpu.pool.arrays.n_nodes.sum())) <= 4


@pytest.mark.skipif(not cupy_available(), reason="needs CuPy with a GPU")
def test_cupy_router_training_is_close_to_numpy():
    import cupy

    from streammoe.keyed.router_batch import train_routers
    from streammoe.routers.mlp import MLPRouter

    rng = np.random.default_rng(2)
    routers = []
    for key in range(6):
        r = MLPRouter(0, 12, hidden=256, seed=key)
        r.add_inputs(10)
        routers.append(r)
    on_gpu = copy.deepcopy(routers)
    X = rng.normal(size=(6, 256, 10))
    M = (rng.random((6, 256, 12)) < 0.25).astype(np.float64)
    train_routers(routers, X, M)
    train_routers(on_gpu, X, M, xp=cupy)
    for a, b in zip(routers, on_gpu):
        for p in a.params:
            assert np.allclose(a.params[p], b.params[p], rtol=1e-4, atol=1e-6), p
