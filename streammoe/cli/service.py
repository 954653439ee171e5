"""The service commands: ``serve``, ``generate``, ``inspect``.

Options become :class:`~streammoe.service.settings.Settings` overrides (on top of the config file and
``STREAMMOE_*`` variables); library errors become one ``error:`` line and an exit code (2: bad options
or configuration, 1: a runtime failure).
"""
from __future__ import annotations

import json
import re
import signal
from enum import Enum
from pathlib import Path
from typing import Any, Optional

import typer

from .errors import RUNTIME_ERROR, USAGE_ERROR, fail
from .sources import open_source

__all__ = ["serve", "generate", "inspect"]


class LabelMode(str, Enum):
    inline = "inline"
    delayed = "delayed"
    none = "none"


class ModelPer(str, Enum):
    partition = "partition"
    key = "key"


class LogLevel(str, Enum):
    DEBUG = "DEBUG"
    INFO = "INFO"
    WARNING = "WARNING"
    ERROR = "ERROR"


def _put(tree: dict, dotted: str, value: Any) -> None:
    if value is None:
        return
    section, name = dotted.split(".", 1)
    tree.setdefault(section, {})[name] = value


def _parse_params(items: list[str]) -> dict[str, Any]:
    """``--param top_k=3 --param engine=numba`` -> ``{"top_k": 3, "engine": "numba"}``
    (values are JSON when they parse as JSON, text otherwise)."""
    out: dict[str, Any] = {}
    for item in items:
        name, sep, raw = item.partition("=")
        if not sep or not name.strip():
            raise ValueError(f"--param {item!r} is not NAME=VALUE")
        try:
            out[name.strip()] = json.loads(raw)
        except ValueError:
            out[name.strip()] = raw
    return out


def _load_settings(config: Optional[Path], overrides: dict) -> Any:
    from pydantic import ValidationError

    from ..service.settings import Settings, SettingsFileError

    try:
        return Settings.load(config, **overrides)
    except SettingsFileError as exc:
        raise fail(str(exc), USAGE_ERROR)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors(include_url=False))
        raise fail(f"invalid settings: {problems}", USAGE_ERROR)


_CONFIG = typer.Option(None, "--config", help="TOML settings file (default: $STREAMMOE_CONFIG).",
                       exists=True, dir_okay=False)
_BOOTSTRAP = typer.Option(None, "--bootstrap-servers", help="Kafka host:port[,host:port].")
_REDIS = typer.Option(None, "--redis-url", help="redis://, rediss:// (TLS) or unix:// URL.")


def serve(
    config: Optional[Path] = _CONFIG,
    bootstrap_servers: Optional[str] = _BOOTSTRAP,
    input_topic: Optional[str] = typer.Option(None, help="Topic of input events."),
    predictions_topic: Optional[str] = typer.Option(None, help="Topic predictions are written to."),
    labels_topic: Optional[str] = typer.Option(None, help="Topic of delayed labels ('' = inline labels only)."),
    deadletter_topic: Optional[str] = typer.Option(None, help="Topic refused messages are written to."),
    group_id: Optional[str] = typer.Option(None, "--group-id", help="Consumer group (daemons sharing it split "
                                                                   "the partitions)."),
    session_timeout_ms: Optional[int] = typer.Option(
        None, "--session-timeout-ms", min=1, help="kafka.session_timeout_ms: a member silent this long leaves the "
        "group (default 10000; Tansu or a slow network: 6000 with --heartbeat-interval-ms 1000)."),
    heartbeat_interval_ms: Optional[int] = typer.Option(
        None, "--heartbeat-interval-ms", min=1, help="kafka.heartbeat_interval_ms, below the session timeout "
        "(default 3000)."),
    max_poll_interval_ms: Optional[int] = typer.Option(
        None, "--max-poll-interval-ms", min=1, help="kafka.max_poll_interval_ms: the longest pause between polls "
        "before the member is dropped; a rebalance waits up to this long for members to rejoin (default 300000; "
        "5000 lets a group join in seconds)."),
    redis_url: Optional[str] = _REDIS,
    model_name: Optional[str] = typer.Option(None, "--model-name", help="Name of the model state in Redis."),
    param: list[str] = typer.Option([], "--param", help="DriftMoE parameter NAME=VALUE (repeatable), e.g. "
                                                        "--param n_experts=12 --param engine=numba."),
    model_per: Optional[ModelPer] = typer.Option(None, "--model-per", help="One model per partition or per "
                                                                           "event key."),
    checkpoint_events: Optional[int] = typer.Option(None, "--checkpoint-events", min=1,
                                                    help="Checkpoint after this many records."),
    checkpoint_seconds: Optional[float] = typer.Option(None, "--checkpoint-seconds", min=0.001,
                                                       help="Checkpoint at least this often."),
    http_host: Optional[str] = typer.Option(None, "--http-host", help="Address of /healthz and /metrics."),
    http_port: Optional[int] = typer.Option(None, "--http-port", min=0, max=65535, help="Port (0 = any free)."),
    log_level: Optional[LogLevel] = typer.Option(None, "--log-level"),
    log_json: Optional[bool] = typer.Option(None, "--log-json/--log-text", help="JSON log lines or text."),
    show_settings: bool = typer.Option(False, "--show-settings", help="Print the effective settings (file, "
                                       "STREAMMOE_* variables and flags merged; secrets hidden) as JSON and exit."),
) -> None:
    """Run the daemon: consume events, predict, learn, checkpoint state to Redis.

    Stops cleanly on SIGTERM / Ctrl-C: finishes the batch, checkpoints, leaves the group.
    """
    overrides: dict[str, Any] = {}
    for dotted, value in (("kafka.bootstrap_servers", bootstrap_servers), ("kafka.input_topic", input_topic),
                          ("kafka.predictions_topic", predictions_topic), ("kafka.labels_topic", labels_topic),
                          ("kafka.deadletter_topic", deadletter_topic), ("kafka.group_id", group_id),
                          ("kafka.session_timeout_ms", session_timeout_ms),
                          ("kafka.heartbeat_interval_ms", heartbeat_interval_ms),
                          ("kafka.max_poll_interval_ms", max_poll_interval_ms),
                          ("redis.url", redis_url), ("model.name", model_name),
                          ("serve.model_per", model_per.value if model_per else None),
                          ("checkpoint.every_events", checkpoint_events),
                          ("checkpoint.every_seconds", checkpoint_seconds),
                          ("http.host", http_host), ("http.port", http_port)):
        _put(overrides, dotted, value)
    try:
        params = _parse_params(param)
    except ValueError as exc:
        raise fail(str(exc), USAGE_ERROR)
    if params:
        overrides.setdefault("model", {})["params"] = params
    if log_level is not None:
        overrides["log_level"] = log_level.value
    if log_json is not None:
        overrides["log_json"] = log_json
    settings = _load_settings(config, overrides)  # --param values extend the file's model.params
    if show_settings:  # SecretStr fields print as ****; a password inside a URL is masked here
        typer.echo(re.sub(r'(://[^:/@\s"]*:)[^@/\s"]+@', r"\1****@", settings.model_dump_json(indent=2)))
        return

    from ..service.daemon import Daemon, DaemonError
    from ..service.logs import configure_logging
    from ..state.redis_store import StoreUnavailableError

    configure_logging(settings.log_level, settings.log_json)
    try:
        daemon = Daemon(settings)
        daemon.start()
    except DaemonError as exc:
        raise fail(str(exc), USAGE_ERROR)
    except StoreUnavailableError as exc:
        raise fail(str(exc), RUNTIME_ERROR)
    except Exception as exc:  # Kafka unreachable, bad security options...
        raise fail(f"cannot start: {type(exc).__name__}: {exc}", RUNTIME_ERROR)

    def on_signal(signum: int, frame: Any) -> None:
        daemon.stop()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        daemon.run()
    except Exception as exc:
        raise fail(f"the daemon stopped: {exc}", RUNTIME_ERROR)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if daemon.error is not None:
        raise fail(f"the daemon stopped: {daemon.error}", RUNTIME_ERROR)


def generate(
    source: str = typer.Argument(..., help="Built-in stream (led_a, led_g, sea_a, sea_g, rbf_m, rbf_f), a "
                                           "CSV/JSONL file, or river:Name."),
    n: Optional[int] = typer.Option(None, "--n", min=1, help="Number of events."),
    seed: int = typer.Option(42, help="Seed of the stream."),
    target: Optional[str] = typer.Option(None, help="Label column of a CSV/JSONL file."),
    config: Optional[Path] = _CONFIG,
    bootstrap_servers: Optional[str] = _BOOTSTRAP,
    topic: Optional[str] = typer.Option(None, help="Input topic (default: the settings' kafka.input_topic)."),
    labels: LabelMode = typer.Option(LabelMode.inline, help="Labels inline in the events, delayed on the "
                                                            "labels topic, or none."),
    labels_topic: Optional[str] = typer.Option(None, help="Labels topic (default: kafka.labels_topic)."),
    delay: int = typer.Option(100, min=0, help="Delayed labels: events between an event and its label."),
    partitions: Optional[int] = typer.Option(None, min=1, help="Partitions to spread events over (default: "
                                                               "all of the topic's)."),
    keys: int = typer.Option(0, min=0, help="Give events a 'key' field from this many keys (0: none)."),
    rate: Optional[float] = typer.Option(None, min=0.001, help="Events per second (default: as fast as "
                                                               "possible)."),
    id_prefix: str = typer.Option("e-", help="Event ids are PREFIX<index>."),
    start: int = typer.Option(0, min=0, help="Index of the first event (to append to a topic)."),
    ts_step: Optional[float] = typer.Option(None, min=0.0, help="Synthetic event times: seconds between "
                                                                "events (default: wall clock)."),
    create_topics: bool = typer.Option(False, "--create-topics", help="Create missing input, labels, "
                                       "predictions and dead-letter topics, each with --partitions partitions "
                                       "(default 1)."),
) -> None:
    """Write a stream to the input topic, with labels inline or delayed on the labels topic."""
    overrides: dict[str, Any] = {}
    _put(overrides, "kafka.bootstrap_servers", bootstrap_servers)
    _put(overrides, "kafka.input_topic", topic)
    _put(overrides, "kafka.labels_topic", labels_topic)
    settings = _load_settings(config, overrides)
    k = settings.kafka
    if labels is LabelMode.delayed and not k.labels_topic:
        raise fail("--labels delayed needs a labels topic (--labels-topic or kafka.labels_topic)", USAGE_ERROR)

    src = open_source(source, n, seed, target)

    from ..service.generate import generate as run_generate
    from ..service.producers import make_producer

    try:
        if create_topics:
            _create_topics(settings, partitions or 1)
        # big batches: generate writes as fast as it can (kafka-python's 16 KiB default means a
        # request every ~200 records)
        producer = make_producer(k.producer_kwargs(batch_size=1024 * 1024), k.producer_client)
    except Exception as exc:
        raise fail(f"cannot connect to Kafka at {k.bootstrap_servers}: {type(exc).__name__}: {exc}", RUNTIME_ERROR)
    try:
        n_parts = partitions or len(producer.partitions_for(k.input_topic) or ())
        if not n_parts:
            raise fail(f"topic {k.input_topic!r} has no partitions (does it exist? try --create-topics)",
                        USAGE_ERROR)
        report = run_generate(src, producer, k.input_topic, partitions=n_parts, labels=labels.value,
                              labels_topic=k.labels_topic, delay=delay, keys=keys, rate=rate,
                              id_prefix=id_prefix, start=start, ts_step=ts_step)
    except ValueError as exc:
        raise fail(str(exc), USAGE_ERROR)
    finally:
        producer.close(timeout=10)
    bad = getattr(getattr(src, "errors", None), "total", 0)
    typer.echo(f"sent {report.events} events and {report.labels} delayed labels to {k.input_topic!r} "
               f"({report.partitions} partitions) in {report.seconds:.1f} s"
               + (f"; {bad} bad source rows skipped" if bad else ""))


def _create_topics(settings: Any, partitions: int) -> None:
    from ..service.topics import create_missing_topics

    k = settings.kafka
    names = [k.input_topic, k.labels_topic, k.predictions_topic, k.deadletter_topic]
    create_missing_topics({name: partitions for name in names if name}, **k.common_kwargs())


def inspect(
    config: Optional[Path] = _CONFIG,
    redis_url: Optional[str] = _REDIS,
    prefix: Optional[str] = typer.Option(None, help="Key prefix (default: redis.key_prefix)."),
    model: list[str] = typer.Option([], "--model", help="Only this stored name (repeatable), e.g. "
                                                        "driftmoe/streammoe-events/0."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of text."),
    experts: bool = typer.Option(False, "--experts", help="List every expert's size."),
) -> None:
    """Print what Redis holds: models, experts, sizes, offsets, pending labels, checkpoints."""
    overrides: dict[str, Any] = {}
    _put(overrides, "redis.url", redis_url)
    _put(overrides, "redis.key_prefix", prefix)
    settings = _load_settings(config, overrides)

    from ..service.daemon import make_store
    from ..service.inspection import format_report, inspect_store
    from ..state.redis_store import StoreUnavailableError

    try:
        store = make_store(settings)
        rows = inspect_store(store, names=list(model) or None)
    except StoreUnavailableError as exc:
        raise fail(str(exc), RUNTIME_ERROR)
    except ValueError as exc:  # an invalid --model name
        raise fail(str(exc), USAGE_ERROR)
    if as_json:
        typer.echo(json.dumps(rows, indent=2, sort_keys=True))
    else:
        for line in format_report(rows, experts=experts):
            typer.echo(line)

