"""Prometheus metrics of the daemon and its ``/healthz`` + ``/metrics`` HTTP endpoint.

Why a registry per daemon: tests and examples run several daemons in one process; a
private :class:`prometheus_client.CollectorRegistry` keeps their numbers apart.  Counters
are bumped per batch (cheap); gauges that need a look at the models (expert shares, drift
events, lag, pending, checkpoint age) are refreshed by the daemon every
``serve.metrics_interval_s`` seconds, not per event.
"""
from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Optional

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

__all__ = ["DaemonMetrics", "HttpServer"]

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class DaemonMetrics:
    """All metrics of one daemon, in their own registry (names start with ``streammoe_``)."""

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.records = Counter("streammoe_records", "Records consumed, by topic kind", ["kind"], registry=r)
        self.predictions = Counter("streammoe_predictions", "Predictions produced", registry=r)
        self.learned = Counter("streammoe_learned", "Events learned (inline and delayed labels)", registry=r)
        self.dead_letters = Counter("streammoe_dead_letters", "Messages sent to the dead-letter topic",
                                    ["reason"], registry=r)
        self.events_per_second = Gauge("streammoe_events_per_second",
                                       "Input records processed per second over the last refresh interval",
                                       registry=r)
        self.latency = Histogram("streammoe_prediction_latency_seconds",
                                 "Event timestamp to prediction produced", buckets=_LATENCY_BUCKETS, registry=r)
        self.lag = Gauge("streammoe_consumer_lag", "Records behind the high watermark",
                         ["topic", "partition"], registry=r)
        self.accuracy = Gauge("streammoe_prequential_accuracy",
                              "Share of labelled predictions that were right (since the partition's first event)",
                              ["partition"], registry=r)
        self.expert_share = Gauge("streammoe_expert_share", "Share of learned events each expert led",
                                  ["partition", "expert"], registry=r)
        self.drift_events = Gauge("streammoe_drift_events", "Expert pool changes (grow / freeze / prune)",
                                  ["partition", "action"], registry=r)
        self.pending = Gauge("streammoe_pending_labels", "Events waiting for a delayed label",
                             ["partition"], registry=r)
        self.early_labels = Gauge("streammoe_early_labels", "Labels waiting for an event the input partition "
                                  "has not delivered yet (see service.early)", ["partition"], registry=r)
        self.checkpoint_age = Gauge("streammoe_checkpoint_age_seconds",
                                    "Seconds since the last checkpoint of a partition with unsaved changes "
                                    "(0 when everything is saved)", ["partition"], registry=r)
        self.checkpoints = Counter("streammoe_checkpoints", "Checkpoints written", registry=r)
        self.checkpoint_failures = Counter("streammoe_checkpoint_failures",
                                           "Checkpoints that failed (Redis unreachable)", registry=r)
        self.store_retries = Counter("streammoe_store_retries",
                                     "Redis operations that failed because Redis was unreachable and were "
                                     "retried after a backoff, by operation", ["op"], registry=r)
        self.checkpoint_seconds = Histogram("streammoe_checkpoint_duration_seconds",
                                            "Time to write one checkpoint", registry=r)
        self.fenced = Counter("streammoe_fenced", "Partitions dropped because a newer owner claimed them",
                              registry=r)
        self.state_refused = Counter("streammoe_state_refused",
                                     "Partitions whose stored state failed its HMAC / format check "
                                     "(the daemon stops rather than load or reset it)", registry=r)
        self.partitions = Gauge("streammoe_owned_partitions", "Input partitions owned by this daemon", registry=r)
        self.models = Gauge("streammoe_models", "Models held in memory", registry=r)

    def forget_partition(self, partition: int, topics: tuple) -> None:
        """Drop the labelled gauges of a partition this daemon no longer owns."""
        p = str(partition)
        for gauge in (self.accuracy, self.pending, self.early_labels, self.checkpoint_age):
            _remove(gauge, p)
        for topic in topics:
            if topic:
                _remove(self.lag, topic, p)
        for gauge in (self.expert_share, self.drift_events):
            for labels in list(_children(gauge)):
                if labels[0] == p:
                    _remove(gauge, *labels)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


def _children(gauge: Any):
    # prometheus_client keeps children in _metrics; there is no public iterator.
    return list(getattr(gauge, "_metrics", {}).keys())


def _remove(gauge: Any, *labels: str) -> None:
    try:
        gauge.remove(*labels)
    except KeyError:
        pass


class HttpServer:
    """``GET /metrics`` (Prometheus text format) and ``GET /healthz`` (JSON; 200 when
    healthy, 503 otherwise) on a background thread."""

    def __init__(self, host: str, port: int, metrics: DaemonMetrics,
                 health: Callable[[], tuple[bool, dict]]):
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server API)
                path = self.path.split("?", 1)[0]
                if path == "/metrics":
                    body, status, ctype = metrics.exposition(), 200, CONTENT_TYPE_LATEST
                elif path in ("/healthz", "/health"):
                    ok, info = health()
                    body, status, ctype = json.dumps(info).encode(), 200 if ok else 503, "application/json"
                else:
                    body, status, ctype = b"not found: try /metrics or /healthz\n", 404, "text/plain"
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, fmt: str, *args: Any) -> None:  # scrapes are not worth a log line
                return

        self._httpd = ThreadingHTTPServer((host, port), Handler)
        self._httpd.daemon_threads = True
        self.host, self.port = self._httpd.server_address[:2]
        self._thread: Optional[threading.Thread] = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> "HttpServer":
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="streammoe-http", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join(5)
            self._thread = None
        self._httpd.server_close()
