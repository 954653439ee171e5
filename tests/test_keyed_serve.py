"""``serve.model_per = "key"`` on the keyed pool (``serve.keyed_engine = "pool"``): one
KeyedDriftMoE per partition answers and learns like one DriftMoE per key (key ``i`` seeded
``seed + i``), and a checkpoint / restart through real Redis continues exactly once."""
from __future__ import annotations

import json

import numpy as np
import pytest

from services import ListSink, rec, unique_name
from streammoe import DriftMoE
from streammoe.service.keyed_pool import POOL_PREFIX, KeyedPool, pool_params
from streammoe.service.owner import OwnerConfig, PartitionOwner
from streammoe.state.codec import state_digest
from streammoe.state.redis_store import RedisStore

PARAMS = dict(n_experts=4, top_k=2, hidden=8, window=32, grace_period=5, delta=0.05, seed=7)
KEYS = 5


def stream(n: int, seed: int = 1) -> list[dict]:
    """Events of KEYS keys, each its own concept; a third of them labelled inline, the others
    later on the labels topic.  Every key's first event is labelled inline with 0 (so its
    classes, numbered by first sight, are numbered as the partition numbers them)."""
    rng = np.random.default_rng(seed)
    out, first = [], set()
    for i in range(n):
        k = int(rng.integers(KEYS))
        x = {f"f{j}": float(v) for j, v in enumerate(rng.uniform(0, 10, 3))}
        y = int((x["f0"] + k * x["f1"] / 3) > 6 + k / 2)
        inline = bool(rng.random() < 0.33)
        if k not in first:
            y, inline, _ = 0, True, first.add(k)
        out.append({"id": f"e-{i}", "key": f"k{k}", "x": x, "y": y, "inline": inline})
    return out


def records(events: list[dict], delay: int = 40):
    """``(kind, record)`` in arrival order: each event, and the delayed labels due after it."""
    n, due = len(events), {}
    for j, e in enumerate(events):
        if not e["inline"]:
            due.setdefault(min(j + delay, n - 1), []).append(j)
    out, lab_off = [], 0
    for i, e in enumerate(events):
        body = {"id": e["id"], "key": e["key"], "x": e["x"], **({"y": e["y"]} if e["inline"] else {})}
        out.append(("event", rec("in", i, 1000 + i, json.dumps(body).encode())))
        for j in due.get(i, ()):
            out.append(("label", rec("lab", lab_off, 1000 + i, json.dumps({"id": events[j]["id"],
                                                                          "y": events[j]["y"]}).encode())))
            lab_off += 1
    return out


def pool_owner(**kw) -> PartitionOwner:
    cfg = OwnerConfig(base_name=kw.pop("base", "m"), input_topic="in", labels_topic="lab",
                      new_model=lambda: DriftMoE(**PARAMS), keyed=True, pool_params=pool_params(PARAMS), **kw)
    return PartitionOwner(cfg, partition=0, epoch=1)


def feed(owner: PartitionOwner, recs: list, sink: ListSink, chunk: int = 64) -> None:
    """Hand records to the owner in runs of one kind, at most ``chunk`` long (as polls do)."""
    run: list = []
    for kind, r in recs + [("end", None)]:
        if run and (kind != run[0][0] or len(run) == chunk):
            (owner.handle_events if run[0][0] == "event" else owner.handle_labels)([x for _, x in run], sink)
            run = []
        if kind != "end":
            run.append((kind, r))


def reference(events: list[dict], recs: list) -> tuple[dict, dict]:
    """One DriftMoE per key (seeded ``seed + i``, key ``i`` = i-th key met), fed the same records
    one by one: ``(predictions by id, models by key)``."""
    models: dict = {}
    by_id = {e["id"]: e for e in events}
    preds = {}
    for kind, r in recs:
        body = json.loads(r.value)
        e = by_id[body["id"]]
        if e["key"] not in models:
            models[e["key"]] = DriftMoE(**{**PARAMS, "seed": PARAMS["seed"] + len(models)}, engine="numba")
        m = models[e["key"]]
        if kind == "event":
            y = e["y"] if e["inline"] else None
            preds[e["id"]] = (m.predict_learn_many([e["x"]], [y])[0], m.n_learned_ - (y is not None))
        else:
            m.learn_one(e["x"], e["y"])
    return preds, models


def test_pool_answers_and_learns_like_one_driftmoe_per_key():
    events = stream(600)
    recs = records(events)
    owner, sink = pool_owner(), ListSink()
    feed(owner, recs, sink)
    assert not sink.letters and owner.models == {} and owner.pool.n_keys == KEYS
    preds, models = reference(events, recs)
    assert len(sink.predictions) == len(events)
    for p in sink.predictions:
        (proba, expert), version = preds[p["id"]]
        got = {int(k): v for k, v in p["proba"].items()}
        assert got == {int(k): v for k, v in proba.items()}, p["id"]  # same classes, same bits
        assert p["model_version"] == version
        if proba:
            assert p["expert"] == expert
    km = owner.pool.model
    assert (km.router_steps >= 2).all()  # routers trained: the comparison covers trained routers
    for key, m in models.items():
        i = owner.pool.index[key]
        assert km.n_learned[i] == m.n_learned_
        for name, value in m._router.params.items():
            assert np.array_equal(km.routers[i].params[name], value), (key, name)
        assert np.array_equal(km.usage[i], m.expert_usage())
    assert owner.stats.learned == len(events) and len(owner.pending) == 0


def test_pool_checkpoint_restart_continues_exactly_once(redis_server):
    events = stream(600, seed=2)
    recs = records(events)
    store = RedisStore(redis_server.client())
    base = unique_name("pool")
    cut = len(recs) // 2

    whole, sink_w = pool_owner(base=unique_name("whole")), ListSink()
    feed(whole, recs, sink_w)

    first, sink = pool_owner(base=base), ListSink()
    first.epoch = store.claim(first.name)
    feed(first, recs[: cut // 2], sink)
    first.checkpoint(store, sink)
    full = set(store.load(first.name).parts)
    feed(first, recs[cut // 2: cut // 2 + 8], sink)
    assert first.pool.dirty_parts().keys() < full  # only routers that trained since are written again
    feed(first, recs[cut // 2 + 8: cut], sink)
    first.checkpoint(store, sink)
    feed(first, recs[cut: cut + 50], sink)  # work after the checkpoint, lost in the "crash"

    second = PartitionOwner.open(store, first.cfg, 0, DriftMoE.from_parts)
    assert second.epoch == first.epoch + 1 and second.pool is not None and not second.models
    off_in, off_lab = second.offsets["in:0"], second.offsets["lab:0"]
    rest = [(k, r) for k, r in recs if r.offset >= (off_in if k == "event" else off_lab)]
    feed(second, rest, sink)
    second.checkpoint(store, sink)

    assert state_digest(second.pool.model.state_parts()) == state_digest(whole.pool.model.state_parts())
    stored = {k[len(POOL_PREFIX):]: v for k, v in store.load(second.name).parts.items()}
    loaded = KeyedPool.from_parts(stored, pool_params(PARAMS))
    assert state_digest(loaded.model.state_parts()) == state_digest(whole.pool.model.state_parts())
    assert loaded.keys == whole.pool.keys and int(loaded.model.n_learned.sum()) == len(events)
    assert second.stats.learned == len(events) and store.pending_count(second.name) == 0
    # every event predicted; those redone after the restart answered as the first time
    first_time = {p["id"]: p for p in sink_w.predictions}
    assert {p["id"] for p in sink.predictions} == set(first_time)
    for p in sink.predictions:
        assert (p["proba"], p["model_version"]) == (first_time[p["id"]]["proba"], first_time[p["id"]]["model_version"])


@pytest.mark.parametrize("params, message", [
    ({"mode": "task"}, "data-mode"), ({"experts": ["lora"]}, "tree experts"), ({"nope": 1}, "not a KeyedDriftMoE"),
])
def test_pool_refuses_parameters_it_cannot_honour(params, message):
    with pytest.raises(ValueError, match=message):
        pool_params(params)


def test_pool_keys_share_one_feature_layout_and_the_key_bound():
    owner, sink = pool_owner(max_keys=2), ListSink()
    evs = [{"id": "a", "key": "a", "x": {"f0": 1.0, "f1": 2.0}, "y": 0},
           {"id": "b", "key": "b", "x": {"f0": 1.0, "f2": 2.0}, "y": 0},   # other features: refused
           {"id": "c", "key": "b", "x": {"f1": 3.0, "f0": 1.0}, "y": 1},   # same set, other order: fine
           {"id": "d", "key": "c", "x": {"f0": 1.0, "f1": 2.0}, "y": 0},   # a third key: refused
           {"id": "e", "key": "a", "x": {"f0": "red", "f1": 2.0}, "y": 0}]  # categorical: refused
    owner.handle_events([rec("in", i, 1000 + i, json.dumps(e).encode()) for i, e in enumerate(evs)], sink)
    assert [d.reason_code.value for d in sink.letters] == ["wrong_features", "too_many_keys", "processing_error"]
    assert "numeric features only" in sink.letters[-1].reason
    assert owner.pool.keys == ["a", "b"] and [p["id"] for p in sink.predictions] == ["a", "c"]
