"""The six paper streams: shape, determinism and an empirical check of the drift schedule.

The schedule is verified from the data itself: SEA labels are recomputed from x with each
known threshold, and LED's relevant attributes are located by how often each input bit
matches the seven-segment pattern of the label.
"""
from __future__ import annotations

import itertools

import numpy as np
import pytest
from river.datasets import synth

from streammoe.connectors import SYNTHETIC_STREAMS, open_source
from streammoe.connectors.base import derive_seed
from streammoe.connectors.synthetic import SEA_THRESHOLDS, DriftMixer

N = 40_000  # drifts at 10k / 20k / 30k; abrupt width 2, gradual width 2,000


def take(source, k=None):
    return list(itertools.islice(source, k))


@pytest.mark.parametrize("name", list(SYNTHETIC_STREAMS))
def test_shape_length_and_types(name):
    src = open_source(name, n=3_000, seed=5)
    events = take(src)
    assert len(events) == 3_000 == src.n
    assert src.description and SYNTHETIC_STREAMS[name] in src.description
    for x, y in events[:200]:
        assert list(x) == src.feature_names and len(x) == src.n_features
        assert all(type(v) is float for v in x.values())
        assert type(y) is int and y in src.classes
    assert {y for _, y in events} == set(src.classes)  # every class occurs
    expected = {"led": (24, 10), "sea": (3, 2), "rbf": (10, 5)}[name[:3]]
    assert (src.n_features, len(src.classes)) == expected


def test_first_events_are_rivers_generators_with_named_features():
    """Before the first drift every event comes from concept 0, a plain river generator."""
    seed = 4
    led = synth.LEDDrift(seed=derive_seed(seed, "led", 0), noise_percentage=0.1,
                         irrelevant_features=True, n_drift_features=1)
    sea = synth.SEA(variant=0, noise=0.1, seed=derive_seed(seed, "sea", 0))
    for name, gen in (("led_a", led), ("sea_g", sea)):
        ours = take(open_source(name, n=1_000, seed=seed), 100)  # drifts start near 250
        theirs = [({f"x{k}": float(v) for k, v in x.items()}, int(y))
                  for x, y in itertools.islice(gen, 100)]
        assert ours == theirs


@pytest.mark.parametrize("name", list(SYNTHETIC_STREAMS))
def test_deterministic_per_seed_and_reiterable(name):
    a = open_source(name, n=2_000, seed=7)
    first = take(a)
    assert take(a) == first  # a second iteration replays the stream
    assert take(open_source(name, n=2_000, seed=7)) == first
    other = take(open_source(name, n=2_000, seed=8))
    assert sum(x != x2 for (x, _), (x2, _) in zip(first, other)) > 1_900


def test_paper_schedule_at_one_million():
    for name in ("led_a", "sea_a"):
        src = open_source(name)  # default n; building the source generates nothing
        assert src.n == 1_000_000
        assert (src.drift_positions, src.drift_width) == ([250_000, 500_000, 750_000], 50)
    for name in ("led_g", "sea_g"):
        src = open_source(name, n=1_000_000)
        assert (src.drift_positions, src.drift_width) == ([250_000, 500_000, 750_000], 50_000)
    for name in ("rbf_m", "rbf_f"):
        src = open_source(name)
        assert src.drift_positions == [] and src.drift_width is None
        assert "incremental" in src.description
    # widths scale with n, abrupt at least 1
    assert open_source("sea_a", n=10_000).drift_width == 1
    assert open_source("sea_g", n=10_000).drift_width == 500


def sea_agreement(events, threshold):
    """Fraction of labels equal to the noise-free SEA label for ``threshold``."""
    x = np.array([[e[0]["x0"], e[0]["x1"]] for e in events])
    y = np.array([e[1] for e in events])
    return float(np.mean((x.sum(axis=1) > threshold) == y))


@pytest.mark.parametrize("name", ["sea_a", "sea_g"])
def test_sea_concepts_follow_functions_1_2_4_1(name):
    src = open_source(name, n=N, seed=3)
    events = take(src)
    margin = max(20, 2 * src.drift_width)  # past the transition: sigmoid(8) > 0.9996
    edges = [0] + src.drift_positions + [N]
    expected = [8.0, 9.0, 9.5, 8.0]  # SEA functions 1, 2, 4, 1
    for k, (a, b) in enumerate(zip(edges, edges[1:])):
        segment = events[a + (margin if k else 0): b - (margin if k < 3 else 0)]
        scores = {t: sea_agreement(segment, t) for t in SEA_THRESHOLDS.values()}
        best = max(scores, key=scores.get)
        assert best == expected[k], (k, scores)
        assert 0.87 < scores[best] < 0.93  # 10% label noise


def test_sea_abrupt_switch_is_sharp():
    """Right at each abrupt drift the event's concept flips within a few events."""
    src = open_source("sea_a", n=N, seed=3)
    concepts = list(src.concept_sequence())
    for k, p in enumerate(src.drift_positions):
        assert set(concepts[p - 1_000: p - 10]) == {k}
        assert set(concepts[p + 10: p + 1_000]) == {k + 1}
        assert set(concepts[p - 10: p + 10]) == {k, k + 1}


def test_gradual_transition_follows_the_sigmoid():
    src = open_source("sea_g", n=N, seed=3)
    concepts = np.array(list(src.concept_sequence()))
    w = src.drift_width
    for k, p in enumerate(src.drift_positions):
        def new_share(centre):
            window = concepts[centre - 150: centre + 150]
            return float(np.mean(window >= k + 1))
        assert new_share(p - w) < 0.06  # sigmoid(-4) = 0.018
        assert 0.38 < new_share(p) < 0.62  # sigmoid(0) = 0.5
        assert new_share(p + w) > 0.94  # sigmoid(4) = 0.982
        assert 0.05 < new_share(p - w // 2) < 0.25  # sigmoid(-2) = 0.12


@pytest.mark.parametrize("name", ["sea_a", "led_g"])
def test_events_are_the_concept_streams_interleaved_by_the_schedule(name):
    src = open_source(name, n=N, seed=11)
    streams = src.concept_streams()
    expected = [next(streams[c]) for c in src.concept_sequence()]
    assert take(src) == expected


LED_PATTERNS = synth.LED._ORIGINAL_INSTANCES  # seven-segment pattern per digit


def led_relevant_positions(events):
    """For each of the 7 segments, the input position that best matches it."""
    x = np.array([list(e[0].values()) for e in events])
    y = np.array([e[1] for e in events])
    patterns = np.array(LED_PATTERNS)[y]  # (events, 7)
    positions = []
    for segment in range(7):
        agreement = (x == patterns[:, [segment]]).mean(axis=0)
        best = int(np.argmax(agreement))
        assert agreement[best] > 0.87  # relevant bits flip with probability ~9%
        positions.append(best)
    assert len(set(positions)) == 7
    return positions


def test_led_concepts_move_1_3_5_7_attributes():
    src = open_source("led_a", n=N, seed=2)
    events = take(src)
    edges = [0] + src.drift_positions + [N]
    maps = []
    for k, (a, b) in enumerate(zip(edges, edges[1:])):
        positions = led_relevant_positions(events[a + 20: b - 20])
        moved = sum(p >= 7 for p in positions)  # segments now read from an "irrelevant" slot
        assert moved == [1, 3, 5, 7][k]
        maps.append(positions)
    assert all(m1 != m2 for m1, m2 in zip(maps, maps[1:]))
    # and the switch happens at the drift positions
    for k, p in enumerate(src.drift_positions):
        assert led_relevant_positions(events[p - 3_000: p - 10]) == maps[k]
        assert led_relevant_positions(events[p + 10: p + 3_000]) == maps[k + 1]


@pytest.mark.parametrize("name,speed", [("rbf_m", 1e-4), ("rbf_f", 1e-3)])
def test_rbf_equals_rivers_generator_event_for_event(name, speed):
    seed = 9
    ours = take(open_source(name, n=3_000, seed=seed))
    river_gen = synth.RandomRBFDrift(
        seed_model=derive_seed(seed, "rbf", "model"),
        seed_sample=derive_seed(seed, "rbf", "sample"),
        n_classes=5, n_features=10, n_centroids=50, change_speed=speed, n_drift_centroids=50,
    )
    theirs = [({f"x{i}": float(v) for i, v in x.items()}, y)
              for x, y in itertools.islice(river_gen, 3_000)]
    assert ours == theirs  # at 1e-3 centroids hit the walls: reflections are covered too


def test_mixer_has_no_overflow_for_sharp_late_drifts():
    """river's ConceptDriftStream overflows for position/width > ~177; ours must not."""
    mixer = DriftMixer([250_000, 500_000, 750_000], 50, seed=1)
    rng = np.random.default_rng(0)
    early = mixer.concepts(0, 1_000, rng)
    late = mixer.concepts(999_000, 1_000_000, rng)
    around = mixer.concepts(249_700, 250_300, rng)
    assert set(early.tolist()) == {0} and set(late.tolist()) == {3}
    # 200+ events (4 widths) from the centre the new concept has probability < 1e-7 / > 1 - 1e-7
    assert around[:100].max() == 0 and around[-100:].min() == 1
    assert 0 < around[250:350].mean() < 1


def test_rbf_has_no_concept_sequence_and_bad_arguments_are_rejected():
    with pytest.raises(ValueError, match="incrementally"):
        open_source("rbf_m", n=10).concept_sequence()
    with pytest.raises(ValueError, match="target"):
        open_source("sea_a", target="y")
    for bad in (0, -5, 2.5, True):
        with pytest.raises(ValueError, match="n must be"):
            open_source("sea_a", n=bad)
