"""Keyed DriftMoE throughput: many tenants' models learned together, CPU threads vs CUDA.

    python benchmarks/bench_keyed.py --keys 1000 --experts 12 --events-per-key 1024

Every key has its own concept (a random linear rule over ``--features`` features, ``--classes``
classes, with a drift halfway through its stream); events of all keys arrive interleaved in
random order and are fed in batches of ``--batch`` events.  Each configuration first runs a
small model to compile its kernels (reported as warm-up), then the full stream on a fresh model
(steady state, events/s counting every event).  The CPU row uses Numba's threads (``prange``
over trees and keys) and is the baseline of the same run; GPU rows exist when CUDA works.

Exactness checks on the same events: the ``cuda`` row's answers and final trees and routers
against the ``cpu`` row's, bit for bit, and the tree kernel alone (one window) compiled with
and without NVVM's fused multiply-add contraction against the CPU kernel.

Needs only NumPy and Numba(-CUDA) (and CuPy for ``router_device='cuda'``): it imports
``streammoe.gpu`` and ``streammoe.experts`` without river.  Writes ``keyed_gpu.md`` and
``keyed_gpu.json`` to ``--out``.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.append(str(Path(__file__).resolve().parents[1]))  # after PYTHONPATH: a river-free shim may stand in

from streammoe.gpu.backend import cuda_status, cupy_available  # noqa: E402
from streammoe.keyed import KeyedDriftMoE  # noqa: E402


def keyed_stream(n_keys: int, per_key: int, d: int, c: int, seed: int):
    """Interleaved events of ``n_keys`` keys; key k's label is the argmax of its own linear
    scores, whose weights change once (at the middle of its stream)."""
    rng = np.random.default_rng(seed)
    n = n_keys * per_key
    keys = rng.permutation(np.repeat(np.arange(n_keys), per_key))
    X = rng.uniform(0.0, 1.0, size=(n, d))
    H = rng.normal(size=(2, n_keys, d, c))
    seen = np.zeros(n_keys, dtype=np.int64)
    phase = np.empty(n, dtype=np.int64)
    for i, k in enumerate(keys):  # position of each event in its key's stream
        phase[i] = seen[k] >= per_key // 2
        seen[k] += 1
    Y = np.argmax(np.einsum("nd,ndc->nc", X, H[phase, keys]), axis=1).astype(np.int64)
    return keys, X, Y


def run(config: dict, args, keys, X, Y) -> tuple[dict, KeyedDriftMoE, np.ndarray]:
    common = dict(n_experts=args.experts, top_k=args.top_k, hidden=args.hidden, window=args.window,
                  seed=args.seed, device=config["device"], router_device=config["router"])
    t0 = time.perf_counter()
    warm = KeyedDriftMoE(8, X.shape[1], args.classes, **common)
    m = min(len(keys), 8 * 2 * args.window)
    warm.learn_predict_window(keys[:m] % 8, X[:m], Y[:m])
    warm_s = time.perf_counter() - t0
    model = KeyedDriftMoE(args.keys, X.shape[1], args.classes, **common)
    y_pred = np.empty(len(keys), dtype=np.int64)
    launches = 0
    t0 = time.perf_counter()
    for s in range(0, len(keys), args.batch):
        r = model.learn_predict_window(keys[s:s + args.batch], X[s:s + args.batch], Y[s:s + args.batch])
        y_pred[s:s + args.batch] = r.y_pred
        launches += r.launches
    wall = time.perf_counter() - t0
    row = {"device": config["device"], "router": config["router"], "events": int(len(keys)),
           "seconds": round(wall, 3), "events_per_s": round(len(keys) / wall),
           "accuracy": round(float((y_pred == Y).mean()), 4), "warmup_s": round(warm_s, 2),
           "launches": launches, "router_steps": int(model.router_steps.sum()),
           "max_tree_nodes": int(model.pool.arrays.n_nodes.max()), "capacity": model.pool.capacity,
           "phases_s": {k: round(v, 3) for k, v in model.timings.items()}}
    return row, model, y_pred


def same_state(a: KeyedDriftMoE, b: KeyedDriftMoE) -> dict:
    pa, pb = a.pool.to_arrays(), b.pool.to_arrays()
    trees = all(np.array_equal(pa[f], pb[f]) for f in pa)
    routers = all(np.array_equal(ra.params[p], rb.params[p]) for ra, rb in zip(a.routers, b.routers)
                  for p in ra.params)
    return {"trees_equal": bool(trees), "routers_equal": bool(routers)}


def tree_kernel_check(args) -> dict:
    """One window through the CPU driver and the CUDA kernel with and without FMA contraction."""
    from streammoe.experts.fast_tree import TreePool
    from streammoe.gpu import cuda_trees
    from streammoe.keyed import tree_window

    rng = np.random.default_rng(5)
    E, d, c, n = 64, args.features, args.classes, 4000
    X = rng.uniform(0, 1, size=(n, d))
    Y = np.argmax(X @ rng.normal(size=(d, c)), axis=1).astype(np.int64)
    W = rng.dirichlet(np.ones(E), size=n)
    top, rank = tree_window.top_k_ranks(W, args.top_k)
    ptr = np.array([0, n], dtype=np.int64)
    out = {}
    results = {}
    for name in ("cpu", "cuda", "cuda_fma"):
        pool = TreePool(E, d, c, grace_period=10, delta=1e-3)
        ep = np.full((n, E), -1, dtype=np.int64)
        pt, Pk = np.zeros((n, E)), np.zeros((n, 1, c))
        if name == "cpu":
            tree_window.run_trees_cpu(pool, E, ptr, X, Y, rank, ep, pt, Pk)
        else:
            dp = cuda_trees.DevicePool(pool)
            cuda_trees.run_trees_cuda(dp, E, ptr, X, Y, rank, ep, pt, Pk, contract=name == "cuda_fma")
            dp.to_host()
        results[name] = (ep, pt, Pk, pool.to_arrays())
    ref = results["cpu"]
    for name in ("cuda", "cuda_fma"):
        ep, pt, Pk, arrays = results[name]
        out[name] = {"expert_pred_equal": bool(np.array_equal(ep, ref[0])),
                     "p_true_equal": bool(np.array_equal(pt, ref[1])),
                     "proba_equal": bool(np.array_equal(Pk, ref[2])),
                     "p_true_max_abs_diff": float(np.abs(pt - ref[1]).max()),
                     "events_with_a_different_prediction": int((ep != ref[0]).any(axis=1).sum()),
                     "pool_fields_differing": [f for f in arrays if not np.array_equal(arrays[f], ref[3][f])],
                     "nodes": int(arrays["n_nodes"].sum())}
    out["cpu_nodes"] = int(ref[3]["n_nodes"].sum())
    out["fma_control"] = cuda_trees.FMA_CONTROL
    kernels = (("no_contraction", cuda_trees._trees_kernel), ("default_contraction", cuda_trees._trees_kernel_fma))
    for name, kern in kernels:
        try:
            ptx = "\n".join(kern.inspect_asm().values())
            out[f"ptx_fma_f64_{name}"] = ptx.count("fma.rn.f64")
        except Exception as exc:  # inspection is informative only
            out[f"ptx_fma_f64_{name}"] = f"n/a ({exc.__class__.__name__})"
    return out


def versions() -> dict:
    import numba

    info = {"python": platform.python_version(), "numpy": np.__version__, "numba": numba.__version__,
            "cpu_count": os.cpu_count(), "cuda": cuda_status()[1]}
    try:
        from importlib.metadata import version

        info["numba_cuda"] = version("numba-cuda")
    except Exception:
        info["numba_cuda"] = "built into numba"
    if cuda_status()[0]:
        from numba import cuda

        info["gpu"] = cuda.get_current_device().name.decode() if isinstance(cuda.get_current_device().name, bytes) \
            else str(cuda.get_current_device().name)
    if cupy_available():
        import cupy

        info["cupy"] = cupy.__version__
    return info


def markdown(report: dict) -> str:
    a = report["args"]
    lines = [
        "# Keyed DriftMoE throughput: CPU threads vs CUDA",
        "",
        f"{a['keys']} keys x {a['experts']} experts (top-{a['top_k']}), {a['features']} features, "
        f"{a['classes']} classes, router hidden {a['hidden']}, window {a['window']}; "
        f"{a['events_per_key']} events per key ({a['keys'] * a['events_per_key']:,} events, interleaved), "
        f"batches of {a['batch']:,} events.  Command: `{report['command']}`.",
        "",
        "Environment: " + ", ".join(f"{k} {v}" for k, v in report["versions"].items()),
        "",
        "| device | router training | events/s | vs CPU | accuracy | warm-up s | forward s | trees s | answers s "
        "| router training s | other s | launches |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    base = report["rows"][0]["events_per_s"]
    for r in report["rows"]:
        p = r["phases_s"]
        lines.append(f"| {r['device']} | {r['router']} | {r['events_per_s']:,} | {r['events_per_s'] / base:.2f}x | "
                     f"{r['accuracy']:.4f} | {r['warmup_s']} | {p['forward']} | {p['trees']} | {p['answer']} | "
                     f"{p['train']} | {p['other']} | {r['launches']} |")
    lines += ["", "## Exactness", ""]
    for name, value in report.get("equality", {}).items():
        lines.append(f"- keyed `{name}` vs `cpu`: {json.dumps(value)}")
    if "tree_kernel" in report:
        lines.append(f"- tree kernel alone (64 trees, one window of 4,000 events): {json.dumps(report['tree_kernel'])}")
    lines.append("")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--keys", type=int, default=1000)
    ap.add_argument("--experts", type=int, default=12)
    ap.add_argument("--top-k", type=int, default=3)
    ap.add_argument("--events-per-key", type=int, default=1024)
    ap.add_argument("--features", type=int, default=10)
    ap.add_argument("--classes", type=int, default=5)
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--window", type=int, default=256)
    ap.add_argument("--batch", type=int, default=65536)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--devices", default="cpu,cuda,cuda+cupy",
                    help="rows to run: cpu, cuda (exact), cuda+cupy (router training in CuPy)")
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent / "results"))
    args = ap.parse_args()
    keys, X, Y = keyed_stream(args.keys, args.events_per_key, args.features, args.classes, args.seed)
    report = {"command": "python benchmarks/bench_keyed.py " + " ".join(sys.argv[1:]), "args": vars(args),
              "versions": versions(), "rows": [], "equality": {}}
    models, preds = {}, {}
    for name in args.devices.split(","):
        device, router = {"cpu": ("cpu", "cpu"), "cuda": ("cuda", "cpu"), "cuda+cupy": ("cuda", "cuda")}[name]
        if device == "cuda" and not cuda_status()[0]:
            print(f"skipping {name}: {cuda_status()[1]}", flush=True)
            continue
        if router == "cuda" and not cupy_available():
            print(f"skipping {name}: CuPy with a GPU is not available", flush=True)
            continue
        row, models[name], preds[name] = run({"device": device, "router": router}, args, keys, X, Y)
        report["rows"].append(row)
        print(json.dumps(row), flush=True)
        if name != "cpu" and "cpu" in models:
            eq = {"answers_equal": bool(np.array_equal(preds[name], preds["cpu"])),
                  "events_answered_differently": int((preds[name] != preds["cpu"]).sum())}
            eq.update(same_state(models[name], models["cpu"]))
            report["equality"][name] = eq
            print(name, json.dumps(eq), flush=True)
    if cuda_status()[0]:
        report["tree_kernel"] = tree_kernel_check(args)
        print(json.dumps(report["tree_kernel"]), flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "keyed_gpu.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / "keyed_gpu.md").write_text(markdown(report))
    print(markdown(report))


if __name__ == "__main__":
    main()
