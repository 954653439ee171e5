"""The Numba-CUDA kernels in Numba's CUDA simulator equal the CPU path bit for bit.

``NUMBA_ENABLE_CUDASIM`` only takes effect if it is set before ``numba.cuda`` is first
imported, which another test module of the same session may already have done; so the checks
run in a fresh interpreter (this file run as a script with the variable set) and report back
as JSON.  The sizes are small: the simulator runs every GPU thread as Python.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


# ----------------------------------------------------------------------------- the checks
def _window_data(rng, n, d, c, E):
    """Striped classes (trees split often, past the pool's first capacity), 10% unlabelled,
    router weights from random logits with exact ties between experts 0 and 1 now and then."""
    X = rng.uniform(0.0, 10.0, size=(n, d))
    Y = (np.floor(X[:, 0] * 0.8) + np.floor(X[:, 1] * 0.5)).astype(np.int64) % c
    Y[rng.random(n) < 0.1] = -1
    logits = rng.normal(size=(n, E))
    logits[rng.random(n) < 0.1, :2] = 0.5
    W = np.exp(logits / 0.8)
    W /= W.sum(axis=1, keepdims=True)
    return W, X, Y


def check_tree_kernel() -> dict:
    """One pool through run_window, the CPU prange driver and the CUDA kernel, window by window."""
    from streammoe.experts.fast_loop import run_window
    from streammoe.experts.fast_tree import TreePool
    from streammoe.gpu import cuda_trees
    from streammoe.keyed import tree_window

    rng = np.random.default_rng(0)
    E, d, c = 4, 3, 3

    def make():
        return TreePool(E, d, c, grace_period=5, delta=0.05, tau=0.3)

    ref, cpu, gpu = make(), make(), make()
    dpool = cuda_trees.DevicePool(gpu)
    start_capacity = ref.capacity
    out = {"windows": 0, "mismatch": [], "launches": []}
    for w, (combine, k) in enumerate([("top1", 2), ("mixture", 3), ("top1", 1), ("mixture", 2), ("top1", 4)]):
        W, X, Y = _window_data(rng, 140, d, c, E)
        r = run_window(ref, W, X, Y, k, combine)
        top, rank = tree_window.top_k_ranks(W, k)
        ptr = np.array([0, len(Y)], dtype=np.int64)
        nk = k if combine == "mixture" else 1
        for name, run, pool in (("cpu", tree_window.run_trees_cpu, cpu), ("cuda", cuda_trees.run_trees_cuda, dpool)):
            ep = np.full((len(Y), E), -1, dtype=np.int64)
            pt, Pk = np.zeros((len(Y), E)), np.zeros((len(Y), nk, c))
            launches = run(pool, E, ptr, X, Y, rank, ep, pt, Pk)
            out["launches"].append(launches)
            proba, y_pred = np.zeros((len(Y), c)), np.zeros(len(Y), dtype=np.int64)
            expert, mask = np.zeros(len(Y), dtype=np.int64), np.zeros((len(Y), E))
            tree_window.answer_window(ptr, Y, W, top, ep, pt, Pk, combine == "mixture", np.zeros((1, c)),
                                      proba, y_pred, expert, mask)
            known = r.y_pred >= 0  # elsewhere the keyed answer is the class prior (zero here)
            for field, a, b in (("expert_pred", ep, r.expert_pred), ("mask", mask, r.mask),
                                ("expert", expert, r.expert), ("proba", proba[known], r.proba[known]),
                                ("y_pred", y_pred[known], r.y_pred[known])):
                if not np.array_equal(a, b):
                    out["mismatch"].append(f"window {w} {name} {field}")
        sa, sc, sg = ref.to_arrays(), cpu.to_arrays(), dpool.to_host().to_arrays()
        for f in sa:
            if not np.array_equal(sa[f], sc[f]):
                out["mismatch"].append(f"window {w} cpu pool {f}")
            if not np.array_equal(sa[f], sg[f]):
                out["mismatch"].append(f"window {w} cuda pool {f}")
        out["windows"] += 1
    out["grew"] = bool(ref.capacity > start_capacity)
    out["max_nodes"] = int(ref.arrays.n_nodes.max())
    out["fma_control"] = cuda_trees.FMA_CONTROL
    return out


def check_keyed() -> dict:
    """KeyedDriftMoE with device='cuda' (simulated) against device='cpu' on the same events."""
    from streammoe.keyed import KeyedDriftMoE

    rng = np.random.default_rng(1)
    K, d, c, n = 3, 3, 3, 270
    keys = rng.integers(0, K, n)
    X = rng.uniform(0.0, 10.0, size=(n, d))
    Y = (np.digitize(X[:, 0], [3.3, 6.6]) + keys) % c
    Y[rng.random(n) < 0.1] = -1
    kw = dict(n_experts=4, top_k=2, hidden=4, window=16, grace_period=5, delta=0.05, seed=3)
    out = {"mismatch": []}
    for combine in ("top1", "mixture"):
        models = {dev: KeyedDriftMoE(K, d, c, combine=combine, device=dev, **kw) for dev in ("cpu", "cuda")}
        out["device"] = models["cuda"].device
        res = {dev: [m.learn_predict_window(keys[s:s + 90], X[s:s + 90], Y[s:s + 90]) for s in range(0, n, 90)]
               for dev, m in models.items()}
        for a, b in zip(res["cpu"], res["cuda"]):
            for field in ("y_pred", "proba", "expert"):
                if not np.array_equal(getattr(a, field), getattr(b, field)):
                    out["mismatch"].append(f"{combine} {field}")
        pa, pb = models["cpu"].pool.to_arrays(), models["cuda"].pool.to_arrays()
        out["mismatch"] += [f"{combine} pool {f}" for f in pa if not np.array_equal(pa[f], pb[f])]
        for ra, rb in zip(models["cpu"].routers, models["cuda"].routers):
            out["mismatch"] += [f"{combine} router {p}" for p in ra.params
                                if not np.array_equal(ra.params[p], rb.params[p])]
        out["router_steps"] = int(models["cuda"].router_steps.sum())
        out["nodes"] = int(models["cuda"].pool.arrays.n_nodes.sum())
    return out


def check_keyed_state() -> dict:
    """A simulated-CUDA keyed model saved mid-stream, loaded (on the device and on the CPU) and
    continued, with a key added after the load, against the uninterrupted device run."""
    from streammoe.keyed import KeyedDriftMoE
    from streammoe.state.codec import state_digest

    rng = np.random.default_rng(2)
    K, d, c, n, cut = 3, 3, 3, 200, 100
    keys = np.concatenate([rng.integers(0, K - 1, cut), rng.integers(0, K, n - cut)])
    X = rng.uniform(0.0, 10.0, size=(n, d))
    Y = (np.digitize(X[:, 0], [3.3, 6.6]) + keys) % c
    Y[rng.random(n) < 0.1] = -1
    kw = dict(n_experts=4, top_k=2, hidden=4, window=16, grace_period=5, delta=0.05, seed=3, device="cuda")
    whole = KeyedDriftMoE(K, d, c, **kw)
    ref = [whole.learn_predict_window(keys[s:s + 50], X[s:s + 50], Y[s:s + 50]) for s in range(0, n, 50)]
    first = KeyedDriftMoE(K - 1, d, c, **kw)
    for s in range(0, cut, 50):
        first.learn_predict_window(keys[s:s + 50], X[s:s + 50], Y[s:s + 50])
    parts = first.state_parts()
    out = {"mismatch": [], "mid_window": bool((first._win_n > 0).any())}
    for dev in ("cuda", "cpu"):
        m = KeyedDriftMoE.from_parts(parts, device=dev)
        out[f"{dev}_device"] = m.device
        m.add_keys(1)
        for i, s in enumerate(range(cut, n, 50)):
            r = m.learn_predict_window(keys[s:s + 50], X[s:s + 50], Y[s:s + 50])
            for field in ("y_pred", "proba", "expert"):
                if not np.array_equal(getattr(r, field), getattr(ref[cut // 50 + i], field)):
                    out["mismatch"].append(f"{dev} {field}")
        got, want = m.state_parts(), whole.state_parts()
        if dev == "cpu":  # the meta part names the device; everything else must match
            got["meta"], want["meta"] = (_without_device(p["meta"]) for p in (got, want))
        if state_digest(got) != state_digest(want):
            out["mismatch"].append(f"{dev} digest")
    return out


def _without_device(meta: bytes) -> bytes:
    from streammoe.state.codec import pack_json, unpack_json

    m = unpack_json(meta)
    del m["params"]["device"]
    return pack_json(m)


def check_nominal_tree_kernel() -> dict:
    """Trees with nominal features (multiway branches, children grown for late categories):
    the CUDA kernel against run_window, window by window."""
    from streammoe.experts.fast_loop import run_window
    from streammoe.experts.fast_tree import TreePool
    from streammoe.gpu import cuda_trees
    from streammoe.keyed import tree_window

    rng = np.random.default_rng(0)
    E, c, V = 4, 3, 7

    def make():
        pool = TreePool(E, 1, c, grace_period=5, delta=0.05, tau=0.3)
        pool.add_features(2, [True, True], V)
        return pool

    ref = make()
    dpool = cuda_trees.DevicePool(make())
    out = {"mismatch": []}
    for w, (combine, k) in enumerate([("top1", 2), ("mixture", 3), ("top1", 1), ("mixture", 2)]):
        n = 300
        X = np.column_stack([rng.uniform(0, 10, n), rng.integers(0, V - 1 + (w > 1), n),
                             rng.integers(0, 3, n)]).astype(float)
        Y = ((X[:, 1] + (X[:, 0] > 5)) % c).astype(np.int64)
        Y[rng.random(n) < 0.1] = -1
        W = np.exp(rng.normal(size=(n, E)) / 0.8)
        W /= W.sum(axis=1, keepdims=True)
        r = run_window(ref, W, X, Y, k, combine)
        _, rank = tree_window.top_k_ranks(W, k)
        nk = k if combine == "mixture" else 1
        ep = np.full((n, E), -1, dtype=np.int64)
        cuda_trees.run_trees_cuda(dpool, E, np.array([0, n], dtype=np.int64), X, Y, rank, ep, np.zeros((n, E)),
                                  np.zeros((n, nk, c)))
        if not np.array_equal(ep, r.expert_pred):
            out["mismatch"].append(f"window {w} expert_pred")
        sa, sg = ref.to_arrays(), dpool.to_host().to_arrays()
        out["mismatch"] += [f"window {w} pool {f}" for f in sa if not np.array_equal(sa[f], sg[f])]
    out["multiway"] = int(ref.arrays.n_mw.sum())
    return out


CHECKS = {"tree_kernel": check_tree_kernel, "keyed": check_keyed, "keyed_state": check_keyed_state,
          "nominal_tree_kernel": check_nominal_tree_kernel}


# ----------------------------------------------------------------------------- the tests
@pytest.fixture(scope="module")
def simulated() -> dict:
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1",
               PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.run([sys.executable, __file__], env=env, cwd=ROOT, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_simulated_cuda_tree_kernel_equals_run_window(simulated):
    out = simulated["tree_kernel"]
    assert out["windows"] == 5
    assert out["mismatch"] == []
    assert out["grew"] and out["max_nodes"] > 15  # the capacity-growth relaunch was exercised
    assert max(out["launches"]) > 1
    assert out["fma_control"] == "simulator"


def test_simulated_cuda_tree_kernel_with_nominal_features_equals_run_window(simulated):
    out = simulated["nominal_tree_kernel"]
    assert out["mismatch"] == []
    assert out["multiway"] > 0  # multiway branches were grown and traversed on the device


def test_simulated_cuda_keyed_model_equals_cpu(simulated):
    out = simulated["keyed"]
    assert out["device"] == "cuda"
    assert out["mismatch"] == []
    assert out["router_steps"] >= 10 and out["nodes"] > 12


def test_simulated_cuda_keyed_model_saved_and_loaded_continues_bit_identically(simulated):
    out = simulated["keyed_state"]
    assert out["cuda_device"] == "cuda" and out["cpu_device"] == "cpu"
    assert out["mid_window"]
    assert out["mismatch"] == []


if __name__ == "__main__":
    if os.environ.get("NUMBA_ENABLE_CUDASIM") != "1":
        sys.exit("run with NUMBA_ENABLE_CUDASIM=1")
    print(json.dumps({name: check() for name, check in CHECKS.items()}))
