"""Bad input, fuzzed (issue 7): arbitrary feature values, feature names and labels never crash
DriftMoE with anything but a ``ValueError`` that names the problem, and a refused event never
changes the model (state digest before == after); an accepted event leaves a model that can
still be saved. Replay files with arbitrary lines never raise while iterating: every non-blank
line becomes an event or a ``BadRow`` with its line number.

``max_examples`` is kept small so the file runs in seconds; the seed is fixed
(``derandomize=True``) so a failure reproduces bit for bit.
"""
from __future__ import annotations

import math

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streammoe import DriftMoE
from streammoe.connectors import open_source
from streammoe.state.codec import state_digest

FAST = settings(max_examples=60, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

scalars = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True), st.integers(min_value=-10**400, max_value=10**400),
    st.text(max_size=8), st.none(), st.booleans(), st.binary(max_size=4),
)
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                       st.dictionaries(st.text(max_size=3), inner, max_size=3)),
                      max_leaves=6)
names = st.one_of(st.text(max_size=6), st.integers(-5, 5), st.none(), st.booleans(),
                  st.floats(allow_nan=False, allow_infinity=False))
features = st.one_of(
    st.dictionaries(names, values, max_size=5),
    st.dictionaries(st.sampled_from(["a", "b", "c"]), st.floats(-1e6, 1e6), max_size=3),  # mostly valid
    values,  # not a dict at all
)
labels = st.one_of(st.integers(-10**30, 10**30), st.text(max_size=5), st.booleans(), st.floats(), st.none(),
                   st.lists(st.integers(), max_size=2), st.dictionaries(st.text(max_size=2), st.integers(), max_size=2))


def fresh_model() -> DriftMoE:
    model = DriftMoE(n_experts=2, hidden=4, window=8, seed=3)
    for i in range(6):
        model.learn_one({"a": 0.1 * i, "b": 1.0 - 0.1 * i}, i % 2)
    return model


def digest(model: DriftMoE) -> str:
    return state_digest(model.state_parts())


def refused_cleanly(exc: ValueError) -> None:
    assert str(exc).strip(), "a refusal must say what is wrong"


@FAST
@given(x=features, y=labels)
def test_learn_one_accepts_or_refuses_without_changing_state(x, y):
    model = fresh_model()
    before = digest(model)
    try:
        model.learn_one(x, y)
    except ValueError as exc:
        refused_cleanly(exc)
        assert digest(model) == before, f"refused learn_one({x!r}, {y!r}) changed the model"
        return
    assert model.n_learned_ == 7
    assert digest(model) != before
    restored = DriftMoE.from_parts(model.state_parts())  # what was accepted can be stored and loaded
    assert restored.n_learned_ == 7 and digest(restored) == digest(model)


@FAST
@given(x=features)
def test_predict_one_answers_a_known_class_or_refuses_without_changing_state(x):
    model = fresh_model()
    before = digest(model)
    try:
        y = model.predict_one(x)
    except ValueError as exc:
        refused_cleanly(exc)
        assert digest(model) == before, f"refused predict_one({x!r}) changed the model"
        return
    assert y in (0, 1)
    proba = model.predict_proba_one(x)
    assert set(proba) == {0, 1} and all(math.isfinite(p) and 0.0 <= p <= 1.0 for p in proba.values())


@FAST
@given(batch=st.lists(st.tuples(features, st.one_of(st.none(), labels)), min_size=1, max_size=6))
def test_predict_learn_many_refuses_a_bad_batch_before_learning_anything(batch):
    model = fresh_model()
    before = digest(model)
    xs, ys = [x for x, _ in batch], [y for _, y in batch]
    try:
        out = model.predict_learn_many(xs, ys)
    except ValueError as exc:
        refused_cleanly(exc)
        assert str(exc).startswith("event "), f"the message must name the event: {exc}"
        assert digest(model) == before, "a refused batch changed the model"
        return
    assert len(out) == len(batch)
    assert model.n_learned_ == 6 + sum(y is not None for y in ys)
    assert digest(DriftMoE.from_parts(model.state_parts())) == digest(model)


# ------------------------------------------------------------------ replay files
line_text = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n\x0b\x0c\x1c\x1d\x1e"
                                  "\x85\u2028\u2029"), max_size=30)
csv_cell = st.one_of(st.floats(allow_nan=True, allow_infinity=True).map(repr), st.integers().map(str),
                     st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters='",\r\n\x0b\x0c'
                                           '\x1c\x1d\x1e\x85\u2028\u2029'), max_size=5), st.just(""))
# no quote characters here: a quote may join physical lines into one CSV row (documented; the
# row is then reported at its first line), which the exact line accounting below does not model
csv_line = st.one_of(st.lists(csv_cell, min_size=1, max_size=4).map(",".join),
                     line_text.map(lambda s: s.replace('"', "")))
jsonl_line = st.one_of(line_text, st.just('{"a": 1, "y": 0}'), st.just('{"a": NaN, "y": 1}'),
                       st.dictionaries(st.sampled_from(["a", "b", "y", "x"]), values, max_size=3).map(repr))


def iterate(path) -> tuple[list, list]:
    """Every event and every BadRow of one pass; the source must not raise while iterating."""
    try:
        source = open_source(path)
    except ValueError as exc:  # e.g. no target detectable: refused at open, with a reason
        refused_cleanly(exc)
        return [], []
    events = list(source)
    return events, list(source.errors)


@FAST
@given(lines=st.lists(csv_line, max_size=12))
def test_csv_replay_turns_every_line_into_an_event_or_a_numbered_bad_row(lines, tmp_path_factory):
    path = tmp_path_factory.mktemp("fuzz") / "data.csv"
    path.write_text("a,b,y\n" + "\n".join(lines) + "\n", encoding="utf-8")
    events, bad = iterate(path)
    nonblank = [i for i, line in enumerate(lines, start=2) if line.strip()]
    assert len(events) + len(bad) == len(nonblank), (lines, events, bad)
    assert [b.line for b in bad] == sorted(b.line for b in bad)
    assert all(b.line in nonblank and b.reason for b in bad), bad


@FAST
@given(lines=st.lists(jsonl_line, max_size=12))
def test_jsonl_replay_turns_every_line_into_an_event_or_a_numbered_bad_row(lines, tmp_path_factory):
    path = tmp_path_factory.mktemp("fuzz") / "data.jsonl"
    path.write_text('{"a": 0.5, "y": 1}\n' + "\n".join(lines) + "\n", encoding="utf-8")
    events, bad = iterate(path)
    nonblank = [1] + [i for i, line in enumerate(lines, start=2) if line.strip()]
    assert len(events) + len(bad) == len(nonblank), (lines, events, bad)
    assert all(b.line in nonblank and b.reason for b in bad), bad


@FAST
@given(data=st.binary(max_size=200))
def test_arbitrary_bytes_in_a_replay_file_never_raise_while_iterating(data, tmp_path_factory):
    for suffix, header in ((".csv", b"a,b,y\n"), (".jsonl", b'{"a": 1, "y": 0}\n')):
        path = tmp_path_factory.mktemp("fuzz") / f"data{suffix}"
        path.write_bytes(header + data)
        events, bad = iterate(path)
        assert all(b.line >= 1 and b.reason for b in bad), bad


def test_a_feature_beyond_the_float32_router_is_refused_and_the_model_keeps_working():
    """Regression (found by tests/test_fuzz_service.py): 1e300 was accepted by ``learn_one`` and
    turned the float32 router's weights into NaN for good, and ``predict_learn_many`` failed after
    learning part of its batch.  Values beyond ``features.MAX_FEATURE`` are refused up front."""
    from streammoe.features import MAX_FEATURE

    model = fresh_model()
    before = digest(model)
    for x in ({"a": 1e300, "b": 0.0}, {"a": -1e31, "b": 0.0}, {"a": 10**31, "b": 0.0}):
        for call in (lambda: model.learn_one(x, 1), lambda: model.predict_one(x),
                     lambda: model.predict_learn_many([{"a": 0.5, "b": 0.5}, x], [0, 1])):
            try:
                call()
            except ValueError as exc:
                assert "'a'" in str(exc) and ("beyond" in str(exc) or "too large" in str(exc)), exc
            else:
                raise AssertionError(f"{x} was accepted")
        assert digest(model) == before
    model.learn_one({"a": MAX_FEATURE, "b": -MAX_FEATURE}, 1)  # the bound itself is accepted
    out = model.predict_learn_many([{"a": 0.1 * i, "b": 1.0} for i in range(20)], [i % 2 for i in range(20)])
    assert len(out) == 20 and model.n_learned_ == 27
