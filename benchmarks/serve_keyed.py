"""``serve.model_per = "key"`` at 1,000 keys: a dict of DriftMoE vs the keyed pool, same events, same run.

    PYTHONPATH=. python benchmarks/serve_keyed.py --keys 1000 --events-per-key 32

Both engines run inside the daemon's :class:`~streammoe.service.owner.PartitionOwner` (decode,
checks, predict, learn, encode the prediction), fed the same records of one partition in polls of
``--batch`` records; no Kafka or Redis, so the figure is the owner's own cost.  Events of all keys
arrive interleaved at random, every key has its own concept (a random linear rule), labels
inline.  A warm-up run on a small stream compiles both paths first.  Reported: events/s of each
engine, their ratio (the dict of models is the baseline) and the prequential accuracy of each
(the engines differ only in seeds: key ``i`` of the pool is seeded ``seed + i``).  Writes
``serve_keyed.md`` / ``serve_keyed.json`` to ``--out``.
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

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kafka.consumer.fetcher import ConsumerRecord  # noqa: E402

from streammoe import DriftMoE  # noqa: E402
from streammoe.service.keyed_pool import pool_params  # noqa: E402
from streammoe.service.owner import OwnerConfig, PartitionOwner  # noqa: E402


def make_records(keys: int, per_key: int, d: int, seed: int) -> list:
    rng = np.random.default_rng(seed)
    W = rng.normal(size=(keys, d))
    order = rng.permutation(np.repeat(np.arange(keys), per_key))
    out = []
    for i, k in enumerate(order.tolist()):
        x = rng.uniform(-1, 1, d)
        body = {"id": f"e-{i}", "key": f"k{k}", "x": {f"f{j}": round(float(v), 6) for j, v in enumerate(x)},
                "y": int(x @ W[k] > 0)}
        value = json.dumps(body, separators=(",", ":")).encode()
        out.append(ConsumerRecord("in", 0, -1, i, 1_000_000 + i, 0, None, value, [], None, -1, len(value), -1))
    return out


class CountSink:
    def __init__(self):
        self.n = 0

    def prediction(self, partition, key, value, latency_s):
        self.n += 1

    def dead(self, dl, key=None):
        raise AssertionError(f"dead letter: {dl.reason_code.value}: {dl.message}")


def run(engine: str, records: list, params: dict, keys: int, batch: int, threads: int = 0) -> dict:
    import numba

    numba.set_num_threads(threads or numba.config.NUMBA_NUM_THREADS)
    cfg = OwnerConfig(base_name="bench", input_topic="in", labels_topic=None, new_model=lambda: DriftMoE(**params),
                      keyed=True, max_keys=keys, pool_params=pool_params(params) if engine == "pool" else None)
    owner, sink = PartitionOwner(cfg, partition=0, epoch=1), CountSink()
    t0 = time.perf_counter()
    for s in range(0, len(records), batch):
        owner.handle_events(records[s:s + batch], sink)
    dt = time.perf_counter() - t0
    assert sink.n == len(records)
    return {"engine": engine, "threads": numba.get_num_threads(), "events": len(records), "seconds": dt,
            "events_per_s": len(records) / dt,
            "accuracy": owner.stats.correct / max(owner.stats.scored, 1)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--keys", type=int, default=1000)
    ap.add_argument("--events-per-key", type=int, default=32)
    ap.add_argument("--features", type=int, default=4)
    ap.add_argument("--batch", type=int, default=500)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--threads", default="0,1", help="Numba thread counts to run each engine with (0 = all)")
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent / "results"))
    a = ap.parse_args(argv)
    params = dict(n_experts=4, top_k=2, hidden=16, window=16, seed=7)
    warm = make_records(20, 40, a.features, a.seed + 1)
    for engine in ("models", "pool"):
        run(engine, warm, params, 20, a.batch)
    records = make_records(a.keys, a.events_per_key, a.features, a.seed)
    rows, ratios = [], {}
    for threads in (int(t) for t in a.threads.split(",")):
        pair = [run(engine, records, params, a.keys, a.batch, threads) for engine in ("models", "pool")]
        ratios[pair[1]["threads"]] = pair[1]["events_per_s"] / pair[0]["events_per_s"]
        rows += pair
    result = {"keys": a.keys, "events_per_key": a.events_per_key, "batch": a.batch, "params": params,
              "rows": rows, "pool_vs_models": ratios, "cpus": os.cpu_count(), "machine": platform.platform(),
              "python": sys.version.split()[0]}
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "serve_keyed.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = [f"# serve.model_per = 'key' at {a.keys} keys: dict of DriftMoE vs keyed pool (one run)", "",
             f"{len(records)} events ({a.events_per_key} per key, interleaved), polls of {a.batch} records, "
             f"inline labels, params {params}; PartitionOwner only (no Kafka/Redis).", "",
             "| engine | Numba threads | events/s | seconds | prequential accuracy |", "|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['engine']} | {r['threads']} | {r['events_per_s']:,.0f} | {r['seconds']:.2f} | "
                     f"{r['accuracy']:.4f} |")
    lines += [""] + [f"pool / models with {t} Numba thread(s): **{v:.2f}x** events/s" for t, v in ratios.items()]
    lines += ["", f"{result['cpus']} CPUs; with other work on the machine, Numba's parallel launches wait for busy "
              "cores (each launch of the pool is a `prange` over keys or trees), so fewer threads can be faster.", "",
              f"Command: `PYTHONPATH=. python benchmarks/serve_keyed.py --keys {a.keys} --events-per-key "
              f"{a.events_per_key}`; {result['machine']}, Python {result['python']}."]
    (out / "serve_keyed.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
