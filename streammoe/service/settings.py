"""Daemon settings: environment variables, an optional TOML file, and defaults.

Precedence (highest first): keyword arguments, environment variables, the config file,
defaults.  Environment variables use the prefix ``STREAMMOE_`` and ``__`` between nesting
levels, e.g. ``STREAMMOE_KAFKA__BOOTSTRAP_SERVERS=broker:9092`` or
``STREAMMOE_REDIS__PASSWORD=...``.  The config file is TOML (parsed by the standard
library), given to :meth:`Settings.load` or named by ``STREAMMOE_CONFIG``::

    [kafka]
    bootstrap_servers = "broker-1:9093,broker-2:9093"
    security_protocol = "SASL_SSL"
    sasl_mechanism = "SCRAM-SHA-512"
    sasl_plain_username = "streammoe"
    ssl_cafile = "/etc/streammoe/ca.pem"

    [redis]
    url = "rediss://redis:6380/0"

    [model]
    name = "fraud"
    params = { n_experts = 12, top_k = 3 }

Unknown keys are errors (a misspelt option must not silently fall back to its default), and
inconsistent security options (SASL credentials with a PLAINTEXT protocol, TLS files with a
``redis://`` URL, missing files) are refused with a message naming the option.
"""
from __future__ import annotations

import os
import re
from contextvars import ContextVar
from pathlib import Path
from typing import Any, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, FilePath, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict, TomlConfigSettingsSource

from .options import ServeSettings
from .schema import DecodeLimits

try:
    import tomllib
except ImportError:  # Python 3.10: the backport pydantic-settings also uses
    import tomli as tomllib  # type: ignore[no-redef]

__all__ = [
    "Settings", "KafkaSettings", "RedisSettings", "ModelSettings", "CheckpointSettings",
    "LimitsSettings", "HttpSettings", "ServeSettings", "SettingsFileError", "CONFIG_ENV_VAR",
]

#: Environment variable naming the TOML config file.
CONFIG_ENV_VAR = "STREAMMOE_CONFIG"

_config_file: ContextVar[Optional[Path]] = ContextVar("streammoe_config_file", default=None)
_MODEL_NAME_RE = re.compile(r"^[A-Za-z0-9_.:/=@+\-]{1,200}$")


class SettingsFileError(ValueError):
    """The config file is missing or is not valid TOML."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _secret(value: Optional[SecretStr]) -> Optional[str]:
    return value.get_secret_value() if value is not None else None


def _check_tls_files(section: str, cafile: Optional[Path], certfile: Optional[Path], keyfile: Optional[Path],
                     password: Optional[SecretStr], names: tuple[str, str, str]) -> None:
    """Load the CA and the client certificate/key the way the clients will (Python's ``ssl``),
    so a wrong file fails at start-up with the option's name instead of at the first
    connection with an OpenSSL error code."""
    import ssl

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ca_name, cert_name, key_name = names
    if cafile is not None:
        try:
            ctx.load_verify_locations(cafile=str(cafile))
        except (ssl.SSLError, OSError, ValueError) as exc:
            raise ValueError(f"{section}.{ca_name} {str(cafile)!r} is not a PEM CA certificate: {exc}") from None
    if certfile is not None and keyfile is not None:
        try:
            ctx.load_cert_chain(str(certfile), str(keyfile), _secret(password))
        except (ssl.SSLError, OSError, ValueError) as exc:
            raise ValueError(f"{section}.{cert_name} / {section}.{key_name} ({str(certfile)!r}, {str(keyfile)!r}) "
                             f"are not a matching PEM certificate and private key (or the key's password is "
                             f"wrong): {exc}") from None


class KafkaSettings(_Section):
    """Broker connection, topics, consumer group and security."""

    bootstrap_servers: str = Field("127.0.0.1:9092", description="comma-separated host:port list")
    input_topic: str = "streammoe-events"
    predictions_topic: str = "streammoe-predictions"
    labels_topic: Optional[str] = Field("streammoe-labels", description="delayed labels; empty = inline only")
    deadletter_topic: str = "streammoe-deadletter"
    group_id: str = "streammoe"
    client_id: str = "streammoe"

    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Optional[Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]] = None
    sasl_plain_username: Optional[str] = None
    sasl_plain_password: Optional[SecretStr] = None
    ssl_cafile: Optional[FilePath] = None
    ssl_certfile: Optional[FilePath] = None
    ssl_keyfile: Optional[FilePath] = None
    ssl_password: Optional[SecretStr] = None
    ssl_check_hostname: bool = True

    auto_offset_reset: Literal["earliest", "latest"] = "earliest"
    max_poll_records: int = Field(2000, gt=0)
    session_timeout_ms: int = Field(10_000, gt=0)
    heartbeat_interval_ms: int = Field(3_000, gt=0)
    max_poll_interval_ms: int = Field(300_000, gt=0)
    request_timeout_ms: int = Field(30_000, gt=0)
    acks: Literal["all", "1", "0"] = "all"
    enable_idempotence: bool = Field(True, description="idempotent producer (no duplicates or reordering on "
                                     "retries); turn off only for a broker that mishandles it")
    linger_ms: int = Field(5, ge=0)
    compression_type: Optional[Literal["gzip", "snappy", "lz4", "zstd"]] = None
    max_request_size: int = Field(1_048_576, gt=0, description="largest record the producer sends, bytes")
    producer_client: Literal["kafka-python", "confluent-kafka"] = Field(
        "kafka-python", description="client that produces predictions, dead letters and `generate` records; "
        "confluent-kafka (optional: pip install confluent-kafka) does the per-record work in C")

    @field_validator("labels_topic", mode="before")
    @classmethod
    def _empty_is_none(cls, v: Any) -> Any:
        return None if isinstance(v, str) and not v.strip() else v

    @field_validator("bootstrap_servers")
    @classmethod
    def _servers(cls, v: str) -> str:
        servers = [s.strip() for s in v.split(",") if s.strip()]
        if not servers:
            raise ValueError("bootstrap_servers is empty; give host:port[,host:port...]")
        for s in servers:
            host, sep, port = s.rpartition(":")
            if not sep or not host or not port.isdigit():
                raise ValueError(f"bootstrap server {s!r} is not host:port")
        return ",".join(servers)

    @model_validator(mode="after")
    def _security_consistent(self) -> "KafkaSettings":
        sasl = self.security_protocol.startswith("SASL_")
        tls = self.security_protocol in ("SSL", "SASL_SSL")
        if sasl:
            if self.sasl_mechanism is None:
                raise ValueError(f"security_protocol {self.security_protocol} needs sasl_mechanism "
                                 "(PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512)")
            if not self.sasl_plain_username or self.sasl_plain_password is None:
                raise ValueError(f"sasl_mechanism {self.sasl_mechanism} needs sasl_plain_username "
                                 "and sasl_plain_password")
        elif self.sasl_mechanism or self.sasl_plain_username or self.sasl_plain_password is not None:
            raise ValueError(f"SASL options are set but security_protocol is {self.security_protocol}; "
                             "use SASL_PLAINTEXT or SASL_SSL")
        if not tls and (self.ssl_cafile or self.ssl_certfile or self.ssl_keyfile or self.ssl_password):
            raise ValueError(f"SSL files are set but security_protocol is {self.security_protocol}; "
                             "use SSL or SASL_SSL")
        if bool(self.ssl_certfile) != bool(self.ssl_keyfile):
            raise ValueError("ssl_certfile and ssl_keyfile go together (client certificate and its key)")
        if self.ssl_password is not None and not self.ssl_keyfile:
            raise ValueError("ssl_password is the passphrase of ssl_keyfile, which is not set")
        if tls:
            _check_tls_files("kafka", self.ssl_cafile, self.ssl_certfile, self.ssl_keyfile, self.ssl_password,
                             ("ssl_cafile", "ssl_certfile", "ssl_keyfile"))
        if self.heartbeat_interval_ms >= self.session_timeout_ms:
            raise ValueError("heartbeat_interval_ms must be lower than session_timeout_ms")
        return self

    def servers(self) -> list[str]:
        return self.bootstrap_servers.split(",")

    def common_kwargs(self) -> dict[str, Any]:
        """Connection and security arguments shared by kafka-python clients (secrets revealed)."""
        kw: dict[str, Any] = {
            "bootstrap_servers": self.servers(),
            "client_id": self.client_id,
            "security_protocol": self.security_protocol,
            "request_timeout_ms": self.request_timeout_ms,
        }
        if self.sasl_mechanism:
            kw.update(sasl_mechanism=self.sasl_mechanism, sasl_plain_username=self.sasl_plain_username,
                      sasl_plain_password=_secret(self.sasl_plain_password))
        if self.security_protocol in ("SSL", "SASL_SSL"):
            kw["ssl_check_hostname"] = self.ssl_check_hostname
            for name in ("ssl_cafile", "ssl_certfile", "ssl_keyfile"):
                if getattr(self, name):
                    kw[name] = str(getattr(self, name))
            if self.ssl_password is not None:
                kw["ssl_password"] = _secret(self.ssl_password)
        return kw

    def consumer_kwargs(self, **overrides: Any) -> dict[str, Any]:
        """``KafkaConsumer(**kw)`` arguments: the group, raw bytes, no auto-commit (the
        daemon stores offsets in Redis with the state they produced)."""
        kw = self.common_kwargs()
        kw.update(
            group_id=self.group_id,
            enable_auto_commit=False,
            auto_offset_reset=self.auto_offset_reset,
            max_poll_records=self.max_poll_records,
            session_timeout_ms=self.session_timeout_ms,
            heartbeat_interval_ms=self.heartbeat_interval_ms,
            max_poll_interval_ms=self.max_poll_interval_ms,
        )
        kw.update(overrides)
        return kw

    def producer_kwargs(self, **overrides: Any) -> dict[str, Any]:
        """``KafkaProducer(**kw)`` arguments (raw bytes values)."""
        kw = self.common_kwargs()
        kw.update(
            acks="all" if self.acks == "all" else int(self.acks),
            enable_idempotence=self.enable_idempotence,
            linger_ms=self.linger_ms,
            max_request_size=self.max_request_size,
        )
        if self.compression_type:
            kw["compression_type"] = self.compression_type
        kw.update(overrides)
        return kw


class RedisSettings(_Section):
    """Where model state lives, with AUTH and TLS."""

    url: str = Field("redis://127.0.0.1:6379/0", description="redis://, rediss:// (TLS) or unix://")
    username: Optional[str] = None
    password: Optional[SecretStr] = None
    ssl_ca_certs: Optional[FilePath] = None
    ssl_certfile: Optional[FilePath] = None
    ssl_keyfile: Optional[FilePath] = None
    ssl_password: Optional[SecretStr] = Field(None, description="passphrase of an encrypted ssl_keyfile")
    ssl_check_hostname: bool = True
    cluster: bool = Field(False, description="connect with redis.cluster.RedisCluster")
    key_prefix: str = "smoe"
    hmac_key: Optional[SecretStr] = Field(None, description="signs state blobs; >= 16 characters")
    socket_timeout_s: float = Field(5.0, gt=0)
    retry_base_s: float = Field(0.1, gt=0, description="first wait after Redis was unreachable; doubles per failure")
    retry_cap_s: float = Field(5.0, gt=0, description="longest wait between two attempts to reach Redis")
    retry_max_s: float = Field(120.0, gt=0, description="how long claiming a partition retries before the "
                               "daemon gives up (checkpoints retry for as long as the daemon runs)")

    @field_validator("url")
    @classmethod
    def _scheme(cls, v: str) -> str:
        if not v.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError(f"redis url {v!r} must start with redis://, rediss:// (TLS) or unix://")
        return v

    @field_validator("hmac_key")
    @classmethod
    def _key_length(cls, v: Optional[SecretStr]) -> Optional[SecretStr]:
        if v is not None and len(v.get_secret_value()) < 16:
            raise ValueError("hmac_key must have at least 16 characters")
        return v

    @model_validator(mode="after")
    def _tls_consistent(self) -> "RedisSettings":
        if ((self.ssl_ca_certs or self.ssl_certfile or self.ssl_keyfile or self.ssl_password is not None)
                and not self.url.startswith("rediss://")):
            raise ValueError("Redis TLS files are set but the url is not rediss://")
        if bool(self.ssl_certfile) != bool(self.ssl_keyfile):
            raise ValueError("redis ssl_certfile and ssl_keyfile go together")
        if self.ssl_password is not None and not self.ssl_keyfile:
            raise ValueError("redis ssl_password is the passphrase of ssl_keyfile, which is not set")
        if self.url.startswith("rediss://"):
            _check_tls_files("redis", self.ssl_ca_certs, self.ssl_certfile, self.ssl_keyfile, self.ssl_password,
                             ("ssl_ca_certs", "ssl_certfile", "ssl_keyfile"))
        if self.username and self.password is None and "@" not in self.url:
            raise ValueError("redis username is set without a password (an ACL user needs both)")
        if self.retry_cap_s < self.retry_base_s:
            raise ValueError(f"redis retry_cap_s ({self.retry_cap_s}) must be >= retry_base_s ({self.retry_base_s})")
        return self

    def client_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``redis.Redis.from_url(self.url, **kw)`` (secrets revealed)."""
        kw: dict[str, Any] = {
            "decode_responses": False,
            "socket_timeout": self.socket_timeout_s,
            "socket_connect_timeout": self.socket_timeout_s,
        }
        if self.username:
            kw["username"] = self.username
        if self.password is not None:
            kw["password"] = _secret(self.password)
        if self.url.startswith("rediss://"):
            kw["ssl_check_hostname"] = self.ssl_check_hostname
            for name in ("ssl_ca_certs", "ssl_certfile", "ssl_keyfile"):
                if getattr(self, name):
                    kw[name] = str(getattr(self, name))
            if self.ssl_password is not None:
                kw["ssl_password"] = _secret(self.ssl_password)
        return kw

    def make_client(self) -> Any:
        """A connected-on-demand redis-py client (``RedisCluster`` when ``cluster``)."""
        import redis

        if self.cluster:
            from ..state.redis_store import cluster_client

            return cluster_client(self.url, **self.client_kwargs())
        return redis.Redis.from_url(self.url, **self.client_kwargs())


class ModelSettings(_Section):
    """Which model the daemon runs: its state name in Redis and its constructor arguments."""

    name: str = "driftmoe"
    params: dict[str, Any] = Field(default_factory=dict, description="DriftMoE(**params)")

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not _MODEL_NAME_RE.match(v):
            raise ValueError(f"model name {v!r}: use 1-200 characters from letters, digits and _.:/=@+-")
        return v


class CheckpointSettings(_Section):
    """Checkpoint whichever comes first: ``every_events`` processed or ``every_seconds``."""

    every_events: int = Field(10_000, gt=0)
    every_seconds: float = Field(5.0, gt=0)


class LimitsSettings(DecodeLimits):
    """Decoder bounds plus the bounds on events waiting for a delayed label."""

    pending_max_count: int = Field(100_000, gt=0, description="most events awaiting a label, per partition")
    pending_max_bytes: int = Field(64 * 1024 * 1024, gt=0, description="estimated stored size of the events "
                                   "awaiting a label, per partition (see service.pending.pending_size)")
    pending_ttl_s: float = Field(3600.0, gt=0, description="how long an event waits for its label")
    early_labels_max_count: int = Field(10_000, gt=0, description="most labels waiting for an event the input "
                                        "partition has not delivered yet, per partition (see service.early)")
    early_labels_max_bytes: int = Field(4 * 1024 * 1024, gt=0, description="size of those labels (their bytes "
                                        "plus 48 each), per partition; they are checkpointed as one blob")


class HttpSettings(_Section):
    """The ``/healthz`` and ``/metrics`` endpoint (loopback only unless changed)."""

    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535, description="0 = any free port")


class Settings(BaseSettings):
    """All daemon settings (see the module docstring for sources and precedence)."""

    model_config = SettingsConfigDict(
        env_prefix="STREAMMOE_", env_nested_delimiter="__", extra="forbid", case_sensitive=False,
    )

    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    redis: RedisSettings = Field(default_factory=RedisSettings)
    model: ModelSettings = Field(default_factory=ModelSettings)
    checkpoint: CheckpointSettings = Field(default_factory=CheckpointSettings)
    limits: LimitsSettings = Field(default_factory=LimitsSettings)
    http: HttpSettings = Field(default_factory=HttpSettings)
    serve: ServeSettings = Field(default_factory=ServeSettings)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_json: bool = Field(True, description="one JSON object per log line")

    @classmethod
    def settings_customise_sources(cls, settings_cls, init_settings, env_settings, dotenv_settings,
                                   file_secret_settings):
        path = _config_file.get()
        if path is None and os.environ.get(CONFIG_ENV_VAR):
            path = _checked_file(os.environ[CONFIG_ENV_VAR])
        sources = [init_settings, env_settings]
        if path is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=path))
        return tuple(sources)

    @classmethod
    def load(cls, config_file: str | os.PathLike | None = None, **overrides: Any) -> "Settings":
        """Settings from ``config_file`` (or ``$STREAMMOE_CONFIG``), the environment and
        ``overrides``.  Raises :class:`SettingsFileError` for a missing/invalid file and
        ``pydantic.ValidationError`` naming each bad option."""
        path = _checked_file(config_file) if config_file is not None else None
        token = _config_file.set(path)
        try:
            return cls(**overrides)
        finally:
            _config_file.reset(token)

    def decode_limits(self) -> DecodeLimits:
        return self.limits

    def make_store(self) -> Any:
        """A :class:`~streammoe.state.redis_store.RedisStore` for these settings (PINGs once,
        so a wrong address or password fails here with a clear message)."""
        from ..state.redis_store import RedisStore

        store = RedisStore(self.redis.make_client(), prefix=self.redis.key_prefix,
                           hmac_key=_secret(self.redis.hmac_key), pending_max=self.limits.pending_max_count)
        store.ping()
        return store


def _checked_file(path: str | os.PathLike) -> Path:
    p = Path(path)
    if not p.is_file():
        raise SettingsFileError(f"config file {str(p)!r} does not exist")
    try:
        with open(p, "rb") as fh:
            tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise SettingsFileError(f"config file {str(p)!r} is not valid TOML: {exc}") from exc
    return p
