"""``river:<Name>`` sources: bundled datasets, generators, and clear refusals."""
from __future__ import annotations

import pytest
from river import datasets
from river.datasets import synth

from streammoe.connectors import open_source


def test_bundled_dataset_matches_river_event_for_event():
    src = open_source("river:Phishing")
    events = list(src)
    theirs = [(dict(x), y) for x, y in datasets.Phishing()]
    assert len(events) == src.n == 1250
    assert events == [({k: float(v) for k, v in x.items()}, y) for x, y in theirs]
    assert src.feature_names == list(theirs[0][0]) and src.n_features == 9
    assert {type(y) for _, y in events} == {bool}  # labels as river yields them
    assert src.errors == [] and "Phishing" in src.description


def test_dataset_is_cut_to_n():
    src = open_source("river:Phishing", n=100)
    assert src.n == 100 and len(list(src)) == 100


@pytest.mark.parametrize("spec", ["river:synth.Agrawal", "river:Agrawal"])
def test_generator_is_seeded_and_sized(spec):
    src = open_source(spec, n=500, seed=1)
    events = list(src)
    assert len(events) == src.n == 500
    assert list(src) == events
    assert list(open_source(spec, n=500, seed=1)) == events
    assert list(open_source(spec, n=500, seed=2)) != events
    assert open_source(spec).n == 100_000  # generators default to 100k events
    x, y = events[0]
    assert set(x) == {"salary", "commission", "age", "elevel", "car", "zipcode", "hvalue",
                      "hyears", "loan"}
    assert all(type(v) is float for v in x.values()) and y in (0, 1)


def test_generator_with_two_seed_parameters_and_integer_keys():
    src = open_source("river:synth.RandomRBF", n=50, seed=3)
    x, _ = next(iter(src))
    assert list(x) == [f"x{i}" for i in range(10)] == src.feature_names
    a, b = (list(open_source("river:synth.RandomRBF", n=50, seed=s)) for s in (3, 4))
    assert a != b


def test_text_features_are_categorical():
    """river's Mv generator has text columns: they are categorical (strings passed on)."""
    raw, _ = next(iter(synth.Mv(seed=0)))
    text_columns = {f"x{k}" for k, v in raw.items() if isinstance(v, str)}
    assert text_columns == {"x3", "x7", "x8"}
    src = open_source("river:synth.Mv", n=200, feature_types={"x8": "ignore"})
    events = list(src)
    assert len(events) == 200 and src.errors == []
    assert "x8" not in src.feature_names and len(src.feature_names) == 9
    assert {type(x["x3"]) for x, _ in events} == {str} and {type(x["x1"]) for x, _ in events} == {float}
    assert list(src) == events


def test_not_downloaded_dataset_gives_a_clear_error():
    if datasets.Elec2().is_downloaded:
        pytest.skip("Elec2 is downloaded on this machine")
    with pytest.raises(ValueError, match="not on this machine.*never use the network"):
        open_source("river:Elec2")


def test_unknown_and_unsuitable_river_specs():
    with pytest.raises(ValueError, match="unknown river source.*river:Phishing.*synth.Agrawal"):
        open_source("river:NoSuchDataset")
    for spec in ("river:synth._private", "river:_x", "river:", "river:synth.", "river:base",
                 "river:synth.random_rbf"):
        with pytest.raises(ValueError, match="unknown river source"):
            open_source(spec)
    with pytest.raises(ValueError, match="one label per event"):
        open_source("river:Yeast")  # bundled, but multi-output
    with pytest.raises(ValueError, match="target"):
        open_source("river:Phishing", target="y")
