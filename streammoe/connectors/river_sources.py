"""Any river dataset or synthetic generator as a source: ``river:<Name>``.

``river:Phishing`` names ``river.datasets.Phishing``; ``river:synth.Agrawal`` (or plain
``river:Agrawal`` when no dataset has that name) names a generator in
``river.datasets.synth``. Generators are infinite, so they yield ``n`` events (default
100,000); datasets yield their own length, cut to ``n`` if given. Every parameter of a
generator whose name starts with ``seed`` gets its own seed derived from the user's
``seed``, so a generator stream is reproducible bit for bit.

river downloads its larger datasets on first use. Sources never touch the network: a
dataset that is not already on disk is refused with a message saying where it would come
from and how to provide it.

river's own feature names are kept (integer keys become ``x<i>``), values become floats
(booleans count as 0/1). Values that are not numbers make their event a :class:`BadRow`
unless ``feature_types`` marks the feature categorical or ignored.
"""
from __future__ import annotations

import inspect
from typing import Any, Iterator, Mapping

from river import datasets
from river.datasets import synth
from river.datasets.base import Dataset, RemoteDataset

from .base import (
    BadRow,
    Event,
    FeatureTyper,
    RowError,
    Source,
    check_feature_types,
    derive_seed,
    short,
)

PREFIX = "river:"
DEFAULT_GENERATOR_N = 100_000


def river_names() -> list[str]:
    """All names usable after ``river:`` (datasets first, then ``synth.`` generators)."""

    def classes(module: Any) -> list[str]:
        return sorted(
            name for name in dir(module)
            if isinstance(getattr(module, name), type) and issubclass(getattr(module, name), Dataset)
            and not name.startswith("_")
        )

    return classes(datasets) + [f"synth.{name}" for name in classes(synth)]


def _resolve(name: str) -> tuple[type, bool]:
    """The dataset class for ``name`` and whether it is a synthetic generator."""
    generator = name.startswith("synth.")
    attr = name[len("synth."):] if generator else name
    cls = None
    if attr.isidentifier() and not attr.startswith("_"):
        cls = getattr(synth if generator else datasets, attr, None)
        if cls is None and not generator:  # "river:Agrawal" for "river:synth.Agrawal"
            cls, generator = getattr(synth, attr, None), True
    if not (isinstance(cls, type) and issubclass(cls, Dataset)):
        raise ValueError(
            f"unknown river source {PREFIX}{name}; choose one of: "
            + ", ".join(PREFIX + option for option in river_names())
        )
    return cls, generator


def _feature_key(key: Any) -> str:
    return key if isinstance(key, str) else f"x{key}"


class RiverSource(Source):
    """A river dataset or generator; see the module docstring."""

    def __init__(
        self,
        name: str,
        *,
        n: int | None = None,
        seed: int = 42,
        feature_types: Mapping[str, str] | None = None,
    ) -> None:
        cls, generator = _resolve(name)
        self._cls = cls
        self._kwargs: dict[str, int] = {}
        if generator:
            self._kwargs = {
                param: derive_param_seed(seed, cls.__name__, param)
                for param in inspect.signature(cls).parameters
                if param.startswith("seed")
            }
        self.kinds = check_feature_types(feature_types)
        dataset = self._make()
        if isinstance(dataset, RemoteDataset) and not dataset.is_downloaded:
            raise ValueError(
                f"{PREFIX}{name}: river's {cls.__name__} dataset is not on this machine "
                f"(expected at {dataset.path}); river would download it from {dataset.url}, "
                "and sources never use the network. Fetch it once where there is internet "
                f"(river.datasets.{cls.__name__}().download()) and copy {dataset.path.parent} "
                "into river's data home here, or replay a CSV/JSONL export instead."
            )
        if dataset.n_outputs not in (None, 1) or "multi-output" in str(dataset.task).lower():
            raise ValueError(
                f"{PREFIX}{name} is a {dataset.task} dataset; sources yield one label per event"
            )
        length = dataset.n_samples
        if length is None:
            length = n if n is not None else DEFAULT_GENERATOR_N
        elif n is not None:
            length = min(length, n)
        names = self._first_names(name, dataset)
        doc = (inspect.getdoc(cls) or cls.__name__).splitlines()[0].rstrip(".")
        super().__init__(
            name=f"{PREFIX}{name}",
            n=length,
            description=f"river {cls.__name__} ({doc}): {dataset.task}, "
            f"{len(names)} features, {length} events",
            n_features=len(names),
            feature_names=names,
        )

    def _make(self) -> Dataset:
        """A fresh dataset object: generators may keep state from a previous iteration."""
        return self._cls(**self._kwargs)

    def _first_names(self, name: str, dataset: Dataset) -> list[str]:
        """Feature names from the first event, which must be usable as typed.

        A first event that cannot be typed means the whole dataset is unsuitable as is
        (text features, for instance), so this fails at open time with the reason rather
        than skipping every event one by one.
        """
        first = next(iter(dataset), None)
        if first is None:
            return []
        typer = FeatureTyper(self.kinds, strings=False, bools=True)
        names, problems = [], []
        for key, value in first[0].items():
            feature = _feature_key(key)
            if isinstance(value, str) and feature not in self.kinds:
                self.kinds[feature] = "categorical"  # a text feature: categorical (nominal)
            try:
                names.extend(typer.type_row([(feature, value)]))
            except RowError as exc:
                problems.append((feature, str(exc)))
        if problems:
            raise ValueError(
                f"{PREFIX}{name}: its events have features that are not numbers "
                f"({'; '.join(reason for _, reason in problems)}); mark them with "
                f"feature_types={{{', '.join(repr(f) for f, _ in problems)}: "
                "'categorical' or 'ignore'}"
            )
        return names

    def _events(self, errors: list[BadRow]) -> Iterator[Event]:
        typer = FeatureTyper(self.kinds, strings=False, bools=True)
        for i, (raw, y) in enumerate(self._make(), 1):
            try:
                x = typer.type_row((_feature_key(k), v) for k, v in raw.items())
            except RowError as exc:
                errors.append(BadRow(i, str(exc), short(repr(raw))))
                continue
            yield x, y


def derive_param_seed(seed: int, generator: str, param: str) -> int:
    """A generator seed parameter's value: distinct per parameter, fixed by ``seed``.

    Kept below 2**31 because some river generators hand their seed to numpy, which only
    accepts 32-bit seeds in its legacy ``RandomState``.
    """
    return derive_seed(seed, "river", generator, param) % (2**31 - 1)
