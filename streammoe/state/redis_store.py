"""Redis-backed model state for the daemon: parts, Kafka offsets and fencing in one hash.

Layout (``<p>`` is the key prefix, ``smoe`` by default; the braces are a Redis Cluster hash
tag, so all keys of one model live in one slot and one Lua script may touch them together)::

    <p>:{<model>}:state             hash   p:<part>          -> part blob (HMAC-signed if keyed)
                                           o:<topic>:<part>  -> next Kafka offset to read (ASCII int)
                                           x:<name>          -> extra blob (HMAC-signed if keyed)
                                           m:epoch           -> fencing epoch of the current owner
                                           m:ts              -> wall-clock time of the last write
                                           m:commits         -> number of commits so far
    <p>:{<model>}:pending           hash   event id -> pending event blob (awaiting its label)
    <p>:{<model>}:pending:deadline  zset   event id -> deadline (unix seconds)

Why one hash and Lua: a checkpoint must move the model's changed parts *and* the offsets
they reflect *and* the pending-label changes in a single atomic step, and must be refused
when a newer owner has claimed the model (fencing), otherwise a consumer that lost its
partition could overwrite the new owner's state.  A Lua script does the epoch check and all
writes atomically, also on Redis Cluster (single slot thanks to the hash tag).

Redis Cluster: pass a ``redis.cluster.RedisCluster`` client (settings: ``redis.cluster = true``).
The daemon names a partition's model ``<model>/<topic>/<partition>``, so the hash tag puts the
state hash (parts, both offsets, epoch), the pending hash and its deadline set of one partition
in one slot - the commit script runs on the one master that owns it - while the partitions of
a topic spread over the masters.  Tested on a real three-master cluster
(``tests/test_redis_store.py``, ``tests/test_cluster.py``).

Blobs are opaque bytes (made by :mod:`streammoe.state.codec`; never pickled).  With an
``hmac_key``, every blob is signed with a key derived from (model, field), so a tampered
blob - or one copied into another field or model - is refused on read with
:class:`~streammoe.state.codec.StateFormatError`.  Offsets, epoch and timestamps are plain
integers/floats and are not signed.
"""
from __future__ import annotations

import functools
import hashlib
import hmac
import math
import re
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping, TypeVar

import redis

from .codec import StateFormatError, sign, verify

__all__ = ["RedisStore", "cluster_client", "Checkpoint", "CommitResult", "FencedError", "StateLostError",
           "StoreUnavailableError"]

_NAME_RE = re.compile(r"^[A-Za-z0-9_.:/=@+\-]{1,200}$")
_PART, _OFFSET, _EXTRA = b"p:", b"o:", b"x:"
_EPOCH, _TS, _COMMITS = b"m:epoch", b"m:ts", b"m:commits"

T = TypeVar("T")


class FencedError(RuntimeError):
    """A write was refused because a newer owner claimed the model (higher epoch)."""

    def __init__(self, name: str, epoch: int, stored_epoch: int):
        super().__init__(
            f"state of model {name!r} is owned by epoch {stored_epoch}; this writer holds epoch "
            f"{epoch} and lost ownership (its partition was reassigned), so the write was refused"
        )
        self.name, self.epoch, self.stored_epoch = name, epoch, stored_epoch


class StateLostError(RuntimeError):
    """A ``require_epoch`` commit found a *lower* stored epoch than the writer's claim: the
    state the writer loaded is gone (Redis restarted without persistence, or was flushed)."""

    def __init__(self, name: str, epoch: int, stored_epoch: int):
        super().__init__(
            f"state of model {name!r} is gone from Redis: this writer claimed epoch {epoch} but Redis "
            f"now holds epoch {stored_epoch} (restarted without persistence, or flushed), so a commit of "
            f"only the changed parts would leave a partial state"
        )
        self.name, self.epoch, self.stored_epoch = name, epoch, stored_epoch


class StoreUnavailableError(RuntimeError):
    """Redis could not be reached or refused the credentials; the message says which."""


class StoreAuthError(StoreUnavailableError):
    """Redis refused the credentials: waiting and retrying will not help (the daemon fails fast)."""


@dataclass(frozen=True)
class Checkpoint:
    """Everything stored for one model, read in one atomic ``HGETALL``.

    A model never written has empty ``parts``/``offsets``/``extra``, ``epoch`` 0 (or the
    value set by :meth:`RedisStore.claim`), ``ts`` ``None`` and ``commits`` 0.
    """

    parts: dict[str, bytes]
    offsets: dict[str, int]
    epoch: int
    extra: dict[str, bytes] = field(default_factory=dict)
    ts: float | None = None
    commits: int = 0


@dataclass(frozen=True)
class CommitResult:
    """What :meth:`RedisStore.commit` did: the epoch it wrote under and the pending events
    evicted to respect the pending bound (oldest deadline first)."""

    epoch: int
    evicted: list[str]


# --- Lua -------------------------------------------------------------------------------
# All scripts take the model's keys in KEYS (same hash slot) and only touch those keys.

# Shared by the commit and pending-put scripts: when the pending set (hash + its by-time
# sorted set) holds more than ``pmax`` entries (0 = no bound), drop the oldest and append
# their ids to ``out``, which the script returns so the caller can count the evictions.
_EVICT_OLDEST_LUA = """
local function evict_oldest(hash, zset, pmax, out)
  if pmax > 0 then
    local excess = redis.call('ZCARD', zset) - pmax
    if excess > 0 then
      local popped = redis.call('ZPOPMIN', zset, excess)
      for j = 1, #popped, 2 do
        redis.call('HDEL', hash, popped[j])
        out[#out + 1] = popped[j]
      end
    end
  end
  return out
end
"""

_COMMIT_LUA = _EVICT_OLDEST_LUA + """
local stored = tonumber(redis.call('HGET', KEYS[1], 'm:epoch') or '0')
local epoch = tonumber(ARGV[1])
if stored > epoch then
  return {0, stored}
end
if ARGV[8] == '1' and stored < epoch then
  return {2, stored}
end
local n_set, n_del = tonumber(ARGV[3]), tonumber(ARGV[4])
local n_padd, n_pdel = tonumber(ARGV[5]), tonumber(ARGV[6])
local pmax = tonumber(ARGV[7])
local i = 9
for _ = 1, n_set do
  redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
  i = i + 2
end
for _ = 1, n_del do
  redis.call('HDEL', KEYS[1], ARGV[i])
  i = i + 1
end
redis.call('HSET', KEYS[1], 'm:epoch', ARGV[1], 'm:ts', ARGV[2])
redis.call('HINCRBY', KEYS[1], 'm:commits', 1)
for _ = 1, n_pdel do
  redis.call('HDEL', KEYS[2], ARGV[i])
  redis.call('ZREM', KEYS[3], ARGV[i])
  i = i + 1
end
for _ = 1, n_padd do
  redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 2])
  redis.call('ZADD', KEYS[3], ARGV[i + 1], ARGV[i])
  i = i + 3
end
return evict_oldest(KEYS[2], KEYS[3], pmax, {1, epoch})
"""

_WRITE_LUA = """
if ARGV[1] == '1' then
  local fields = redis.call('HKEYS', KEYS[1])
  for _, f in ipairs(fields) do
    if string.sub(f, 1, 2) == 'p:' then
      redis.call('HDEL', KEYS[1], f)
    end
  end
end
for i = 3, #ARGV, 2 do
  redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
end
redis.call('HSET', KEYS[1], 'm:ts', ARGV[2])
return 1
"""

_PENDING_PUT_LUA = _EVICT_OLDEST_LUA + """
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])
return evict_oldest(KEYS[1], KEYS[2], tonumber(ARGV[4]), {})
"""

_PENDING_POP_LUA = """
local v = redis.call('HGET', KEYS[1], ARGV[1])
if v then
  redis.call('HDEL', KEYS[1], ARGV[1])
  redis.call('ZREM', KEYS[2], ARGV[1])
end
return v
"""

_PENDING_EXPIRE_LUA = """
local ids = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
for _, id in ipairs(ids) do
  redis.call('HDEL', KEYS[1], id)
  redis.call('ZREM', KEYS[2], id)
end
return ids
"""

_PENDING_LOAD_LUA = """
return {redis.call('HGETALL', KEYS[1]), redis.call('ZRANGE', KEYS[2], 0, -1, 'WITHSCORES')}
"""


def _translate_errors(fn: Callable[..., T]) -> Callable[..., T]:
    """Turn redis-py connection/auth failures into :class:`StoreUnavailableError` with a
    message naming the server and the likely fix (redis-py's own text is often cryptic,
    e.g. 'HELLO must be called with the client already authenticated')."""

    @functools.wraps(fn)
    def wrapper(self: "RedisStore", *args: Any, **kwargs: Any) -> T:
        try:
            return fn(self, *args, **kwargs)
        except redis.exceptions.AuthenticationError as exc:
            raise StoreAuthError(self._auth_message(exc)) from exc
        except (redis.exceptions.ClusterDownError, redis.exceptions.TryAgainError,
                redis.exceptions.RedisClusterException) as exc:
            # a cluster node down or slots moving: like an unreachable server, wait and retry
            raise StoreUnavailableError(f"Redis Cluster at {self.target} is not available: {exc}") from exc
        except redis.exceptions.ResponseError as exc:
            if str(exc).startswith(("NOAUTH", "WRONGPASS")):
                raise StoreAuthError(self._auth_message(exc)) from exc
            raise
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
            raise StoreUnavailableError(f"cannot reach Redis at {self.target}: {exc}{self._tls_hint(exc)}") from exc

    return wrapper


def _is_cluster(client: Any) -> bool:
    try:
        from redis.cluster import RedisCluster
    except ImportError:  # pragma: no cover - redis-py always has it since 4.1
        return False
    return isinstance(client, RedisCluster)


def cluster_client(url: str, **kwargs: Any) -> Any:
    """``redis.cluster.RedisCluster.from_url(url, **kwargs)`` with its start-up failures as this
    module's errors.

    Why: unlike ``redis.Redis``, a cluster client connects in its constructor (to learn which
    node serves which slots), so an unreachable cluster or refused credentials surface here,
    before any store call could translate them; callers that wait for Redis (``serve``) retry on
    :class:`StoreUnavailableError` and fail fast on :class:`StoreAuthError`."""
    from redis.cluster import RedisCluster

    where = f"Redis Cluster at {url.rsplit('@', 1)[-1]}"
    try:
        return RedisCluster.from_url(url, **kwargs)
    except redis.exceptions.AuthenticationError as exc:
        raise StoreAuthError(f"{where} rejected the credentials or needs a password: {exc}") from exc
    except redis.exceptions.ResponseError as exc:
        if str(exc).startswith(("NOAUTH", "WRONGPASS")):
            raise StoreAuthError(f"{where} rejected the credentials or needs a password: {exc}") from exc
        raise
    except (redis.exceptions.RedisClusterException, redis.exceptions.ConnectionError,
            redis.exceptions.TimeoutError) as exc:
        raise StoreUnavailableError(f"cannot reach {where}: {exc}") from exc


def _check_name(name: str) -> str:
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise ValueError(
            f"invalid model name {name!r}: use 1-200 characters from letters, digits and _.:/=@+- "
            "(braces and glob characters would break the Redis key layout)"
        )
    return name


def _b(s: str | bytes) -> bytes:
    return s if isinstance(s, bytes) else s.encode()


class RedisStore:
    """Model state in Redis; implements :class:`~streammoe.state.base.StateStore` plus the
    daemon's needs (fenced atomic commits with offsets, ownership claims, pending labels).

    ``client`` must be a ``redis.Redis`` (or ``redis.cluster.RedisCluster``) created with
    ``decode_responses=False``.  ``pending_max`` bounds each model's pending events (0 = no
    bound); when exceeded the events with the earliest deadline are evicted and returned.
    """

    def __init__(self, client: Any, *, prefix: str = "smoe", hmac_key: bytes | str | None = None,
                 pending_max: int = 100_000):
        self.cluster = _is_cluster(client)
        if self.cluster:
            kwargs = dict(client.get_connection_kwargs() or {})
        else:
            kwargs = getattr(getattr(client, "connection_pool", None), "connection_kwargs", {}) or {}
        if kwargs.get("decode_responses"):
            raise ValueError("RedisStore needs a client with decode_responses=False (blobs are binary)")
        if not _NAME_RE.match(prefix) or ":" in prefix:
            raise ValueError(f"invalid key prefix {prefix!r}: letters, digits and _.=@+- only")
        if pending_max < 0:
            raise ValueError(f"pending_max must be >= 0 (0 = unbounded), got {pending_max}")
        self.client = client
        self.prefix = prefix
        self.pending_max = int(pending_max)
        self._hmac_key = _b(hmac_key) if hmac_key else None
        self.target = self._describe_cluster(client) if self.cluster else self._describe(kwargs)
        self._has_password = bool(kwargs.get("password") or kwargs.get("credential_provider"))
        conn_class = kwargs.get("connection_class") if self.cluster else \
            getattr(getattr(client, "connection_pool", None), "connection_class", None)
        self._tls = "SSL" in getattr(conn_class, "__name__", "") or bool(kwargs.get("ssl"))
        self._commit = client.register_script(_COMMIT_LUA)
        self._write = client.register_script(_WRITE_LUA)
        self._pput = client.register_script(_PENDING_PUT_LUA)
        self._ppop = client.register_script(_PENDING_POP_LUA)
        self._pexpire = client.register_script(_PENDING_EXPIRE_LUA)
        self._pload = client.register_script(_PENDING_LOAD_LUA)

    @classmethod
    def from_url(cls, url: str, *, prefix: str = "smoe", hmac_key: bytes | str | None = None,
                 pending_max: int = 100_000, check: bool = True, **client_kwargs: Any) -> "RedisStore":
        """Connect with ``redis.Redis.from_url`` (``redis://`` or ``rediss://`` for TLS; extra
        keyword arguments such as ``password`` or ``ssl_ca_certs`` go to the client) and, with
        ``check=True``, PING once so a wrong address or password fails here, clearly."""
        client_kwargs["decode_responses"] = False
        store = cls(redis.Redis.from_url(url, **client_kwargs), prefix=prefix, hmac_key=hmac_key,
                    pending_max=pending_max)
        if check:
            store.ping()
        return store

    # --- helpers -----------------------------------------------------------------------
    @staticmethod
    def _describe(kwargs: Mapping[str, Any]) -> str:
        if kwargs.get("path"):
            return f"unix:{kwargs['path']}"
        return f"{kwargs.get('host', '?')}:{kwargs.get('port', '?')}/{kwargs.get('db', 0)}"

    @staticmethod
    def _describe_cluster(client: Any) -> str:
        nodes = getattr(getattr(client, "nodes_manager", None), "startup_nodes", {}) or {}
        return "cluster " + (",".join(sorted(nodes)) or "?")

    def _tls_hint(self, exc: Exception) -> str:
        """A likely cause for TLS-related connection failures, whose raw text rarely says it."""
        text = str(exc)
        if not self._tls:
            if "reset by peer" in text or "closed by server" in text:
                return " (if this server speaks only TLS, use a rediss:// URL)"
            return ""
        if "CERTIFICATE_VERIFY_FAILED" in text:
            return (" (the server's certificate is not signed by a CA this client trusts, or does not name "
                    "this host: set redis.ssl_ca_certs, or check redis.ssl_check_hostname)")
        if "CERTIFICATE_REQUIRED" in text or "EOF occurred" in text or "alert" in text:
            return (" (the server refused the TLS handshake: it may require a client certificate signed by "
                    "its CA - set redis.ssl_certfile and redis.ssl_keyfile)")
        if "WRONG_VERSION_NUMBER" in text or "record layer" in text:
            return " (the server does not speak TLS on this port: use a redis:// URL)"
        return ""

    def _auth_message(self, exc: Exception) -> str:
        if not self._has_password:
            return (f"Redis at {self.target} requires a password (AUTH) but none was given; set "
                    f"STREAMMOE_REDIS__PASSWORD (and STREAMMOE_REDIS__USERNAME for an ACL user) or put them "
                    f"in the URL (redis://[USER]:PASSWORD@host:port/0). Server said: {exc}")
        return f"Redis at {self.target} rejected the credentials (wrong username/password): {exc}"

    def key(self, name: str) -> str:
        """The state hash key of model ``name``."""
        return f"{self.prefix}:{{{_check_name(name)}}}:state"

    def _pending_keys(self, name: str) -> list[str]:
        base = f"{self.prefix}:{{{_check_name(name)}}}:pending"
        return [base, base + ":deadline"]

    def _field_key(self, name: str, kind: bytes, field_name: bytes) -> bytes:
        assert self._hmac_key is not None
        msg = b"smoe-field\0" + name.encode() + b"\0" + kind + field_name
        return hmac.new(self._hmac_key, msg, hashlib.sha256).digest()

    def _seal(self, name: str, kind: bytes, field_name: bytes, blob: bytes) -> bytes:
        if not isinstance(blob, (bytes, bytearray, memoryview)):
            raise TypeError(f"{kind.decode()}{field_name.decode(errors='replace')} of model {name!r}: "
                            f"expected bytes, got {type(blob).__name__}")
        blob = bytes(blob)
        return sign(blob, self._field_key(name, kind, field_name)) if self._hmac_key else blob

    def _open(self, name: str, kind: bytes, field_name: bytes, stored: bytes) -> bytes:
        if not self._hmac_key:
            return stored
        try:
            return verify(stored, self._field_key(name, kind, field_name))
        except StateFormatError as exc:
            raise StateFormatError(
                f"model {name!r}, field {(kind + field_name).decode(errors='replace')!r}: {exc}"
            ) from exc

    # --- StateStore protocol -----------------------------------------------------------
    @_translate_errors
    def ping(self) -> None:
        """Round-trip to Redis; raises :class:`StoreUnavailableError` with a clear reason."""
        self.client.ping()

    @_translate_errors
    def write(self, name: str, parts: Mapping[str, bytes], *, replace: bool = True) -> None:
        """Store parts atomically (unfenced: for ``DriftMoE.save``; the daemon uses
        :meth:`commit`).  ``replace=True`` drops stored parts not in ``parts``; offsets,
        epoch and extras are kept either way."""
        args: list[Any] = [b"1" if replace else b"0", repr(time.time())]
        for part, blob in parts.items():
            fname = _b(part)
            args += [_PART + fname, self._seal(name, _PART, fname, blob)]
        self._write(keys=[self.key(name)], args=args)

    @_translate_errors
    def read(self, name: str) -> dict[str, bytes]:
        """All parts of model ``name``; ``KeyError`` if it has none."""
        parts = self.load(name).parts
        if not parts:
            raise KeyError(f"no saved model {name!r} in Redis at {self.target}")
        return parts

    @_translate_errors
    def exists(self, name: str) -> bool:
        """Whether model ``name`` has at least one stored part."""
        return any(f.startswith(_PART) for f in self.client.hkeys(self.key(name)))

    @_translate_errors
    def delete(self, name: str) -> None:
        """Remove the model's state and pending events (its epoch goes too)."""
        self.client.delete(self.key(name), *self._pending_keys(name))

    @_translate_errors
    def names(self) -> list[str]:
        """Names of all models with at least one stored part, sorted."""
        head, tail = f"{self.prefix}:{{", "}:state"
        keys = sorted({_b(k).decode() for k in self.client.scan_iter(match=f"{head}*{tail}", count=500)})
        pipe = self.client.pipeline(transaction=False)
        for k in keys:
            pipe.hkeys(k)
        found = []
        for k, fields in zip(keys, pipe.execute()):
            if any(f.startswith(_PART) for f in fields):
                found.append(k[len(head):-len(tail)])
        return found

    # --- daemon API ----------------------------------------------------------------------
    @_translate_errors
    def load(self, name: str) -> Checkpoint:
        """Parts, offsets, epoch and extras of ``name`` from one atomic ``HGETALL``."""
        raw = self.client.hgetall(self.key(name))
        parts: dict[str, bytes] = {}
        offsets: dict[str, int] = {}
        extra: dict[str, bytes] = {}
        for f, v in raw.items():
            kind, rest = f[:2], f[2:]
            if kind == _PART:
                parts[rest.decode()] = self._open(name, _PART, rest, v)
            elif kind == _OFFSET:
                offsets[rest.decode()] = int(v)
            elif kind == _EXTRA:
                extra[rest.decode()] = self._open(name, _EXTRA, rest, v)
        return Checkpoint(
            parts=parts, offsets=offsets, extra=extra,
            epoch=int(raw.get(_EPOCH, 0)),
            ts=float(raw[_TS]) if _TS in raw else None,
            commits=int(raw.get(_COMMITS, 0)),
        )

    @_translate_errors
    def claim(self, name: str) -> int:
        """Become the owner of ``name``: atomically increment and return its epoch.  Writers
        holding an older epoch are refused from now on."""
        return int(self.client.hincrby(self.key(name), _EPOCH, 1))

    @_translate_errors
    def epoch(self, name: str) -> int:
        """The current owner's epoch (0 if never claimed)."""
        return int(self.client.hget(self.key(name), _EPOCH) or 0)

    @_translate_errors
    def offsets(self, name: str) -> dict[str, int]:
        """Stored offsets, ``"topic:partition" -> next offset to read``."""
        return self.load(name).offsets

    @_translate_errors
    def commit(self, name: str, parts: Mapping[str, bytes], offsets: Mapping[str, int], epoch: int,
               extra: Mapping[str, bytes] | None = None, *, remove: Iterable[str] = (),
               pending_put: Mapping[str, tuple[bytes, float]] | None = None,
               pending_del: Iterable[str] = (), require_epoch: bool = False) -> CommitResult:
        """Checkpoint atomically, fenced by ``epoch``.

        In ONE Lua script: refuse with :class:`FencedError` if the stored epoch is greater
        than ``epoch``; otherwise write ``parts`` (only those given - the changed ones),
        delete parts named in ``remove``, write ``offsets`` and ``extra``, set the epoch and
        timestamp, delete ``pending_del`` events and add ``pending_put`` events
        (``id -> (blob, deadline)``), then evict the earliest-deadline pending events beyond
        ``pending_max``.  Putting pending changes here keeps them consistent with the
        offsets: after a crash, replay from the stored offsets re-creates exactly the
        pending changes that were lost.

        ``require_epoch=True`` (the daemon, which claimed ``epoch`` and commits only changed
        parts on top of what it loaded) also refuses a stored epoch *below* ``epoch`` with
        :class:`StateLostError`: Redis lost the state those changes build on.
        """
        pending_put = pending_put or {}
        pending_del = list(pending_del)
        both = set(pending_put) & set(pending_del)
        if both:
            raise ValueError(f"event ids both added and removed in one commit: {sorted(both)[:5]}")
        remove = [_b(r) for r in remove]
        overlap = {r.decode() for r in remove} & set(parts)
        if overlap:
            raise ValueError(f"parts both written and removed in one commit: {sorted(overlap)}")
        sets: list[Any] = []
        for part, blob in parts.items():
            fname = _b(part)
            sets += [_PART + fname, self._seal(name, _PART, fname, blob)]
        for tp, off in offsets.items():
            if not isinstance(off, int) or isinstance(off, bool) or off < 0:
                raise ValueError(f"offset for {tp!r} must be a non-negative int, got {off!r}")
            sets += [_OFFSET + _b(tp), str(off).encode()]
        for key, blob in (extra or {}).items():
            fname = _b(key)
            sets += [_EXTRA + fname, self._seal(name, _EXTRA, fname, blob)]
        padd: list[Any] = []
        for event_id, (blob, deadline) in pending_put.items():
            if not math.isfinite(deadline):
                raise ValueError(f"deadline of pending event {event_id!r} must be finite, got {deadline!r}")
            eid = _b(event_id)
            padd += [eid, repr(float(deadline)), self._seal(name, b"pending:", eid, blob)]
        args: list[Any] = [int(epoch), repr(time.time()), len(sets) // 2, len(remove),
                           len(pending_put), len(pending_del), self.pending_max, b"1" if require_epoch else b"0"]
        args += sets + [_PART + r for r in remove] + [_b(e) for e in pending_del] + padd
        out = self._commit(keys=[self.key(name), *self._pending_keys(name)], args=args)
        if int(out[0]) == 0:
            raise FencedError(name, int(epoch), int(out[1]))
        if int(out[0]) == 2:
            raise StateLostError(name, int(epoch), int(out[1]))
        return CommitResult(epoch=int(out[1]), evicted=[e.decode() for e in out[2:]])

    # --- pending events (awaiting a delayed label) -----------------------------------------
    @_translate_errors
    def pending_put(self, name: str, event_id: str, blob: bytes, ttl_s: float,
                    now: float | None = None) -> list[str]:
        """Keep ``blob`` until ``now + ttl_s``; returns ids evicted by the ``pending_max``
        bound (earliest deadline first; may include ``event_id`` itself if its deadline is
        the earliest).  Re-putting an id replaces its blob and deadline."""
        if not (ttl_s > 0 and math.isfinite(ttl_s)):
            raise ValueError(f"ttl_s must be a finite number > 0, got {ttl_s!r}")
        now = time.time() if now is None else now
        eid = _b(event_id)
        out = self._pput(keys=self._pending_keys(name),
                         args=[eid, self._seal(name, b"pending:", eid, blob), repr(now + ttl_s),
                               self.pending_max])
        return [e.decode() for e in out]

    @_translate_errors
    def pending_pop(self, name: str, event_id: str) -> bytes | None:
        """Atomically take the pending blob of ``event_id`` (``None`` if absent/expired)."""
        eid = _b(event_id)
        out = self._ppop(keys=self._pending_keys(name), args=[eid])
        return None if out is None else self._open(name, b"pending:", eid, out)

    @_translate_errors
    def pending_expire(self, name: str, now: float | None = None, limit: int = 10_000) -> list[str]:
        """Remove and return (up to ``limit``) ids whose deadline is ``<= now``."""
        now = time.time() if now is None else now
        out = self._pexpire(keys=self._pending_keys(name), args=[repr(now), int(limit)])
        return [e.decode() for e in out]

    @_translate_errors
    def pending_count(self, name: str) -> int:
        """How many events of ``name`` await a label."""
        return int(self.client.zcard(self._pending_keys(name)[1]))

    @_translate_errors
    def pending_load(self, name: str) -> dict[str, tuple[bytes, float]]:
        """All pending events, ``id -> (blob, deadline)``, read atomically (for a new owner)."""
        blobs, deadlines = self._pload(keys=self._pending_keys(name))
        dl = {deadlines[i]: float(deadlines[i + 1]) for i in range(0, len(deadlines), 2)}
        out: dict[str, tuple[bytes, float]] = {}
        for i in range(0, len(blobs), 2):
            eid = blobs[i]
            out[eid.decode()] = (self._open(name, b"pending:", eid, blobs[i + 1]), dl.get(eid, float("inf")))
        return out
