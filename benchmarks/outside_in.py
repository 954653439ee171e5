"""The operator's scenario of issue 11, outside in: the CLI as subprocesses, a real Tansu broker
and redis-server, ``streammoe generate sea_a --labels delayed --delay 100`` over topics with 4
partitions, then ``streammoe serve`` with one process, then with two in one group, each run on
fresh topics.  Every run must learn every label, with no dead letter.

    PYTHONPATH=. python benchmarks/outside_in.py --events 60000 --runs 3 --out benchmarks/results/outside_in.md

What is counted comes from what the daemons stored in Redis (each partition's counters are
checkpointed with its offsets): labels joined, dead letters by reason, events still waiting.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from streammoe.state.redis_store import RedisStore  # noqa: E402
from streammoe.testing.services import RedisServer, TansuBroker, find_redis_server, find_tansu  # noqa: E402


def env_for(bootstrap: str, redis_url: str, stamp: str) -> dict:
    env = dict(os.environ)
    env.update({
        "PYTHONPATH": os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]),
        "STREAMMOE_KAFKA__BOOTSTRAP_SERVERS": bootstrap, "STREAMMOE_KAFKA__GROUP_ID": f"g-{stamp}",
        "STREAMMOE_KAFKA__INPUT_TOPIC": f"in-{stamp}", "STREAMMOE_KAFKA__LABELS_TOPIC": f"lab-{stamp}",
        "STREAMMOE_KAFKA__PREDICTIONS_TOPIC": f"pred-{stamp}", "STREAMMOE_KAFKA__DEADLETTER_TOPIC": f"dlq-{stamp}",
        "STREAMMOE_REDIS__URL": redis_url, "STREAMMOE_MODEL__NAME": f"m-{stamp}", "STREAMMOE_HTTP__PORT": "0",
    })
    return env


def totals(store: RedisStore, env: dict, partitions: int) -> dict:
    out = {"events": 0, "labels": 0, "joined": 0, "predicted": 0, "dead": {}, "pending": 0, "offsets": 0}
    for p in range(partitions):
        name = f"{env['STREAMMOE_MODEL__NAME']}/{env['STREAMMOE_KAFKA__INPUT_TOPIC']}/{p}"
        ck = store.load(name)
        out["offsets"] += sum(ck.offsets.values())
        out["pending"] += store.pending_count(name)
        if "daemon" not in ck.extra:
            continue
        st = json.loads(ck.extra["daemon"])["stats"]
        for k in ("events", "labels", "joined", "predicted"):
            out[k] += st[k]
        for k, v in st["dead"].items():
            out["dead"][k] = out["dead"].get(k, 0) + v
    return out


def run_once(bootstrap: str, redis_url: str, events: int, partitions: int, processes: int, stamp: str,
             logdir: Path, stall_s: float) -> dict:
    env = env_for(bootstrap, redis_url, stamp)
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "streammoe", "generate", "sea_a", "--n", str(events), "--labels",
                    "delayed", "--delay", "100", "--partitions", str(partitions), "--create-topics"],
                   env=env, cwd=REPO, check=True, stdout=subprocess.DEVNULL)
    gen_s = time.perf_counter() - t0
    store = RedisStore.from_url(redis_url)
    procs = []
    t0 = time.perf_counter()
    try:
        for k in range(processes):
            log = open(logdir / f"{stamp}-serve{k}.log", "wb")
            procs.append(subprocess.Popen([sys.executable, "-m", "streammoe", "serve"], env=env, cwd=REPO,
                                          stdout=log, stderr=log, start_new_session=True))
        want = 2 * events
        last, since = None, time.monotonic()
        while True:
            t = totals(store, env, partitions)
            if t["offsets"] >= want and t["joined"] + sum(t["dead"].values()) >= events:
                break
            if any(p.poll() is not None for p in procs):
                raise RuntimeError(f"a serve process exited early (see {logdir})")
            mark = (t["offsets"], t["joined"])
            if mark != last:
                last, since = mark, time.monotonic()
            elif time.monotonic() - since > stall_s:
                break  # no progress: report what was learned
            time.sleep(0.2)
        serve_s = time.perf_counter() - t0
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(120)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
    t = totals(store, env, partitions)
    return {"processes": processes, "events": events, "labels_learned": t["joined"], "dead": t["dead"],
            "pending": t["pending"], "predicted": t["predicted"], "generate_s": round(gen_s, 1),
            "serve_s": round(serve_s, 1), "exit": [p.returncode for p in procs]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=60_000)
    ap.add_argument("--partitions", type=int, default=4)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--processes", default="1,2")
    ap.add_argument("--stall-s", type=float, default=120.0)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="outside-in-"))
    broker = TansuBroker(workdir=work / "tansu", binary=find_tansu()).start()
    redis = RedisServer(workdir=work / "redis", binary=find_redis_server()).start()
    rows = []
    try:
        for procs in [int(x) for x in args.processes.split(",")]:
            for run in range(args.runs):
                stamp = f"oi{procs}x{run}-{os.getpid()}"
                row = run_once(broker.bootstrap, redis.url, args.events, args.partitions, procs, stamp, work,
                               args.stall_s)
                rows.append(row)
                print(json.dumps(row), flush=True)
    finally:
        broker.stop()
        redis.stop()
    if args.out:
        lines = ["# Outside-in: generate --labels delayed --delay 100, then serve (issue 11)", "",
                 f"`{' '.join(sys.argv)}` - {args.events:,} events on {args.partitions} input and labels partitions, "
                 f"fresh topics per run; the CLI as subprocesses, a real Tansu broker and redis-server. "
                 f"Figures from the counters the daemons checkpointed in Redis.", "",
                 "| serve processes | run | labels learned | dead letters | still pending | predicted | generate s "
                 "| serve s (to the last label) |",
                 "|---|---|---|---|---|---|---|---|"]
        for i, r in enumerate(rows):
            lines.append(f"| {r['processes']} | {i % args.runs + 1} | {r['labels_learned']:,} of {r['events']:,} | "
                         f"{sum(r['dead'].values())} {r['dead'] or ''} | {r['pending']} | {r['predicted']:,} | "
                         f"{r['generate_s']} | {r['serve_s']} |")
        args.out.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
