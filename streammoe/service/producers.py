"""Kafka producers behind one surface: kafka-python's ``KafkaProducer`` (the default) or, as an
optional faster client, confluent-kafka's librdkafka producer (``kafka.producer_client =
"confluent-kafka"``; ``pip install confluent-kafka``).

Why a second client: kafka-python builds every record batch in Python, about 30-60 us per record
on a small machine, which caps ``streammoe generate`` and the daemon's prediction output well
below the model's speed (see ``benchmarks/results/serve_throughput.md``).  librdkafka does that
work in C on its own threads.  Both clients are configured from the same settings (the
kafka-python keyword arguments of :meth:`KafkaSettings.producer_kwargs`, translated here), and
both answer ``send(topic, value, key, headers, partition, timestamp_ms)``, ``flush``, ``close``
and ``partitions_for``; delivery failures are counted by :meth:`ConfluentProducer.take_errors`
(kafka-python reports them through each send's future instead).
"""
from __future__ import annotations

from typing import Any, Optional

__all__ = ["CLIENTS", "ConfluentProducer", "confluent_config", "make_producer"]

CLIENTS = ("kafka-python", "confluent-kafka")

#: kafka-python producer keyword -> librdkafka property (values translated in confluent_config)
_SIMPLE = {
    "client_id": "client.id", "security_protocol": "security.protocol", "request_timeout_ms": "request.timeout.ms",
    "sasl_mechanism": "sasl.mechanism", "sasl_plain_username": "sasl.username",
    "sasl_plain_password": "sasl.password", "ssl_cafile": "ssl.ca.location",
    "ssl_certfile": "ssl.certificate.location", "ssl_keyfile": "ssl.key.location",
    "ssl_password": "ssl.key.password", "acks": "acks", "enable_idempotence": "enable.idempotence",
    "linger_ms": "linger.ms", "max_request_size": "message.max.bytes", "compression_type": "compression.type",
    "batch_size": "batch.size",
}


def confluent_config(kwargs: dict) -> dict:
    """librdkafka properties for kafka-python producer ``kwargs``; an argument without a
    counterpart raises ``ValueError`` (silently dropping a security option would be worse)."""
    conf: dict[str, Any] = {}
    for name, value in kwargs.items():
        if value is None:
            continue
        if name == "bootstrap_servers":
            conf["bootstrap.servers"] = value if isinstance(value, str) else ",".join(value)
        elif name == "ssl_check_hostname":
            conf["ssl.endpoint.identification.algorithm"] = "https" if value else "none"
        elif name in _SIMPLE:
            conf[_SIMPLE[name]] = str(value) if name == "acks" else value
        else:
            raise ValueError(f"producer option {name!r} has no confluent-kafka counterpart here; use "
                             f"kafka.producer_client = 'kafka-python'")
    return conf


class ConfluentProducer:
    """confluent-kafka's ``Producer`` with the part of kafka-python's interface streammoe uses."""

    def __init__(self, **kwargs: Any):
        try:
            from confluent_kafka import Producer
        except ImportError as exc:
            raise ValueError("kafka.producer_client = 'confluent-kafka' needs the confluent-kafka package "
                             "(pip install confluent-kafka)") from exc
        conf = confluent_config(kwargs)
        conf["delivery.report.only.error"] = True
        conf["on_delivery"] = self._report
        self._p = Producer(conf)
        self._errors = 0
        self._first: Optional[str] = None
        self._since_poll = 0

    def _report(self, err: Any, msg: Any) -> None:
        if err is not None:
            self._errors += 1
            if self._first is None:
                self._first = str(err)

    def send(self, topic: str, value: Optional[bytes] = None, key: Optional[bytes] = None,
             headers: Optional[list] = None, partition: Optional[int] = None,
             timestamp_ms: Optional[int] = None) -> None:
        kw: dict[str, Any] = {}
        if partition is not None:
            kw["partition"] = partition
        if timestamp_ms is not None:
            kw["timestamp"] = timestamp_ms
        if headers:
            kw["headers"] = headers
        while True:
            try:
                self._p.produce(topic, value, key, **kw)
                break
            except BufferError:  # the local queue is full: let librdkafka deliver, then retry
                self._p.poll(0.05)
        self._since_poll += 1
        if self._since_poll >= 1000:  # serve delivery reports (errors only) now and then
            self._since_poll = 0
            self._p.poll(0)

    def flush(self, timeout: Optional[float] = None) -> None:
        left = self._p.flush(-1 if timeout is None else timeout)
        if left:
            self._errors += left
            self._first = self._first or f"{left} record(s) not delivered within {timeout} s"

    def take_errors(self) -> tuple[int, Optional[str]]:
        """Failed deliveries since the previous call, and the first error's text."""
        out = (self._errors, self._first)
        self._errors, self._first = 0, None
        return out

    def partitions_for(self, topic: str) -> set:
        meta = self._p.list_topics(topic, timeout=10).topics.get(topic)
        return set(meta.partitions) if meta is not None and meta.error is None else set()

    def close(self, timeout: Optional[float] = None) -> None:
        """Deliver what is queued, then let librdkafka's threads go (idempotent)."""
        if self._p is not None:
            self.flush(10.0 if timeout is None else timeout)
            self._p = None


def make_producer(kwargs: dict, client: str = "kafka-python") -> Any:
    """A producer of ``client`` (see :data:`CLIENTS`) built from kafka-python keyword arguments."""
    if client == "confluent-kafka":
        return ConfluentProducer(**kwargs)
    if client != "kafka-python":
        raise ValueError(f"unknown Kafka producer client {client!r}; choose one of {', '.join(CLIENTS)}")
    from kafka import KafkaProducer

    return KafkaProducer(**kwargs)
