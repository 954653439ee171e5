"""Beyond one machine: state on a real three-master Redis Cluster, and a consumer group of two
``streammoe serve`` processes where one is killed and the other takes its partitions over.

The cluster comes from the ``redis_cluster`` fixture (three local redis-servers with
``cluster-enabled``, slots assigned and nodes met through redis-py).  The store's whole contract
also runs on it (``tests/test_redis_store.py`` is parametrised over one server and the cluster);
here: where the keys land, the settings switch, and the failover end to end.
"""
from __future__ import annotations

import json

import pytest
import redis
from kafka import KafkaProducer

from faultkit import PARAMS, kill_hard, log_lines, read_all, serve_env, start_serve, stop_clean, tail
from services import unique_name, wait_until
from streammoe import DriftMoE
from streammoe.connectors import open_source
from streammoe.service.generate import json_label
from streammoe.service.owner import state_name
from streammoe.service.settings import Settings
from streammoe.state.codec import state_digest
from streammoe.state.redis_store import RedisStore, StoreUnavailableError
from streammoe.testing.services import create_topics

pytestmark = pytest.mark.redis


# --- where the keys land ------------------------------------------------------------------

def _node_of(client, key: str) -> str:
    node = client.get_node_from_key(key)
    return f"{node.host}:{node.port}"


def test_a_partitions_keys_share_one_slot_and_partitions_spread_over_the_masters(redis_cluster):
    client = redis_cluster.client()
    store = RedisStore(client)
    base, topic = unique_name("m"), "events"
    names = [state_name(base, topic, p) for p in range(12)]
    for name in names:
        keys = [store.key(name), *store._pending_keys(name)]
        assert len({client.keyslot(k) for k in keys}) == 1, keys
        # a real commit touching all three keys: the cluster refuses a script spanning slots
        epoch = store.claim(name)
        store.commit(name, {"router": name.encode()}, {f"{topic}:0": 5, "labels:0": 3}, epoch,
                     pending_put={"e-1": (b"x", 1e12)})
    owners = {name: _node_of(client, store.key(name)) for name in names}
    assert len(set(owners.values())) == 3, owners  # 12 partitions of one topic use every master
    # each master holds exactly the keys of the partitions whose slot it owns, nothing else of them
    for node in redis_cluster.nodes:
        direct = node.client()
        held = {k.decode() for k in direct.scan_iter(match=f"smoe:{{{base}/*")}
        mine = [n for n in names if owners[n] == f"{node.host}:{node.port}"]
        assert held == {k for n in mine for k in (store.key(n), *store._pending_keys(n))}
        for n in mine:
            assert direct.hget(store.key(n), b"p:router") == n.encode()
        direct.close()
    assert sorted(n for n in store.names() if n.startswith(base + "/")) == sorted(names)
    client.close()


def test_keys_without_a_common_hash_tag_are_refused_by_the_cluster(redis_cluster):
    """The control for the test above: the same script on keys of two slots cannot run."""
    client = redis_cluster.client()
    a, b = "smoe:{m/t/0}:state", "smoe:{m/t/1}:pending"
    assert client.keyslot(a) != client.keyslot(b)
    with pytest.raises(redis.exceptions.RedisClusterException):
        client.eval("return redis.call('HSET', KEYS[1], 'f', 'v') + redis.call('HSET', KEYS[2], 'f', 'v')",
                    2, a, b)
    client.close()


def test_settings_switch_connects_to_the_cluster(redis_cluster):
    from streammoe.service.daemon import make_store

    settings = Settings(redis={"url": redis_cluster.url, "cluster": True})
    for store in (settings.make_store(), make_store(settings)):
        assert store.cluster and store.target.startswith("cluster ")
        name = unique_name("switch")
        store.write(name, {"a": b"1"})
        assert store.read(name) == {"a": b"1"}


def test_cluster_client_must_return_bytes_and_an_unreachable_cluster_is_a_clear_error(redis_cluster):
    from redis.cluster import RedisCluster

    with pytest.raises(ValueError, match="decode_responses=False"):
        RedisStore(RedisCluster.from_url(redis_cluster.url, decode_responses=True))
    from streammoe.testing.services import free_port

    with pytest.raises(StoreUnavailableError):
        settings = Settings(redis={"url": f"redis://127.0.0.1:{free_port()}/0", "cluster": True})
        settings.make_store()


# --- failover: two daemons, one killed ------------------------------------------------------

PARTITIONS = 4
N_EVENTS = 8_000
DELAY = 100  # the label of event j is sent after event j + DELAY (same partition: DELAY % 4 == 0)


def _stream(n: int, seed: int = 5) -> list:
    return list(open_source("sea_g", n=n, seed=seed))


def _records(events: list) -> list[tuple[str, int, bytes, int]]:
    """``(topic kind, partition, value, timestamp_ms)`` in send order: each event, then the labels
    sent after it.  Labels due beyond the end carry their own partition's last event time (stamped
    later, they would wait for events that never come; see tests/faultkit.py)."""
    n = len(events)
    out = []
    due: dict[int, list[int]] = {}
    for j in range(n):
        due.setdefault(min(j + DELAY, n - 1), []).append(j)
    ts_ms = [int(round((1_000.0 + i * 0.01) * 1000)) for i in range(n)]
    for i, (x, _) in enumerate(events):
        body = {"id": f"e-{i}", "x": {str(k): float(v) for k, v in x.items()}, "ts": ts_ms[i] / 1000}
        out.append(("input_topic", i % PARTITIONS, json.dumps(body, separators=(",", ":")).encode(), ts_ms[i]))
        for j in due.get(i, ()):
            label = json.dumps({"id": f"e-{j}", "y": json_label(events[j][1])}, separators=(",", ":")).encode()
            last_own = n - 1 - (n - 1 - j) % PARTITIONS
            t = ts_ms[i] if j + DELAY <= n - 1 else ts_ms[last_own]
            out.append(("labels_topic", j % PARTITIONS, label, t))
    return out


def _produce(bootstrap: str, topics: dict, records: list) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=50, batch_size=512 * 1024)
    try:
        for kind, p, value, ts in records:
            producer.send(topics[kind], value, partition=p, timestamp_ms=ts)
        producer.flush()
    finally:
        producer.close()


def _offline(events: list, p: int) -> DriftMoE:
    """Partition ``p`` uninterrupted: its labelled events learned in order (predicting changes no
    state; tests/faultkit.py proves this shortcut against the interleaved run bit for bit)."""
    model = DriftMoE(**PARAMS)
    own = events[p::PARTITIONS]
    model.predict_learn_many([x for x, _ in own], [y for _, y in own], proba=False)
    return model


def _assigned(log) -> set[int]:
    """The input partitions a daemon holds now, from its own log (assigned minus revoked)."""
    held: set[int] = set()
    for r in log_lines(log) if log.exists() else []:
        if r.get("msg") == "partition assigned":
            held.add(int(r["partition"]))
        elif r.get("msg") == "partitions revoked":
            held -= set(r.get("partitions", []))
    return held


def _progress(store: RedisStore, names: list[str]) -> list[int]:
    """Input + label records covered by each partition's stored checkpoint."""
    try:
        return [sum(store.load(n).offsets.values()) for n in names]
    except StoreUnavailableError:
        return [-1] * len(names)


def test_one_of_two_daemons_killed_the_other_takes_its_partitions_over_exactly_once(
        kafka_broker, redis_cluster, tmp_path):
    events = _stream(N_EVENTS)
    records = _records(events)
    topics = {"input_topic": unique_name("in"), "labels_topic": unique_name("lab"),
              "predictions_topic": unique_name("pred"), "deadletter_topic": unique_name("dlq")}
    create_topics(kafka_broker, {topics["input_topic"]: PARTITIONS, topics["labels_topic"]: PARTITIONS,
                                 topics["predictions_topic"]: 1, topics["deadletter_topic"]: 1})
    store = RedisStore(redis_cluster.client())

    def masters(m: str) -> set[str]:
        return {_node_of(store.client, store.key(state_name(m, topics["input_topic"], p))) for p in range(PARTITIONS)}

    # a model name whose partitions live on more than one master, so the daemons' commits must be routed
    model = next(m for m in (unique_name("m") for _ in range(100)) if len(masters(m)) >= 2)
    names = [state_name(model, topics["input_topic"], p) for p in range(PARTITIONS)]
    per_partition = [sum(1 for _, q, _, _ in records if q == p) for p in range(PARTITIONS)]
    # align_idle_ms only decides when the stream's last labels (stamped like its last events) are
    # released; the order the model learns in does not depend on it (see docs/service.md, the rule)
    env = serve_env(kafka_broker, redis_cluster.url, topics, unique_name("g"), model,
                    STREAMMOE_REDIS__CLUSTER="true", STREAMMOE_SERVE__ALIGN_IDLE_MS="1000")
    logs = [tmp_path / "a.log", tmp_path / "b.log"]

    # the first half of the stream, then both daemons; the third quarter once the group has settled,
    # the last quarter after the kill (so the survivor has work of the dead one's partitions to do)
    half, three_q = len(records) // 2, len(records) * 3 // 4
    _produce(kafka_broker, topics, records[:half])
    procs = [start_serve(env, logs[0]), start_serve(env, logs[1])]
    try:
        settled = wait_until(lambda: all(_assigned(log) for log in logs)
                             and _assigned(logs[0]) | _assigned(logs[1]) == set(range(PARTITIONS))
                             and not _assigned(logs[0]) & _assigned(logs[1])
                             or any(p.poll() is not None for p in procs), 120, 0.1)
        assert settled and all(p.poll() is None for p in procs), (tail(logs[0]), tail(logs[1]))
        victim_parts = sorted(_assigned(logs[0]))
        _produce(kafka_broker, topics, records[half:three_q])
        # kill A once each of its partitions has checkpointed work of the second half
        first_half = [sum(1 for _, q, _, _ in records[:half] if q == p) for p in range(PARTITIONS)]
        reached = wait_until(lambda: all(_progress(store, names)[p] > first_half[p] for p in victim_parts)
                             or procs[0].poll() is not None, 120, 0.02)
        assert reached and procs[0].poll() is None, tail(logs[0])
        victim_epochs = {p: store.epoch(names[p]) for p in victim_parts}
        kill_hard(procs[0])
        _produce(kafka_broker, topics, records[three_q:])

        done = wait_until(lambda: _progress(store, names) == per_partition or procs[1].poll() is not None,
                          180, 0.1)
        assert done and procs[1].poll() is None, (_progress(store, names), per_partition, tail(logs[1]))
    finally:
        kill_hard(procs[0])
        stop_clean(procs[1], logs[1])

    for p in victim_parts:  # B claimed A's partitions after the kill (fencing A out)
        assert store.epoch(names[p]) > victim_epochs[p]
    b_pid = procs[1].pid
    for p, name in enumerate(names):
        ck = store.load(name)
        assert json.loads(ck.extra["daemon"])["owner"].endswith(f":{b_pid}"), p  # B wrote last everywhere
        parts = store.read(name)
        assert json.loads(parts["meta"])["n_learned"] == len(events[p::PARTITIONS]), f"partition {p}"
        assert store.pending_count(name) == 0
        assert state_digest(parts) == state_digest(_offline(events, p).state_parts()), f"partition {p}"
    preds = read_all(kafka_broker, topics["predictions_topic"], N_EVENTS)
    ids = {json.loads(r.value)["id"] for r in preds}
    assert ids == {f"e-{i}" for i in range(N_EVENTS)}
    dead = read_all(kafka_broker, topics["deadletter_topic"], 0, stall_s=5)
    assert not dead, [json.loads(r.value).get("reason_code") for r in dead[:5]]
