"""The whole label-alignment matrix of issue 11, on a real Tansu broker and redis-server:
partitions {1, 2, 4, 8} x processes {1, 2} x labels {inline, delayed 100, delayed 5000,
shuffled within 500} x {backlog, live}, each case with several seeds.  Every case must learn
every label exactly once, predict every event, dead-letter nothing, and end with each
partition's model equal to the offline model fed the same (event, label) pairs (see
:mod:`streammoe.testing.label_matrix`; ``tests/test_label_matrix.py`` runs a subset in CI).

    PYTHONPATH=. python benchmarks/label_matrix.py --seeds 1,2,3 --events 3000 \\
        --out benchmarks/results/label_matrix.md

``--only p4`` (a substring of the case names) runs a part of it.
"""
from __future__ import annotations

import argparse
import itertools
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from streammoe.testing.label_matrix import Case, check_case, run_case  # noqa: E402
from streammoe.testing.services import RedisServer, TansuBroker, find_redis_server, find_tansu  # noqa: E402

LABELS = [("inline", 0), ("delayed", 100), ("delayed", 5000), ("shuffled", 0)]


def cases(events: int, seeds: list[int]) -> list[Case]:
    out = []
    for parts, procs, (labels, delay), mode, seed in itertools.product((1, 2, 4, 8), (1, 2), LABELS,
                                                                         ("backlog", "live"), seeds):
        if procs > parts:
            continue  # a second process would own nothing
        out.append(Case(parts, procs, labels, mode, n_events=events, delay=delay or 100, window=500, seed=seed,
                        rate=1_500.0))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=3_000)
    ap.add_argument("--seeds", default="1,2,3")
    ap.add_argument("--only", default="")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    todo = [c for c in cases(args.events, [int(s) for s in args.seeds.split(",")]) if args.only in c.name]
    work = Path(tempfile.mkdtemp(prefix="label-matrix-"))
    broker = TansuBroker(workdir=work / "tansu", binary=find_tansu()).start()
    redis = RedisServer(workdir=work / "redis", binary=find_redis_server()).start()
    rows = []
    t_all = time.perf_counter()
    try:
        for case in todo:
            try:
                res = run_case(case, broker.bootstrap, redis.url)
                fig = check_case(res, broker.bootstrap, redis.url)
                rows.append((case, "ok", fig["seconds"], ""))
            except AssertionError as exc:
                rows.append((case, "FAIL", float("nan"), str(exc)[:300]))
            print(f"{rows[-1][1]:4} {case.name} {rows[-1][2]} {rows[-1][3]}", flush=True)
    finally:
        broker.stop()
        redis.stop()
    failed = [r for r in rows if r[1] != "ok"]
    print(f"{len(rows) - len(failed)} of {len(rows)} cases passed in {time.perf_counter() - t_all:.0f} s")
    if args.out:
        lines = ["# Label-alignment matrix (issue 11)", "",
                 f"`{' '.join(sys.argv)}`: {len(rows) - len(failed)} of {len(rows)} cases passed "
                 f"({args.events:,} events each; every label learned once, every event predicted, no dead "
                 f"letter, state equal to the offline model). Daemons are threads of one process, each with "
                 f"its own consumer, in one group; live streams are produced at 1,500 events/s.", "",
                 "| case | result | seconds | note |", "|---|---|---|---|"]
        lines += [f"| {c.name} | {r} | {s} | {n} |" for c, r, s, n in rows]
        args.out.write_text("\n".join(lines) + "\n")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
