"""The six synthetic drift streams of the DriftMoE paper, built on river's generators.

Schedule (as in the paper's benchmarks): three drifts centred at 25%, 50% and 75% of ``n``;
abrupt streams use a transition width of 50 events per million, gradual ones 50,000 per
million, both scaled linearly with ``n`` (abrupt width at least 1). RBF streams drift
incrementally (centroids move every event), so they list no drift positions.

Why not ``river.datasets.synth.ConceptDriftStream``: it evaluates ``exp(-4 (t - p) / w)``
for every event, which overflows (``OverflowError``) as soon as ``p / w`` exceeds ~177 —
i.e. for the abrupt streams at any realistic size (250,000 / 50 = 5,000). The
:class:`DriftMixer` below implements the same sigmoid transition law
``P(new concept at event t) = 1 / (1 + exp(-4 (t - p) / w))`` with nested drifts resolved
newest-first, like nesting ConceptDriftStream with the older stream on the inside, and
draws its schedule in vectorised blocks, which keeps 1M-event runs fast.

Every concept gets its own seed derived from the user's ``seed`` (so concepts differ and
the recurring SEA concept does not replay the first concept's inputs); abrupt and gradual
variants share their concepts, so ``led_a`` and ``led_g`` differ only in the transition.
"""
from __future__ import annotations

import random
from typing import Iterator

import numpy as np
from river.datasets import synth

from .base import BadRow, Event, Source, derive_seed

DEFAULT_N = 1_000_000
#: Transition widths per million events (scaled linearly with n).
ABRUPT_WIDTH_PER_M = 50
GRADUAL_WIDTH_PER_M = 50_000
#: Label noise of the LED and SEA concepts (MOA's default 10%, which the paper's
#: CapyMOA streams use).
NOISE = 0.10
#: LED concepts: number of drifting attributes per concept, one concept per segment.
LED_DRIFT_FEATURES = (1, 3, 5, 7)
#: SEA concepts: functions 1 -> 2 -> 4 -> 1 in the paper's (1-based) numbering; river's
#: ``variant`` is 0-based (thresholds 8, 9, 7, 9.5 for variants 0..3).
SEA_VARIANTS = (0, 1, 3, 0)
SEA_THRESHOLDS = {0: 8.0, 1: 9.0, 2: 7.0, 3: 9.5}
RBF_SPEEDS = {"rbf_m": 1e-4, "rbf_f": 1e-3}
RBF_CLASSES, RBF_FEATURES, RBF_CENTROIDS = 5, 10, 50

SYNTHETIC_STREAMS: dict[str, str] = {
    "led_a": "LED digits, 24 binary features (17 irrelevant), 10 classes, 10% noise; "
    "abrupt drifts (1->3->5->7 drifting attributes) at 25/50/75% of n",
    "led_g": "LED digits, 24 binary features (17 irrelevant), 10 classes, 10% noise; "
    "gradual drifts (1->3->5->7 drifting attributes, width 5% of n) at 25/50/75% of n",
    "sea_a": "SEA, 3 features, 2 classes, 10% noise; abrupt drifts between functions "
    "1->2->4->1 (thresholds 8, 9, 9.5, 8) at 25/50/75% of n",
    "sea_g": "SEA, 3 features, 2 classes, 10% noise; gradual drifts (width 5% of n) between "
    "functions 1->2->4->1 (thresholds 8, 9, 9.5, 8) at 25/50/75% of n",
    "rbf_m": "Random RBF, 10 features, 5 classes, 50 centroids all drifting at speed 1e-4: "
    "moderate incremental drift (no discrete drift positions)",
    "rbf_f": "Random RBF, 10 features, 5 classes, 50 centroids all drifting at speed 1e-3: "
    "fast incremental drift (no discrete drift positions)",
}


def drift_schedule(n: int, *, gradual: bool) -> tuple[list[int], int]:
    """Drift centres (0-based event index) and width for a stream of ``n`` events."""
    per_million = GRADUAL_WIDTH_PER_M if gradual else ABRUPT_WIDTH_PER_M
    width = max(1, round(per_million * n / 1_000_000))
    return [n * k // 4 for k in (1, 2, 3)], width


class DriftMixer:
    """Interleaves concept streams along a sigmoid drift schedule.

    At 0-based event ``t`` drift ``k`` (centre ``p_k``, width ``w``) has taken over with
    probability ``1 / (1 + exp(-4 (t - p_k) / w))``; drifts are tried newest first and the
    first one that has taken over picks its concept, else the first concept is used. Each
    concept stream only advances when it is picked, as in river's ConceptDriftStream.

    The schedule draws its own uniforms (one per drift per event, from a numpy generator
    seeded by ``seed``) in blocks, so choosing the concept costs a few nanoseconds per event
    and is independent of how the concept streams use their own random numbers.
    """

    BLOCK = 1 << 16

    def __init__(self, positions: list[int], width: int, seed: int) -> None:
        self.positions = list(positions)
        self.width = width
        self.seed = seed

    def concepts(self, start: int, stop: int, rng: np.random.Generator) -> np.ndarray:
        """Concept index of each event in ``[start, stop)``; consumes ``rng`` in order."""
        t = np.arange(start, stop, dtype=np.float64)
        concept = np.zeros(stop - start, dtype=np.int64)
        decided = np.zeros(stop - start, dtype=bool)
        for k in range(len(self.positions) - 1, -1, -1):
            # Clipping keeps exp finite and changes nothing: 1/(1+e^700) ~ 1e-304 is below
            # the uniforms' resolution (multiples of 2**-53), so it is never drawn either way.
            exponent = np.minimum(-4.0 * (t - self.positions[k]) / self.width, 700.0)
            taken = (rng.random(stop - start) < 1.0 / (1.0 + np.exp(exponent))) & ~decided
            concept[taken] = k + 1
            decided |= taken
        return concept

    def concept_sequence(self, n: int) -> Iterator[int]:
        """The concept index of every event, in order (the ground truth of the schedule)."""
        rng = np.random.default_rng(self.seed)
        for start in range(0, n, self.BLOCK):
            yield from self.concepts(start, min(n, start + self.BLOCK), rng).tolist()

    def mix(self, n: int, streams: list[Iterator[Event]]) -> Iterator[Event]:
        """Yield ``n`` events, each taken from the concept stream the schedule picks."""
        for concept in self.concept_sequence(n):
            yield next(streams[concept])


def _named(stream: Iterator, n_features: int) -> Iterator[Event]:
    """river yields ``{0: v0, 1: v1, ...}`` (insertion order = index order for these
    generators); give features stable string names, float values and int labels (SEA's
    bool labels become 0/1 so that all six streams label with ints)."""
    names = [f"x{i}" for i in range(n_features)]
    for x, y in stream:
        yield dict(zip(names, map(float, x.values()))), int(y)


def _rbf_stream(seed: int, change_speed: float) -> Iterator[tuple[dict, int]]:
    """river's RandomRBFDrift, event for event, with the centroid motion vectorised.

    river moves 50 x 10 centroid coordinates in pure Python on every event, which makes
    a 1M-event stream take about a minute. Here the same additions and reflections run on
    one numpy array, element for element in the same IEEE order, and river's own sampler
    reads the centroid centres as rows of that array: the output is identical (a test
    checks it) at a fraction of the cost.
    """
    gen = synth.RandomRBFDrift(
        seed_model=derive_seed(seed, "rbf", "model"),
        seed_sample=derive_seed(seed, "rbf", "sample"),
        n_classes=RBF_CLASSES,
        n_features=RBF_FEATURES,
        n_centroids=RBF_CENTROIDS,
        change_speed=change_speed,
        n_drift_centroids=RBF_CENTROIDS,
    )
    try:
        gen._generate_centroids()
        sample = gen._generate_sample
    except AttributeError:  # a river version without these internals: the slow, same path
        yield from gen
        return
    centres = np.array([c.centre for c in gen.centroids], dtype=np.float64)
    for row, centroid in zip(centres, gen.centroids):
        centroid.centre = row  # river reads centre[i]; a numpy row view serves the same values
    moving = centres[: gen.n_drift_centroids]
    speed = np.array(gen.centroid_speed, dtype=np.float64)
    rng = random.Random(gen.seed_sample)
    while True:
        moving += speed * change_speed
        high = moving > 1.0
        low = moving < 0.0
        if high.any() or low.any():
            moving[high] = 1.0
            moving[low] = 0.0
            bounced = high | low
            speed[bounced] = -speed[bounced]
        yield sample(rng)


class SyntheticSource(Source):
    """One of the six paper streams; see ``SYNTHETIC_STREAMS``."""

    def __init__(self, name: str, *, n: int | None = None, seed: int = 42) -> None:
        if name not in SYNTHETIC_STREAMS:
            raise ValueError(
                f"unknown synthetic stream {name!r}; choose one of {', '.join(SYNTHETIC_STREAMS)}"
            )
        n = DEFAULT_N if n is None else n
        family = name[:3]
        if family == "rbf":
            positions, width = [], None
            n_features, classes = RBF_FEATURES, list(range(RBF_CLASSES))
        else:
            positions, width = drift_schedule(n, gradual=name.endswith("_g"))
            n_features, classes = (24, list(range(10))) if family == "led" else (3, [0, 1])
        description = SYNTHETIC_STREAMS[name]
        if width is not None:
            description += f" (drifts at {positions}, width {width})"
        super().__init__(
            name=name,
            n=n,
            description=description,
            drift_positions=positions,
            drift_width=width,
            n_features=n_features,
            feature_names=[f"x{i}" for i in range(n_features)],
            classes=classes,
        )
        self.seed = int(seed)
        self.family = family

    def concept_streams(self) -> list[Iterator[Event]]:
        """Fresh iterators over each concept, in schedule order."""
        seed = self.seed
        if self.family == "led":
            return [
                _named(
                    iter(
                        synth.LEDDrift(
                            seed=derive_seed(seed, "led", k),
                            noise_percentage=NOISE,
                            irrelevant_features=True,
                            n_drift_features=d,
                        )
                    ),
                    24,
                )
                for k, d in enumerate(LED_DRIFT_FEATURES)
            ]
        return [
            _named(iter(synth.SEA(variant=v, noise=NOISE, seed=derive_seed(seed, "sea", k))), 3)
            for k, v in enumerate(SEA_VARIANTS)
        ]

    def concept_sequence(self) -> Iterator[int]:
        """The concept index (0-3) of every event: the ground truth of the drift schedule.

        Concept ``k`` is the ``k``-th entry of ``concept_streams()``. RBF streams have no
        discrete concepts (their centroids move every event), so they raise ValueError.
        """
        if self.family == "rbf":
            raise ValueError(f"{self.name} drifts incrementally; it has no discrete concepts")
        return self._mixer().concept_sequence(self.n if self.n is not None else DEFAULT_N)

    def _mixer(self) -> DriftMixer:
        return DriftMixer(self.drift_positions, self.drift_width or 1,
                          derive_seed(self.seed, self.family, "schedule"))

    def _events(self, errors: list[BadRow]) -> Iterator[Event]:
        n = self.n if self.n is not None else DEFAULT_N
        if self.family == "rbf":
            return _named(_rbf_stream(self.seed, RBF_SPEEDS[self.name]), RBF_FEATURES)
        return self._mixer().mix(n, self.concept_streams())
