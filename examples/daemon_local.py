"""The compose.yaml flow with local binaries: broker, Redis, topics, `serve`, a generator.

Starts a Tansu broker and a redis-server on free ports (from the ``[dev]`` extra, see
``streammoe.testing``), creates the topics, runs the daemon in a thread, writes a drifting
stream with delayed labels, then shows the daemon's metrics, stops it (checkpoint, leave the
group) and prints what Redis holds.  Run:  python examples/daemon_local.py [--n 20000]
"""
from __future__ import annotations

import argparse
import json
import time
import urllib.request

from kafka import KafkaProducer

from streammoe.connectors import open_source
from streammoe.service.daemon import Daemon
from streammoe.service.generate import generate
from streammoe.service.inspection import format_report, inspect_store
from streammoe.service.logs import configure_logging
from streammoe.service.settings import Settings
from streammoe.testing import RedisServer, TansuBroker, create_topics, read_topic


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=20_000, help="events to send")
    ap.add_argument("--stream", default="sea_a", help="built-in stream, CSV/JSONL file or river:Name")
    ap.add_argument("--delay", type=int, default=100, help="events between an event and its label")
    args = ap.parse_args()
    configure_logging("INFO", json_lines=False)

    with TansuBroker() as broker, RedisServer(appendonly=True) as redis:
        topics = {"input_topic": "streammoe-events", "labels_topic": "streammoe-labels",
                  "predictions_topic": "streammoe-predictions", "deadletter_topic": "streammoe-deadletter"}
        create_topics(broker.bootstrap, {"streammoe-events": 2, "streammoe-labels": 2,
                                         "streammoe-predictions": 2, "streammoe-deadletter": 1})
        settings = Settings.load(
            kafka=dict(bootstrap_servers=broker.bootstrap, session_timeout_ms=6000, heartbeat_interval_ms=1000,
                       **topics),
            redis=dict(url=redis.url), model=dict(name="driftmoe", params={"n_experts": 12, "seed": 42}),
            checkpoint=dict(every_events=5000, every_seconds=5.0), http=dict(port=0), log_json=False)
        daemon = Daemon(settings).start_thread()
        print(f"serving; metrics at {daemon.http.url}/metrics, health at {daemon.http.url}/healthz")

        producer = KafkaProducer(bootstrap_servers=broker.bootstrap, linger_ms=5)
        report = generate(open_source(args.stream, n=args.n, seed=1), producer, topics["input_topic"],
                          partitions=2, labels="delayed", labels_topic=topics["labels_topic"], delay=args.delay)
        producer.close()
        print(f"sent {report.events} events and {report.labels} labels ({report.events_per_s:,.0f}/s)")

        preds = read_topic(broker.bootstrap, topics["predictions_topic"], args.n, timeout=600)
        print(f"{len(preds)} predictions; the last: {json.loads(preds[-1].value)}")
        while sum(p["stats"]["learned"] for p in daemon.snapshot().values()) < args.n:
            time.sleep(0.2)
        daemon.refresh_metrics()
        with urllib.request.urlopen(daemon.http.url + "/metrics") as r:
            for line in r.read().decode().splitlines():
                if line.startswith(("streammoe_prequential_accuracy", "streammoe_learned_total",
                                    "streammoe_checkpoints_total", "streammoe_pending_labels")):
                    print("  " + line)
        daemon.stop()
        daemon.join(60)
        for line in format_report(inspect_store(settings.make_store()), experts=False):
            print(line)


if __name__ == "__main__":
    main()
