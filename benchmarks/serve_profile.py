"""Where a record's time goes in the daemon: cProfile of one in-process ``Daemon`` draining a
backlog on a real Tansu broker and redis-server (4 partitions, labels 100 events late).

The profile starts at the first prediction (the group join and start-up are measured by
``serve_throughput.py``) and stops when every event was predicted and its label learned (or
learning stalls for 2 s).  Prints the run's events/s and the functions by own and cumulative
time; ``benchmarks/results/serve_profile.md`` groups them into poll / decode / align / predict /
produce / checkpoint.

Run: ``python benchmarks/serve_profile.py [--n 20000] [--partitions 4] [--delay 100]``
"""
from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from streammoe.connectors import open_source  # noqa: E402
from streammoe.service.daemon import Daemon  # noqa: E402
from streammoe.service.generate import generate  # noqa: E402
from streammoe.service.settings import Settings  # noqa: E402
from streammoe.testing import RedisServer, TansuBroker, create_topics  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=20_000)
    ap.add_argument("--partitions", type=int, default=4)
    ap.add_argument("--delay", type=int, default=100)
    ap.add_argument("--top", type=int, default=40)
    args = ap.parse_args()
    n, parts = args.n, args.partitions
    work = Path(tempfile.mkdtemp(prefix="smoe-prof-"))
    with TansuBroker(workdir=work) as broker, RedisServer(workdir=work) as redis:
        create_topics(broker.bootstrap, {"in": parts, "lab": parts, "pred": parts, "dlq": 1})
        from kafka import KafkaProducer

        producer = KafkaProducer(bootstrap_servers=broker.bootstrap, linger_ms=5, batch_size=1024 * 1024)
        generate(open_source("sea_a", n=n, seed=1), producer, "in", partitions=parts, labels="delayed",
                 labels_topic="lab", delay=args.delay)
        producer.close()
        settings = Settings(kafka={"bootstrap_servers": broker.bootstrap, "input_topic": "in", "labels_topic": "lab",
                                   "predictions_topic": "pred", "deadletter_topic": "dlq", "group_id": "prof"},
                            redis={"url": redis.url}, model={"name": "prof", "params": {"n_experts": 12, "seed": 1}},
                            http={"enabled": False}, log_level="WARNING")
        daemon = Daemon(settings).start()
        prof = cProfile.Profile()
        t_first = None
        last, t_last = -1, time.perf_counter()
        try:
            while True:
                daemon._step()
                stats = [o.stats for o in daemon.owners.values()]
                predicted, learned = sum(s.predicted for s in stats), sum(s.learned for s in stats)
                if predicted and t_first is None:
                    t_first = time.perf_counter()
                    prof.enable()
                if predicted >= n:
                    if learned != last:
                        last, t_last = learned, time.perf_counter()
                    if learned >= n or time.perf_counter() - t_last > 2:
                        break
            prof.disable()
            seconds = time.perf_counter() - t_first
        finally:
            daemon.stop()
            daemon._shutdown(True)
    print(f"{n} events in {seconds:.1f} s after the first prediction: {n / seconds:,.0f} events/s under cProfile; "
          f"predicted {predicted}, learned {learned}")
    for order in ("tottime", "cumulative"):
        out = io.StringIO()
        pstats.Stats(prof, stream=out).sort_stats(order).print_stats(args.top)
        print(out.getvalue())


if __name__ == "__main__":
    main()
