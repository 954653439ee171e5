"""RiverTreeExpert: protocol behaviour and its pickle-free snapshot continuing bit-identically."""
from __future__ import annotations

import inspect
import io
import re
import zipfile

import numpy as np
import pytest
from river.datasets import synth

import streammoe.experts.river_tree as rt
from streammoe.experts.base import Expert
from streammoe.experts.river_tree import RiverTreeExpert
from streammoe.state.codec import StateFormatError, pack_arrays, unpack_arrays


def stream(name: str, n: int, seed: int = 1) -> list[tuple[np.ndarray, int]]:
    gen = {
        "sea": lambda: synth.SEA(variant=0, seed=seed),
        "led": lambda: synth.LED(seed=seed, noise_percentage=0.1, irrelevant_features=True),  # 24 features
        "rbf": lambda: synth.RandomRBF(seed_model=seed, seed_sample=seed + 1, n_classes=5, n_features=10),
    }[name]()
    return [(np.array(list(x.values()), dtype=np.float64), int(y)) for x, y in gen.take(n)]


N_CLASSES = {"sea": 2, "led": 10, "rbf": 5}

# (stream, expert options): the brief's trees, and variants that grow deep trees before the snapshot
# (tau=0.5 forces early splits) and exercise every stored part: inactive leaves (max_depth), leaves
# deactivated by the size limit, disabled attributes (MC leaves + remove_poor_attrs), NB leaves and
# the memory heuristic, which counts objects by identity (memory_estimate_period=250).
CASES = [
    ("sea", {}),
    ("led", {}),
    ("rbf", {}),
    ("rbf", {"tau": 0.5, "memory_estimate_period": 250}),
    ("led", {"tau": 0.5, "leaf_prediction": "mc", "remove_poor_attrs": True, "memory_estimate_period": 250}),
    ("rbf", {"tau": 0.5, "leaf_prediction": "mc", "max_depth": 4}),
    ("rbf", {"tau": 0.5, "leaf_prediction": "nb", "max_size": 0.2, "memory_estimate_period": 250}),
]


def leaves(expert: RiverTreeExpert) -> list:
    return list(expert.tree._root.iter_leaves())


def continue_both(a: RiverTreeExpert, b: RiverTreeExpert, data, n_classes: int) -> int:
    """Feed both experts the same events; return how many predictions differed (must be 0)."""
    diffs = 0
    for x, y in data:
        diffs += not np.array_equal(a.predict_proba(x, n_classes), b.predict_proba(x, n_classes))
        a.learn(x, y)
        b.learn(x, y)
    return diffs


@pytest.mark.parametrize("name,opts", CASES, ids=[f"{n}-{'-'.join(o) or 'default'}" for n, o in CASES])
def test_restored_tree_continues_bit_identically(name, opts):
    data = stream(name, 8000)
    original = RiverTreeExpert(**opts)
    for x, y in data[:3000]:
        original.learn(x, y)
    blob = original.to_state()
    restored = RiverTreeExpert.from_state(blob)
    assert restored.to_state() == blob
    assert restored.n_nodes() == original.n_nodes()

    assert continue_both(original, restored, data[3000:], N_CLASSES[name]) == 0
    assert original.to_state() == restored.to_state()
    t = original.tree
    for attr in ("_size_estimate_overhead_fraction", "_active_leaf_size_estimate", "_n_inactive_leaves"):
        assert getattr(restored.tree, attr) == getattr(t, attr)
    if opts:  # the variants must really contain what they are meant to exercise
        assert original.n_nodes() > 10
    if "max_depth" in opts or "max_size" in opts:
        assert t.n_inactive_leaves > 0
    if "remove_poor_attrs" in opts:
        assert any(leaf._disabled_attrs for leaf in leaves(original))
    if "memory_estimate_period" in opts:
        assert t._size_estimate_overhead_fraction != 1.0


def test_snapshot_of_grown_tree_carries_every_part():
    """Dict order, float objects and per-class Gaussians come back exactly, node by node."""
    e = RiverTreeExpert(tau=0.5)
    for x, y in stream("rbf", 2000, seed=4):
        e.learn(x, y)
    r = RiverTreeExpert.from_state(e.to_state())
    assert e.n_nodes() > 10 and e.tree.height == r.tree.height
    for a, b in zip(e.tree._root.iter_dfs(), r.tree._root.iter_dfs(), strict=True):
        assert type(a) is type(b) and a.depth == b.depth
        assert list(a.stats.items()) == list(b.stats.items())
        if hasattr(a, "splitters"):
            assert b.splitter is r.tree.splitter
            assert list(a.splitters) == list(b.splitters)
            for f, sa in a.splitters.items():
                sb = b.splitters[f]
                assert list(sa._att_dist_per_class) == list(sb._att_dist_per_class)
                for k, ga in sa._att_dist_per_class.items():
                    gb = sb._att_dist_per_class[k]
                    assert (ga._var.mean.n, ga._var.mean._mean, ga._var._S) == \
                        (gb._var.mean.n, gb._var.mean._mean, gb._var._S)
                    assert (sa._min_per_class[k] is sa._max_per_class[k]) == \
                        (sb._min_per_class[k] is sb._max_per_class[k])
        else:
            assert (a.feature, a.threshold) == (b.feature, b.threshold)
    assert e.tree.classes == r.tree.classes
    assert e.tree._train_weight_seen_by_model == r.tree._train_weight_seen_by_model


def test_binary_mode_round_trip_and_label_check():
    data = [(x, int(y == 3)) for x, y in stream("led", 5000, seed=2)]
    e = RiverTreeExpert(binary=True, tau=0.5)
    for x, y in data[:2000]:
        e.learn(x, y)
    with pytest.raises(ValueError, match="binary"):
        e.learn(data[0][0], 2)
    r = RiverTreeExpert.from_state(e.to_state())
    assert r.binary and r.kind == "river-ht"
    assert continue_both(e, r, data[2000:], 2) == 0
    assert e.to_state() == r.to_state()
    assert e.predict_proba(data[0][0], 2).sum() == pytest.approx(1.0)


def test_protocol_behaviour():
    e = RiverTreeExpert()
    assert isinstance(e, Expert) and e.kind == "river-ht" and e.frozen is False
    x = np.array([1.0, 2.0, 3.0])
    assert np.array_equal(e.predict_proba(x, 4), np.zeros(4))
    assert e.n_nodes() == 0
    empty = RiverTreeExpert.from_state(e.to_state())
    assert empty.tree._root is None and np.array_equal(empty.predict_proba(x, 3), np.zeros(3))

    for i in range(60):
        e.learn(x + i % 3, i % 3)
    p = e.predict_proba(x, 5)
    assert p.shape == (5,) and p[3:].sum() == 0 and p.sum() == pytest.approx(1.0)
    with pytest.raises(ValueError, match="n_classes=2"):
        e.predict_proba(x, 2)
    # the feature vector may grow during a stream
    e.learn(np.array([1.0, 2.0, 3.0, 4.0]), 1)
    assert e.predict_proba(np.array([1.0, 2.0, 3.0, 4.0, 5.0]), 3).sum() == pytest.approx(1.0)

    e.frozen = True
    before = e.to_state()
    e.learn(x, 0)
    assert e.to_state() == before
    assert RiverTreeExpert.from_state(before).frozen is True


@pytest.mark.parametrize("x,y,err", [
    (np.array([1.0, np.nan]), 0, ValueError),
    (np.array([1.0, np.inf]), 0, ValueError),
    (np.ones((2, 2)), 0, ValueError),
    (np.ones(2), -1, ValueError),
    (np.ones(2), 1.5, TypeError),
])
def test_bad_input_is_refused_clearly(x, y, err):
    e = RiverTreeExpert()
    with pytest.raises(err):
        e.learn(x, y)
    assert e.tree._train_weight_seen_by_model == 0.0


def test_unsupported_options_are_refused():
    with pytest.raises(ValueError, match="nominal_attributes"):
        RiverTreeExpert(nominal_attributes=[0])
    with pytest.raises(ValueError, match="splitter"):
        RiverTreeExpert(splitter=None)
    with pytest.raises(TypeError, match="plain scalar"):
        RiverTreeExpert(max_depth=[3])


def test_blob_is_plain_npz_without_pickle():
    e = RiverTreeExpert(tau=0.5)
    for x, y in stream("sea", 1000):
        e.learn(x, y)
    blob = e.to_state()
    names = zipfile.ZipFile(io.BytesIO(blob)).namelist()
    assert names and all(n.endswith(".npy") for n in names)
    with np.load(io.BytesIO(blob), allow_pickle=False) as npz:
        assert all(npz[k].dtype != object for k in npz.files)
    src = inspect.getsource(rt)
    assert not re.search(r"import pickle|pickle\.\w|\beval\(|\bexec\(", src)
    assert 0 < e.nbytes() < len(blob)


def _tampered(blob: bytes, **changes) -> bytes:
    arrays = unpack_arrays(blob)
    arrays.update(changes)
    return pack_arrays({k: v for k, v in arrays.items() if v is not None})


def test_corrupt_or_foreign_blobs_fail_clearly():
    e = RiverTreeExpert(tau=0.5)
    for x, y in stream("sea", 1000):
        e.learn(x, y)
    blob = e.to_state()
    meta = bytes(unpack_arrays(blob)["meta"]).replace(b'"river-ht/1"', b'"river-ht/9"')
    with pytest.raises(StateFormatError, match="unknown river-ht state layout"):
        RiverTreeExpert.from_state(_tampered(blob, meta=np.frombuffer(meta, dtype=np.uint8)))
    with pytest.raises(StateFormatError):
        RiverTreeExpert.from_state(b"not a blob")
    with pytest.raises(StateFormatError, match="too short"):
        RiverTreeExpert.from_state(_tampered(blob, g_float=unpack_arrays(blob)["g_float"][:-3]))
    with pytest.raises(StateFormatError, match="trailing"):
        RiverTreeExpert.from_state(_tampered(blob, disabled=np.array([1, 2], dtype=np.int64)))
    with pytest.raises(StateFormatError, match="node kind"):
        RiverTreeExpert.from_state(_tampered(blob, kind=np.full_like(unpack_arrays(blob)["kind"], 7)))
    with pytest.raises(StateFormatError):
        RiverTreeExpert.from_state(_tampered(blob, stats_val=None))
    with pytest.raises(StateFormatError, match="alias"):
        RiverTreeExpert.from_state(_tampered(blob, alias=np.array([[-1, 0, 0, 0]], dtype=np.int32)))


def test_unknown_river_state_is_refused_on_save():
    """A node carrying state this layout does not know must not be saved as if it were complete."""
    e = RiverTreeExpert(tau=0.5)
    for x, y in stream("sea", 1000):
        e.learn(x, y)
    leaves(e)[0].extra_state = 1
    with pytest.raises(StateFormatError, match="unexpected \\['extra_state'\\]"):
        e.to_state()
