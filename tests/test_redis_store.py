"""RedisStore against a real redis-server: layout, partial writes, fencing, atomic
checkpoints, pending labels, HMAC signing and authentication errors."""
from __future__ import annotations

import threading

import numpy as np
import pytest
import redis
from redis.backoff import NoBackoff
from redis.cluster import RedisCluster
from redis.retry import Retry

from services import unique_name
from streammoe.state.base import StateStore
from streammoe.state.codec import StateFormatError, pack_arrays, pack_json, state_digest, unpack_arrays
from streammoe.state.redis_store import (
    Checkpoint,
    CommitResult,
    FencedError,
    RedisStore,
    StateLostError,
    StoreUnavailableError,
)

KEY = b"0123456789abcdef-test-key"


@pytest.fixture(params=["single", "cluster"])
def redis_client(request):
    """The store's contract holds on one redis-server and on a three-master Redis Cluster."""
    if request.param == "cluster":
        client = request.getfixturevalue("redis_cluster").client()
    else:
        client = request.getfixturevalue("redis_server").client()
    yield client
    client.close()


def _another_client(client):
    """A second connection to the same server or cluster (for a concurrent reader)."""
    if isinstance(client, RedisCluster):
        node = client.get_default_node()
        return RedisCluster(host=node.host, port=node.port)
    return redis.Redis(connection_pool=client.connection_pool)


@pytest.fixture
def store(redis_client) -> RedisStore:
    return RedisStore(redis_client, pending_max=5)


@pytest.fixture
def signed(redis_client) -> RedisStore:
    return RedisStore(redis_client, hmac_key=KEY, pending_max=5)


def _parts(seed: int = 0) -> dict[str, bytes]:
    rng = np.random.default_rng(seed)
    return {
        "meta": pack_json({"n_experts": 2, "classes": [0, 1]}),
        "router": pack_arrays({"w": rng.normal(size=(4, 3)), "b": rng.normal(size=3)}),
        "expert/0": pack_arrays({"t": rng.integers(0, 9, size=7)}),
        "expert/1": pack_arrays({"t": rng.integers(0, 9, size=5)}),
    }


def test_is_a_state_store(store):
    assert isinstance(store, StateStore)


def test_round_trip_is_bit_identical(store):
    name = unique_name("model")
    parts = _parts()
    assert not store.exists(name)
    store.write(name, parts)
    back = store.read(name)
    assert back == parts and state_digest(back) == state_digest(parts)
    np.testing.assert_array_equal(unpack_arrays(back["router"])["w"], unpack_arrays(parts["router"])["w"])
    assert store.exists(name) and name in store.names()
    store.delete(name)
    assert not store.exists(name) and name not in store.names()
    with pytest.raises(KeyError, match=name):
        store.read(name)


def test_key_layout_uses_a_cluster_hash_tag(store, redis_client):
    name = unique_name("layout")
    store.write(name, {"router": b"r"})
    assert store.key(name) == f"smoe:{{{name}}}:state"
    assert redis_client.hgetall(store.key(name))[b"p:router"] == b"r"


def test_partial_update_and_replace(store):
    name = unique_name("partial")
    store.write(name, _parts(0))
    store.write(name, {"expert/1": b"new"}, replace=False)
    got = store.read(name)
    assert got["expert/1"] == b"new" and got["router"] == _parts(0)["router"] and len(got) == 4
    epoch = store.claim(name)
    store.commit(name, {}, {"t:0": 3}, epoch)
    store.write(name, {"only": b"x"}, replace=True)
    assert store.read(name) == {"only": b"x"}
    assert store.offsets(name) == {"t:0": 3} and store.epoch(name) == epoch  # metadata kept


@pytest.mark.parametrize("bad", ["", "a{b}", "a*", "with space", "x" * 201, "brack[et]"])
def test_invalid_names_are_refused(store, bad):
    with pytest.raises(ValueError, match="invalid model name"):
        store.write(bad, {"a": b"1"})


def test_commit_writes_parts_offsets_extra_together(store):
    name = unique_name("commit")
    epoch = store.claim(name)
    assert epoch == 1
    store.commit(name, _parts(), {"events:0": 10, "labels:0": 4}, epoch, {"counters": b"{}"})
    res = store.commit(name, {"expert/1": b"changed"}, {"events:0": 20}, epoch, remove=["expert/0"])
    assert res == CommitResult(epoch=1, evicted=[])
    cp = store.load(name)
    assert isinstance(cp, Checkpoint)
    assert cp.parts == {**{k: v for k, v in _parts().items() if k != "expert/0"}, "expert/1": b"changed"}
    assert cp.offsets == {"events:0": 20, "labels:0": 4}
    assert cp.extra == {"counters": b"{}"} and cp.epoch == 1 and cp.commits == 2 and cp.ts is not None


def test_fencing_refuses_a_stale_writer(store):
    name = unique_name("fence")
    old = store.claim(name)
    store.commit(name, {"router": b"old-owner"}, {"t:0": 5}, old)
    new = store.claim(name)
    assert new == old + 1
    with pytest.raises(FencedError) as info:
        store.commit(name, {"router": b"zombie"}, {"t:0": 99}, old)
    assert info.value.stored_epoch == new and info.value.epoch == old
    cp = store.load(name)
    assert cp.parts == {"router": b"old-owner"} and cp.offsets == {"t:0": 5}  # nothing written
    store.commit(name, {"router": b"new-owner"}, {"t:0": 6}, new)
    assert store.read(name) == {"router": b"new-owner"} and store.offsets(name) == {"t:0": 6}
    # A writer ahead of the stored epoch raises it, fencing everyone below.
    store.commit(name, {}, {}, new + 5)
    assert store.epoch(name) == new + 5
    with pytest.raises(FencedError):
        store.commit(name, {}, {}, new)


def test_require_epoch_refuses_to_write_over_a_state_redis_lost(store, redis_client):
    """A daemon commits only changed parts on top of what it loaded; if Redis came back empty
    (no persistence) that would store a partial model, so the commit is refused instead."""
    name = unique_name("lost")
    epoch = store.claim(name)
    store.commit(name, _parts(), {"t:0": 5}, epoch, require_epoch=True)
    redis_client.delete(store.key(name))  # what a restart without AOF/snapshot leaves
    with pytest.raises(StateLostError) as info:
        store.commit(name, {"expert/1": b"changed"}, {"t:0": 9}, epoch, require_epoch=True)
    assert info.value.stored_epoch == 0 and info.value.epoch == epoch
    assert redis_client.exists(store.key(name)) == 0  # nothing partial written
    store.claim(name)
    store.claim(name)  # stored epoch 2
    with pytest.raises(FencedError):  # a lower epoch is still fenced, not "lost"
        store.commit(name, {}, {}, 1, require_epoch=True)


def test_offsets_are_never_seen_without_their_state(store, redis_client):
    """A reader racing the writer always sees parts and offsets from the same commit."""
    name = unique_name("atomic")
    epoch = store.claim(name)
    store.commit(name, {"counter": b"0"}, {"t:0": 0}, epoch)
    key = store.key(name)
    stop = threading.Event()
    seen: list[tuple[bytes, bytes]] = []

    def observe():
        reader = _another_client(redis_client)
        while not stop.is_set():
            h = reader.hgetall(key)
            seen.append((h[b"p:counter"], h[b"o:t:0"]))

    t = threading.Thread(target=observe)
    t.start()
    try:
        for i in range(1, 301):
            store.commit(name, {"counter": str(i).encode()}, {"t:0": i}, epoch,
                         pending_put={f"e{i}": (b"p", 1e12)}, pending_del=[f"e{i - 1}"] if i > 1 else [])
    finally:
        stop.set()
        t.join(10)
    assert len(seen) > 10
    assert all(part == off for part, off in seen), [s for s in seen if s[0] != s[1]][:3]
    assert store.pending_load(name) == {"e300": (b"p", 1e12)}


def test_commit_argument_checks(store):
    name = unique_name("args")
    with pytest.raises(ValueError, match="both added and removed"):
        store.commit(name, {}, {}, 0, pending_put={"a": (b"x", 1.0)}, pending_del=["a"])
    with pytest.raises(ValueError, match="non-negative int"):
        store.commit(name, {}, {"t:0": -1}, 0)
    with pytest.raises(ValueError, match="written and removed"):
        store.commit(name, {"a": b"1"}, {}, 0, remove=["a"])
    with pytest.raises(TypeError, match="expected bytes"):
        store.commit(name, {"a": "text"}, {}, 0)  # type: ignore[dict-item]


def test_pending_put_pop_expire_count(store):
    name = unique_name("pending")
    assert store.pending_put(name, "a", b"A", ttl_s=10, now=100) == []
    assert store.pending_put(name, "b", b"B", ttl_s=20, now=100) == []
    assert store.pending_count(name) == 2
    assert store.pending_pop(name, "a") == b"A"
    assert store.pending_pop(name, "a") is None  # exactly once
    assert store.pending_pop(name, "never") is None
    store.pending_put(name, "c", b"C", ttl_s=5, now=100)
    assert store.pending_expire(name, now=104.9) == []
    assert store.pending_expire(name, now=105) == ["c"]
    assert store.pending_count(name) == 1 and store.pending_pop(name, "b") == b"B"
    store.pending_put(name, "d", b"D1", ttl_s=5, now=0)
    store.pending_put(name, "d", b"D2", ttl_s=50, now=0)  # re-put replaces blob and deadline
    assert store.pending_load(name) == {"d": (b"D2", 50.0)}
    with pytest.raises(ValueError, match="ttl_s"):
        store.pending_put(name, "e", b"E", ttl_s=0)


def test_pending_count_is_bounded_oldest_evicted(store):
    name = unique_name("bound")  # store.pending_max == 5
    evicted = []
    for i in range(8):
        evicted += store.pending_put(name, f"e{i}", b"x", ttl_s=100, now=float(i))
    assert evicted == ["e0", "e1", "e2"]
    assert store.pending_count(name) == 5
    res = store.commit(name, {}, {}, 0, pending_put={"n1": (b"y", 1000.0), "n2": (b"y", 1001.0)})
    assert res.evicted == ["e3", "e4"]
    assert sorted(store.pending_load(name)) == ["e5", "e6", "e7", "n1", "n2"]


def test_hmac_signed_round_trip_and_tamper_refusal(signed, redis_client):
    name = unique_name("signed")
    parts = _parts()
    epoch = signed.claim(name)
    signed.commit(name, parts, {"t:0": 1}, epoch, {"stats": b"s"}, pending_put={"p1": (b"blob", 1e12)})
    assert signed.read(name) == parts
    assert signed.load(name).extra == {"stats": b"s"}
    assert signed.pending_load(name) == {"p1": (b"blob", 1e12)}
    key = signed.key(name)
    stored = redis_client.hget(key, b"p:router")
    assert stored != parts["router"] and stored.endswith(parts["router"])  # tag + payload

    # A reader with another key, or one flipped byte, is refused with the field named.
    with pytest.raises(StateFormatError, match="HMAC"):
        RedisStore(redis_client, hmac_key=b"another-key-0123456").read(name)
    redis_client.hset(key, b"p:router", stored[:-1] + bytes([stored[-1] ^ 1]))
    with pytest.raises(StateFormatError, match="p:router"):
        signed.read(name)
    # A valid blob moved into another field is refused too (the tag binds model and field).
    redis_client.hset(key, b"p:router", redis_client.hget(key, b"p:expert/0"))
    with pytest.raises(StateFormatError):
        signed.read(name)
    # Pending blobs are signed as well.
    pkey = f"smoe:{{{name}}}:pending"
    redis_client.hset(pkey, b"p1", b"\x00" * 40)
    with pytest.raises(StateFormatError):
        signed.pending_pop(name, "p1")


def test_client_must_return_bytes(redis_server):
    with pytest.raises(ValueError, match="decode_responses=False"):
        RedisStore(redis.Redis.from_url(redis_server.url, decode_responses=True))


def test_password_protected_redis(redis_factory):
    server = redis_factory(password="p4ssw0rd-xyz")
    with pytest.raises(StoreUnavailableError, match="requires a password"):
        RedisStore.from_url(server.plain_url)
    with pytest.raises(StoreUnavailableError, match="rejected the credentials"):
        RedisStore.from_url(server.plain_url, password="wrong")
    store = RedisStore.from_url(server.url)
    store.write("m", {"a": b"1"})
    assert store.read("m") == {"a": b"1"}
    assert RedisStore.from_url(server.plain_url, password="p4ssw0rd-xyz").read("m") == {"a": b"1"}


def test_unreachable_redis_is_a_clear_error():
    from streammoe.testing.services import free_port

    port = free_port()
    with pytest.raises(StoreUnavailableError, match=f"cannot reach Redis at 127.0.0.1:{port}"):
        RedisStore.from_url(f"redis://127.0.0.1:{port}/0", retry=Retry(NoBackoff(), 0))
