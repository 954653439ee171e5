"""The daemon's building blocks without a broker: pending labels, event-time alignment, and
the partition owner (decode -> check -> predict/learn -> dead letters), compared with the
plain model run offline on the same events."""
from __future__ import annotations

import json
import random

import pytest

from services import ListSink, rec
from streammoe import DriftMoE
from streammoe.connectors import open_source
from streammoe.service.align import EVENTS, LABELS, Aligner
from streammoe.service.generate import json_label
from streammoe.service.owner import OwnerConfig, PartitionOwner, part_prefix, split_part
from streammoe.service.pending import PendingEvent, PendingLabels, pending_size
from streammoe.service.schema import DecodeLimits
from streammoe.state.codec import state_digest

PARAMS = {"n_experts": 3, "hidden": 8, "window": 32, "seed": 7}


def make_sink() -> ListSink:
    return ListSink()


def reasons(sink: ListSink) -> list[str]:
    return [d.reason_code.value for d in sink.letters]


def owner(labels_topic: str | None = None, **kw) -> PartitionOwner:
    cfg = OwnerConfig(base_name="m", input_topic="in", labels_topic=labels_topic,
                      new_model=lambda: DriftMoE(**PARAMS), **kw)
    return PartitionOwner(cfg, partition=0, epoch=1)


def sea(n: int, seed: int = 3):
    return list(open_source("sea_a", n=n, seed=seed))


def event_bytes(i: int, x: dict, y=None, **extra) -> bytes:
    body = {"id": f"e-{i}", "x": x, **extra}
    if y is not None:
        body["y"] = y
    return json.dumps(body).encode()


# --- pending labels ---------------------------------------------------------------------------

def test_pending_ttl_in_event_time_count_bound_and_change_log():
    pl = PendingLabels(max_count=3, ttl_s=10.0)
    for i, t in enumerate([100.0, 101.0, 102.0]):
        assert pl.add(f"e{i}", {"a": 1.0}, key=None, ts=t, y_pred=0, offset=i, event_time=t) == []
    # a fourth event evicts the earliest deadline (e0)
    out = pl.add("e3", {"a": 2.0}, key=None, ts=None, y_pred=1, offset=3, event_time=103.0)
    assert [pe.id for pe, _ in out] == ["e0"] and "pending_max_count" in out[0][1]
    # the same id again replaces the waiting event and says so
    out = pl.add("e3", {"a": 3.0}, key=None, ts=None, y_pred=1, offset=4, event_time=103.5)
    assert [pe.id for pe, _ in out] == ["e3"] and "same id" in out[0][1]
    assert pl.get("e3").offset == 4 and len(pl) == 3
    e1 = pl.get("e1")
    assert pl.expire(110.9) == [] and pl.expire(111.0) == [e1]  # deadline 101 + 10: expires at <= 111
    assert "e1" not in pl and pl.expire(111.9) == []
    assert [pe.id for pe in pl.expire(113.5)] == ["e2", "e3"]
    put, dels = pl.changes()
    assert put == {} and set(dels) == {"e0", "e1", "e2", "e3"}
    pl.committed()
    assert pl.changes() == ({}, []) and not pl.has_changes()


def test_pending_size_bound_evicts_earliest_deadline_and_survives_a_restore():
    size = pending_size("e0", {"a": 1.0, "bb": 2.0}, None)
    assert size == 64 + 2 + 3 + 2 * 24  # overhead + id + feature names + 24 bytes per value
    pl = PendingLabels(max_count=100, ttl_s=10.0, max_bytes=3 * size)
    for i in range(3):
        assert pl.add(f"e{i}", {"a": 1.0, "bb": 2.0}, key=None, ts=None, y_pred=0, offset=i,
                      event_time=100.0 + i) == []
    assert pl.nbytes == 3 * size
    out = pl.add("e3", {"a": 1.0, "bb": 2.0}, key=None, ts=None, y_pred=0, offset=3, event_time=103.0)
    assert [pe.id for pe, _ in out] == ["e0"] and "pending_max_bytes" in out[0][1] and pl.nbytes == 3 * size
    # an event over the bound on its own never waits, and evicts nobody
    huge = {f"f{i}": 0.0 for i in range(50)}
    out = pl.add("big", huge, key=None, ts=None, y_pred=0, offset=4, event_time=104.0)
    assert [pe.id for pe, _ in out] == ["big"] and "alone" in out[0][1] and len(pl) == 3
    assert pl.pop("e1") is not None and pl.nbytes == 2 * size
    put, _ = pl.changes()
    back = PendingLabels.restore({e: put[e] for e in put if e in pl}, 100, 10.0, next_seq=0, max_bytes=3 * size)
    assert back.nbytes == pl.nbytes == 2 * size  # counted the same after a restart
    with pytest.raises(ValueError, match="max_bytes"):
        PendingLabels(max_count=1, ttl_s=1.0, max_bytes=0)


def test_pending_put_and_delete_never_overlap_and_restore_keeps_order():
    pl = PendingLabels(max_count=10, ttl_s=5.0)
    pl.add("a", {"f": 0.5}, key="k", ts=1.0, y_pred=True, offset=0, event_time=1.0)
    pl.add("b", {"f": 1.5}, key=None, ts=None, y_pred="x", offset=1, event_time=1.0)
    pl.committed()
    assert pl.pop("a").y_pred is True
    pl.add("a", {"f": 2.5}, key=None, ts=None, y_pred=0, offset=2, event_time=2.0)  # re-added: a put only
    put, dels = pl.changes()
    assert set(put) == {"a"} and dels == []
    stored = {"b": (PendingEvent("b", {"f": 1.5}, None, None, "x", 1, 1, 6.0).to_blob(), 6.0),
              "a": (put["a"][0], put["a"][1])}
    back = PendingLabels.restore(stored, 10, 5.0, next_seq=0)
    assert back.next_seq == 3 and back.get("b").y_pred == "x" and back.get("a").x == {"f": 2.5}
    # equal deadlines expire in insertion order (seq), also after a restore
    assert [pe.id for pe in back.expire(10.0)] == ["b", "a"]
    with pytest.raises(ValueError, match="not valid"):
        PendingEvent.from_blob(b'{"v": 9}', 1.0)


# --- alignment -------------------------------------------------------------------------------

def test_aligner_queue_bound_drops_the_newest_and_says_where_to_fetch_again():
    """serve.max_queued_records: a side waiting for the other keeps at most that many records;
    the rest are dropped from memory and the consumer seeks back to the first one dropped."""
    al = Aligner(with_labels=True, idle_s=10.0)
    al.push(EVENTS, [rec("in", 10 + i, i, b"") for i in range(8)])
    assert al.truncate(EVENTS, 8) is None
    assert al.truncate(EVENTS, 5) == 15 and [r.offset for r in al.events] == [10, 11, 12, 13, 14]
    assert al.truncate(LABELS, 5) is None and al.queued(EVENTS) == 5


def test_aligner_releases_in_event_time_order_events_first_on_ties():
    al = Aligner(with_labels=True, idle_s=10.0)
    al.push(EVENTS, [rec("in", i, ts, b"") for i, ts in enumerate([1, 2, 3, 5, 8])])
    al.push(LABELS, [rec("lab", i, ts, b"") for i, ts in enumerate([3, 4, 9])])
    yes = lambda: True  # noqa: E731
    order = []
    while True:
        run = al.next_run(yes, yes, 0.0, max_batch=100)
        if run is None:
            break
        order += [(run[0], r.timestamp) for r in run[1]]
    assert order == [(EVENTS, 1), (EVENTS, 2), (EVENTS, 3), (LABELS, 3), (LABELS, 4), (EVENTS, 5),
                     (EVENTS, 8)]
    # the label stamped 9 is newer than every event read: it waits for the input partition
    assert al.next_run(yes, yes, 5.0, max_batch=100) is None
    al.push(EVENTS, [rec("in", 5, 9, b""), rec("in", 6, 12, b"")])
    assert [(s, [r.timestamp for r in recs]) for s, recs in
            (al.next_run(yes, yes, 6.0, 100), al.next_run(yes, yes, 6.0, 100), al.next_run(yes, yes, 6.0, 100))] \
        == [(EVENTS, [9]), (LABELS, [9]), (EVENTS, [12])]


def test_aligner_waits_for_a_side_that_is_behind_then_gives_up_after_idle():
    al = Aligner(with_labels=True, idle_s=0.5)
    al.push(EVENTS, [rec("in", 0, 10, b"")])
    no, yes = (lambda: False), (lambda: True)
    assert al.next_run(no, yes, now=100.0, max_batch=10) is None
    assert al.next_run(no, yes, now=100.4, max_batch=10) is None
    side, recs = al.next_run(no, yes, now=100.6, max_batch=10)
    assert side == EVENTS and len(recs) == 1
    al.push(LABELS, [rec("lab", 0, 5, b"")])
    side, _ = al.next_run(yes, no, now=0.0, max_batch=10)  # older than the events read: go
    assert side == LABELS
    no_labels = Aligner(with_labels=False, idle_s=0.0)
    no_labels.push(EVENTS, [rec("in", i, 1, b"") for i in range(5)])
    assert [len(no_labels.next_run(None, None, 0.0, 2)[1]) for _ in range(3)] == [2, 2, 1]


def test_a_label_waits_until_the_input_partition_was_read_past_it():
    """The rule of issue 11: a label stamped T is released when an event stamped after T was
    read (then its event, stamped <= T, was read too); while the input partition is behind it
    waits however long that takes (a backlog never releases a label early, whatever the fetch
    order); only an input partition that looks caught up lets it go after idle_s of poll time
    (the end of a stream), and the owner then keeps it as an early label if its event is not
    there.  The event watermark comes from the checkpoint, so a restart decides the same."""
    al = Aligner(with_labels=True, idle_s=0.5)
    behind, caught_up = (lambda: False), (lambda: True)
    al.push(EVENTS, [rec("in", i, 100 + i, b"") for i in range(3)])
    assert al.next_run(caught_up, behind, 0.0, 100)[0] == EVENTS  # watermark 102
    al.push(LABELS, [rec("lab", i, 101 + i, b"") for i in range(4)])  # stamps 101..104
    side, recs = al.next_run(caught_up, behind, 0.0, 100)
    assert side == LABELS and [r.timestamp for r in recs] == [101]  # 102: an event stamped 102 may follow
    for t in (0.1, 5.0, 500.0):  # the input partition is behind: the labels wait, however long
        assert al.next_run(caught_up, behind, t, 100) is None
    al.push(EVENTS, [rec("in", 3, 103, b"")])
    assert [r.timestamp for r in al.next_run(caught_up, behind, 501.0, 100)[1]] == [102]
    assert [r.timestamp for r in al.next_run(caught_up, behind, 501.0, 100)[1]] == [103]
    assert al.next_run(caught_up, behind, 502.0, 100) is None
    # the input partition looks caught up: after idle_s of poll time the rest goes, and a label
    # backlog is then not throttled ...
    assert al.next_run(caught_up, caught_up, 600.0, 100) is None
    assert al.next_run(caught_up, caught_up, 600.4, 100) is None
    assert [r.timestamp for r in al.next_run(caught_up, caught_up, 600.5, 100)[1]] == [103, 104]
    al.push(LABELS, [rec("lab", 9, 500, b""), rec("lab", 10, 501, b"")])
    assert [r.timestamp for r in al.next_run(caught_up, caught_up, 600.6, 1)[1]] == [500]
    assert [r.timestamp for r in al.next_run(caught_up, caught_up, 600.6, 1)[1]] == [501]
    # ... until events arrive again
    al.push(EVENTS, [rec("in", 4, 600, b"")])
    al.push(LABELS, [rec("lab", 11, 700, b"")])
    assert al.next_run(caught_up, caught_up, 601.0, 100)[0] == EVENTS
    assert al.next_run(caught_up, caught_up, 601.0, 100) is None
    # restarted from a checkpoint whose newest event was stamped 650: the label at 640 goes at once
    again = Aligner(with_labels=True, idle_s=0.5, event_watermark=650)
    again.push(LABELS, [rec("lab", 11, 640, b""), rec("lab", 12, 700, b"")])
    assert [r.timestamp for r in again.next_run(caught_up, behind, 0.0, 100)[1]] == [640]
    assert again.next_run(caught_up, behind, 9.0, 100) is None


# --- the partition owner -----------------------------------------------------------------------

def test_inline_labels_equal_the_offline_model_whatever_the_batches():
    data = sea(400)
    values = [event_bytes(i, x, y, ts=1000.0 + i) for i, (x, y) in enumerate(data)]
    records = [rec("in", i, 1_000_000 + i, v) for i, v in enumerate(values)]
    o, sink = owner(), make_sink()
    rng = random.Random(0)
    i = 0
    while i < len(records):
        n = rng.randint(1, 60)
        o.handle_events(records[i:i + n], sink)
        i += n
    o.handle_events(records[:50], sink)  # a redelivered batch is skipped (offsets below the position)
    offline = DriftMoE(**PARAMS)
    expected = offline.predict_learn_many([x for x, _ in data], [y for _, y in data])
    assert len(sink.predictions) == 400 and not sink.letters
    assert state_digest(o.models[None].state_parts()) == state_digest(offline.state_parts())
    for pred, (proba, expert) in zip(sink.predictions, expected):
        assert pred["expert"] == expert
        assert pred["proba"] == {str(k): v for k, v in proba.items()}
    assert [p["model_version"] for p in sink.predictions] == list(range(400))
    assert o.offsets == {"in:0": 400} and o.stats.learned == 400 and o.stats.scored == 400


def test_deferred_model_work_equals_run_by_run_and_the_offline_model():
    """The daemon queues a partition's model work and runs it once per polled batch
    (``defer=True`` + ``flush``), predictions and delayed-label learning in one call.  Whatever
    the batch boundaries, predictions, counters and state equal processing run by run, and the
    offline model fed the same (event, label) sequence: predict each event, learn each label
    when it comes."""
    data, delay = sea(1200, seed=5), 25
    events = [rec("in", i, 1_000_000 + i, event_bytes(i, x)) for i, (x, _) in enumerate(data)]
    labels = [rec("lab", j, 1_000_000 + j + delay, json.dumps({"id": f"e-{j}", "y": y}).encode())
              for j, (_, y) in enumerate(data)]
    runs, li = [], 0  # aligned runs: events in chunks, then the labels stamped up to their time
    rng = random.Random(1)
    i = 0
    while i < len(events):
        n = rng.randint(1, 7)
        runs.append(("e", events[i:i + n]))
        i += n
        upto = events[min(i, len(events)) - 1].timestamp
        k = li
        while k < len(labels) and labels[k].timestamp <= upto:
            k += 1
        if k > li:
            runs.append(("l", labels[li:k]))
            li = k
    runs.append(("l", labels[li:]))
    outcomes = []
    for defer in (False, True):
        o, sink = owner("lab"), make_sink()
        for kind, recs in runs:
            (o.handle_events if kind == "e" else o.handle_labels)(recs, sink, defer=defer)
            if defer and o.deferred >= rng.randint(50, 400):
                o.flush(sink)
        o.flush(sink)
        preds = [{k: v for k, v in p.items() if k != "latency_ms"} for p in sink.predictions]
        outcomes.append((preds, o.stats.to_json(), state_digest(o.models[None].state_parts()), sink.letters))
    assert outcomes[0] == outcomes[1]
    preds, stats, digest, letters = outcomes[0]
    assert not letters and stats["predicted"] == stats["learned"] == stats["joined"] == 1200
    offline, expected = DriftMoE(**PARAMS), []
    for kind, recs in runs:
        for r in recs:
            body = json.loads(r.value)
            if kind == "e":
                expected.append((offline.predict_proba_one(body["x"]), offline.last_expert))
            else:
                offline.learn_one(data[int(body["id"][2:])][0], body["y"])
    assert digest == state_digest(offline.state_parts())
    assert [(p["proba"], p["expert"]) for p in preds] == [({str(k): v for k, v in pr.items()}, e)
                                                          for pr, e in expected]
    answers = [max(pr, key=pr.get) if pr else None for pr, _ in expected]
    assert stats["correct"] == sum(a == y for a, (_, y) in zip(answers, data)) > 600


def test_delayed_labels_are_learned_once_and_late_ones_time_out():
    data = sea(60)
    o, sink = owner("lab", pending_ttl_s=5.0), make_sink()
    ev = [rec("in", i, (100 + i) * 1000, event_bytes(i, x)) for i, (x, _) in enumerate(data)]
    o.handle_events(ev[:20], sink)
    # stream time is now 119 s: events older than 114 s timed out (deadline = event time + 5 s)
    assert len(o.pending) == 5 and o.stats.learned == 0 and reasons(sink) == ["label_timeout"] * 15
    labels = [rec("lab", j - 15, 119_500, json.dumps({"id": f"e-{j}", "y": data[j][1]}).encode())
              for j in range(15, 20)]
    labels.append(rec("lab", 3, 119_500, json.dumps({"id": "e-15", "y": data[15][1]}).encode()))  # redelivered
    labels.append(rec("lab", 5, 119_500, json.dumps({"id": "e-15", "y": data[15][1]}).encode()))  # second label
    labels.append(rec("lab", 6, 119_500, json.dumps({"id": "nope", "y": 1}).encode()))
    labels.append(rec("lab", 7, 119_500, json.dumps({"id": "e-16", "y": "one"}).encode()))
    labels.append(rec("lab", 8, 119_500, b'{"id": "e-17"'))
    o.handle_labels(labels, sink)
    # e-15..e-19 learned once; the second label of e-15 finds nothing to join
    assert o.stats.learned == 5 and o.models[None].n_learned_ == 5 and len(o.pending) == 0
    got = reasons(sink)
    assert got.count("label_timeout") == 15
    # stamped 119.5 s, after every event read (119 s): their events may still come, so they wait
    assert got[-2:] == ["label_timeout", "malformed_json"] and sorted(e.id for e in o.early) == ["e-15", "e-16", "nope"]
    timed_out = [d for d in sink.letters if d.reason_code.value == "label_timeout"]
    assert json.loads(timed_out[0].raw) == {"id": "e-0", "x": data[0][0]} and timed_out[0].offset == 0
    assert o.offsets == {"in:0": 20, "lab:0": 9}
    o.handle_events(ev[20:21], sink)  # stream time 120 s: nothing left to time out
    assert len(o.pending) == 1 and reasons(sink).count("label_timeout") == 15
    # an event stamped 120 s was read: the events of labels stamped 119.5 s are not coming
    assert reasons(sink)[-3:] == ["unknown_event_id"] * 3 and len(o.early) == 0
    assert [d.offset for d in sink.letters[-3:]] == [5, 6, 7] and "120000 ms > 119500 ms" in sink.letters[-1].reason


def test_a_label_before_its_event_is_kept_joined_when_the_event_comes_and_checkpointed(redis_server):
    """A label the aligner let go without proof (the input partition looked caught up) is not
    refused: it waits as an early label - across a checkpoint and a new owner - and is learned
    once its event comes; the bounds drop the oldest with a dead letter naming the bound."""
    from streammoe.state.redis_store import RedisStore

    store = RedisStore.from_url(redis_server.url)
    data = sea(6)
    evs = [rec("in", i, 1000 + i, event_bytes(i, x)) for i, (x, _) in enumerate(data)]
    lab = lambda off, j, ts: rec("lab", off, ts, json.dumps({"id": f"e-{j}", "y": data[j][1]}).encode())  # noqa: E731
    cfg = OwnerConfig(base_name=f"early-{random.random()}", input_topic="in", labels_topic="lab",
                      new_model=lambda: DriftMoE(**PARAMS), early_max=2)
    first, sink = PartitionOwner.open(store, cfg, 0, DriftMoE.from_parts), make_sink()
    first.handle_events(evs[:2], sink)
    first.handle_labels([lab(0, 0, 1001), lab(1, 3, 1003), lab(2, 2, 1003)], sink)  # e-2, e-3 not read yet
    assert first.stats.learned == 1 and sorted(e.id for e in first.early) == ["e-2", "e-3"] and not sink.letters
    first.checkpoint(store, sink)
    second, sink = PartitionOwner.open(store, cfg, 0, DriftMoE.from_parts), make_sink()
    assert sorted(e.id for e in second.early) == ["e-2", "e-3"] and second.event_time_ms == 1001
    second.handle_events(evs[2:4], sink)  # both events come: both labels are learned, in that run
    assert second.stats.learned == 3 and len(second.early) == 0 and len(second.pending) == 1 and not sink.letters
    # the count bound (2): a third early label pushes the oldest out, with its reason
    second.handle_labels([lab(3, 5, 1010), lab(4, 4, 1010), rec("lab", 5, 1010, b'{"id": "ghost", "y": 1}')], sink)
    assert reasons(sink) == ["early_label_evicted"] and sink.letters[0].offset == 3
    assert "early_labels_max_count" in sink.letters[0].reason and sorted(e.id for e in second.early) == ["e-4", "ghost"]
    expected = DriftMoE(**PARAMS)
    for x, _ in data[:4]:
        expected.predict_proba_one(x)
    for j in (0, 2, 3):
        expected.learn_one(*data[j])
    # learned: e-0, then e-2 and e-3 right after the run of events that brought them
    assert state_digest(second.models[None].state_parts()) == state_digest(expected.state_parts())


def test_a_label_of_the_wrong_type_is_refused_and_the_event_keeps_waiting():
    o, sink = owner("lab"), make_sink()
    o.handle_events([rec("in", 0, 1000, event_bytes(0, {"a": 1.0}, 1)),
                     rec("in", 1, 1000, event_bytes(1, {"a": 2.0}))], sink)
    o.handle_labels([rec("lab", 0, 2000, b'{"id": "e-1", "y": "1"}'),
                     rec("lab", 1, 2000, b'{"id": "e-1", "y": true}')], sink)
    assert reasons(sink) == ["unknown_label", "unknown_label"] and "e-1" in o.pending
    assert "int" in sink.letters[0].reason and "keeps waiting" in sink.letters[0].reason
    o.handle_labels([rec("lab", 2, 2000, b'{"id": "e-1", "y": 0}')], sink)
    assert "e-1" not in o.pending and o.models[None].n_learned_ == 2


def test_event_checks_wrong_features_classes_and_too_many_keys():
    o, sink = owner(classes=(0, 1)), make_sink()
    o.handle_events([rec("in", 0, 1, event_bytes(0, {"a": 1.0, "b": 2.0}, 2)),   # not in classes
                     rec("in", 1, 1, event_bytes(1, {"a": 1.0, "b": 2.0}, 1)),   # fixes features {a, b}
                     rec("in", 2, 1, event_bytes(2, {"a": 1.0}, 1)),
                     rec("in", 3, 1, event_bytes(3, {"a": 1.0, "b": 2.0, "c": 3.0}, 0)),
                     rec("in", 4, 1, event_bytes(4, {"b": 5.0, "a": 1.0}, True)),  # True is not 1
                     rec("in", 5, 1, b"not json")], sink)
    assert reasons(sink) == ["unknown_label", "wrong_features", "wrong_features", "unknown_label",
                             "malformed_json"]
    assert "missing 'b'" in sink.letters[1].reason and "unexpected 'c'" in sink.letters[2].reason
    assert len(sink.predictions) == 1 and o.stats.dead == {"unknown_label": 2, "wrong_features": 2,
                                                             "malformed_json": 1}
    keyed, sink = owner(keyed=True, max_keys=2), make_sink()
    evs = [rec("in", i, 1, event_bytes(i, {"a": float(i)}, i % 2, key=k)) for i, k in enumerate("ababcab")]
    keyed.handle_events(evs, sink)
    assert reasons(sink) == ["too_many_keys"] and set(keyed.models) == {"a", "b"}
    assert keyed.models["a"].n_learned_ == 3 and keyed.models["b"].n_learned_ == 3
    open_policy, sink = owner(strict_features=False), make_sink()
    open_policy.handle_events([rec("in", 0, 1, event_bytes(0, {"a": 1.0}, 1)),
                               rec("in", 1, 1, event_bytes(1, {"b": 1.0}, 0))], sink)
    assert not sink.letters and open_policy.models[None].features_ == ["a", "b"]


def test_oversized_messages_are_refused_by_the_configured_limit():
    o, sink = owner(limits=DecodeLimits(max_bytes=200)), make_sink()
    big = event_bytes(0, {f"f{i}": 1.0 for i in range(40)}, 1)
    o.handle_events([rec("in", 0, 1, big)], sink)
    assert reasons(sink) == ["oversized"] and sink.letters[0].raw == big


@pytest.mark.parametrize("key", [None, "plain", "with/slash:colon", "k/x/", "ünï cödé %2F", ""])
def test_keyed_part_names_round_trip(key):
    name = part_prefix(key) + "expert/3"
    assert split_part(name) == (key, "expert/3")


def test_generator_labels_are_json_labels():
    import numpy as np

    assert json_label(np.int64(3)) == 3 and type(json_label(np.int64(3))) is int
    assert json_label(2.0) == 2 and json_label(True) is True and json_label("a") == "a"
    with pytest.raises(ValueError, match="cannot be sent"):
        json_label(0.5)
