"""What every event source shares: the ``Source`` contract, ``BadRow`` and value typing.

A source is a *re-iterable* description of a stream, not a one-shot iterator: benchmarks
replay the same stream for several models, so each ``iter(source)`` must restart the same
deterministic sequence of ``(x, y)`` events. Sources never crash on bad input; they skip
the offending row and record a :class:`BadRow` in ``source.errors`` so nothing disappears
silently.
"""
from __future__ import annotations

import hashlib
import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from itertools import islice
from typing import Any, Iterator, Mapping

Event = tuple[dict[str, float], Any]

#: ``raw`` text kept in a BadRow is cut to this many characters so a file full of huge
#: bad lines cannot exhaust memory; the line number still locates the full row.
RAW_LIMIT = 500

#: Feature kinds accepted by ``feature_types``. "numeric" parses numbers (the default),
#: "categorical" passes each value on as a string (a category of a nominal feature, which the
#: model splits on natively; numbers become their text, so numeric-looking codes such as zip
#: codes can be marked categorical), "ignore" drops it.
FEATURE_KINDS = ("numeric", "categorical", "ignore")


@dataclass(frozen=True)
class BadRow:
    """One skipped input row: where it was (1-based line / event number) and why."""

    line: int
    reason: str
    raw: str


class ErrorLog(list):
    """The ``errors`` list of one iteration: keeps the first ``limit`` bad rows, counts all.

    A file whose every row is bad (a date column nobody marked ``ignore``) would otherwise
    hold millions of BadRows in memory; ``total`` still counts every skipped row.
    """

    limit = 10_000

    def __init__(self) -> None:
        super().__init__()
        self.total = 0

    def append(self, bad: BadRow) -> None:
        self.total += 1
        if len(self) < self.limit:
            super().append(bad)


class RowError(ValueError):
    """Raised inside a parser for one bad row; turned into a :class:`BadRow` by the caller."""


def derive_seed(seed: int, *salt: object) -> int:
    """A 63-bit seed derived from ``seed`` and a salt, stable across runs and platforms.

    Each concept / component of a stream gets its own seed so that components are
    independent yet the whole stream is a pure function of the user's ``seed``. Python's
    ``hash`` is salted per process, so a cryptographic digest of the repr is used instead.
    """
    digest = hashlib.blake2b(repr((int(seed),) + salt).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") >> 1


def check_n(n: int | None) -> int | None:
    """Validate the user's ``n`` (event count limit)."""
    if n is None:
        return None
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive integer or None, got {n!r}")
    return n


def check_feature_types(feature_types: Mapping[str, str] | None) -> dict[str, str]:
    """Validate a ``{feature: kind}`` mapping; kinds are listed in ``FEATURE_KINDS``."""
    if feature_types is None:
        return {}
    if not isinstance(feature_types, Mapping):
        raise ValueError(
            f"feature_types must be a mapping {{feature: kind}} with kinds {FEATURE_KINDS}, "
            f"got {type(feature_types).__name__}"
        )
    out: dict[str, str] = {}
    for name, kind in feature_types.items():
        if kind not in FEATURE_KINDS:
            raise ValueError(
                f"feature_types[{name!r}] = {kind!r} is not one of {', '.join(FEATURE_KINDS)}"
            )
        out[str(name)] = kind
    return out


def short(raw: str) -> str:
    """Cut raw row text to ``RAW_LIMIT`` characters (marking the cut)."""
    return raw if len(raw) <= RAW_LIMIT else raw[:RAW_LIMIT] + "..."


def to_float(column: str, value: Any, *, strings: bool) -> float:
    """Type one feature value as a finite float, or raise :class:`RowError` naming the column.

    ``strings=True`` (CSV) parses text; otherwise (JSON, river) the value must already be a
    number. Booleans count as numbers only when they come from Python objects (river), where
    they are genuinely 0/1 flags; a JSON ``true`` is rejected like the CSV text "true".
    """
    if isinstance(value, str):
        if not strings:
            raise RowError(f"column {column!r}: expected a number, got text {short(value)!r}")
        try:
            number = float(value)
        except ValueError:
            raise RowError(f"column {column!r}: not a number: {short(value)!r}") from None
    elif isinstance(value, (int, float)):
        try:
            number = float(value)
        except OverflowError:
            raise RowError(f"column {column!r}: number too large: {short(str(value))}") from None
    else:
        try:  # numpy scalars and similar number-like objects from river datasets
            number = float(value)
        except (TypeError, ValueError):
            raise RowError(
                f"column {column!r}: expected a number, got {type(value).__name__} "
                f"{short(repr(value))}"
            ) from None
    if not math.isfinite(number):
        raise RowError(f"column {column!r}: non-finite value {short(str(value))!r}")
    return number


class FeatureTyper:
    """Turns one row's raw feature values into ``dict[str, float | str]`` per ``feature_types``.

    ``probe=True`` (a file's first pass) lets text through in columns without a declared kind
    and counts, per column, text values and numbers (``text``, ``numbers``) so that the source
    can declare its text columns categorical (see :func:`text_columns`).
    """

    def __init__(self, kinds: Mapping[str, str], *, strings: bool, bools: bool, probe: bool = False) -> None:
        self._kinds = kinds
        self._strings = strings
        self._bools = bools
        self._probe = probe
        self.text: dict[str, int] = {}
        self.numbers: dict[str, int] = {}

    def _probe_value(self, name: str, value: Any) -> Any:
        """A value of an undeclared column during the probe: text stays text (counted)."""
        if isinstance(value, str):
            try:
                float(value) if self._strings else None
            except ValueError:
                pass
            else:
                if self._strings:
                    self.numbers[name] = self.numbers.get(name, 0) + 1
                    return to_float(name, value, strings=True)
            self.text[name] = self.text.get(name, 0) + 1
            return value
        self.numbers[name] = self.numbers.get(name, 0) + 1
        return None

    def type_row(self, items: Iterator[tuple[str, Any]] | Any) -> dict[str, float | str]:
        """``items``: iterable of ``(name, value)``; ``None`` (and, for text input, an
        empty cell) means the feature is missing in this row: its key is omitted."""
        x: dict[str, float | str] = {}
        for name, value in items:
            declared = self._kinds.get(name)
            kind = declared or "numeric"
            if kind == "ignore" or value is None:
                continue
            if isinstance(value, str) and self._strings:
                value = value.strip()
                if not value:  # an empty CSV cell: the feature is missing in this row
                    continue
            if kind == "categorical":
                if isinstance(value, (dict, list)):
                    raise RowError(f"column {name!r}: nested value {short(repr(value))}")
                if isinstance(value, float) and not math.isfinite(value):
                    raise RowError(f"column {name!r}: non-finite value {value!r}")
                x[name] = value if isinstance(value, str) else str(value)
                continue
            if self._probe and declared is None:
                probed = self._probe_value(name, value)
                if probed is not None:
                    x[name] = probed
                    continue
            if isinstance(value, bool) and not self._bools:
                raise RowError(f"column {name!r}: expected a number, got boolean {value!r}")
            if isinstance(value, (dict, list)):
                raise RowError(f"column {name!r}: nested value {short(repr(value))}")
            x[name] = to_float(name, value, strings=self._strings)
        return x


def text_columns(typer: FeatureTyper) -> list[str]:
    """Columns of a probed pass that are text: more text values than numbers.  Their numbers
    are categories too (text of a mostly numeric column stays a bad row)."""
    return [name for name, n in typer.text.items() if n > typer.numbers.get(name, 0)]


def sort_classes(labels: set, limit: int = 10_000) -> list | None:
    """Sorted distinct labels, or None when there are more than ``limit`` (not a class set).

    Mixed label types (possible in JSONL) are ordered by type name first, so sorting never
    fails on e.g. ``{1, "a"}``.
    """
    if len(labels) > limit:
        return None
    try:
        return sorted(labels)
    except TypeError:
        return sorted(labels, key=lambda v: (type(v).__name__, repr(v)))


class Source(ABC):
    """A re-iterable, deterministic stream of ``(x, y)`` events.

    Attributes
    ----------
    name: short identifier (stream name, file name, ``river:<Name>``).
    n: number of events one iteration yields, when known.
    drift_positions: centre positions (0-based event index) of known concept drifts.
    drift_width: width of those drifts in events (None when there are none / unknown).
    n_features: number of features, when known.
    feature_names: the feature names in a stable order, when known (useful for fixed
        array layouts; an event may omit features that are missing in that row).
    classes: the label set, when known.
    description: one readable line about what the stream is.
    errors: bad rows seen so far in the latest iteration (a fresh list per iteration; it
        keeps the first 10,000 and counts all of them in ``errors.total``).
    """

    def __init__(
        self,
        *,
        name: str,
        n: int | None,
        description: str,
        drift_positions: list[int] | None = None,
        drift_width: int | None = None,
        n_features: int | None = None,
        feature_names: list[str] | None = None,
        classes: list | None = None,
        limit: int | None | str = "n",
    ) -> None:
        """``limit``: where an iteration stops; by default after ``n`` events. Sources that
        know ``n`` by having read everything (files) pass the user's limit instead, so an
        iteration still reaches, and reports, bad rows after the last good one."""
        self._limit = n if limit == "n" else limit
        self.name = name
        self.n = n
        self.description = description
        self.drift_positions = list(drift_positions or [])
        self.drift_width = drift_width
        self.n_features = n_features
        self.feature_names = feature_names
        self.classes = classes
        self.errors: list[BadRow] = ErrorLog()

    def __iter__(self) -> Iterator[Event]:
        # Not a generator function: the fresh error list must be in place as soon as
        # iter() is called, not only after the first next().
        errors = ErrorLog()
        self.errors = errors
        events = self._events(errors)
        return events if self._limit is None else islice(events, self._limit)

    @abstractmethod
    def _events(self, errors: list[BadRow]) -> Iterator[Event]:
        """Yield the full stream from its start, appending skipped rows to ``errors``."""

    def __repr__(self) -> str:
        name, n = getattr(self, "name", "?"), getattr(self, "n", None)  # safe mid-__init__
        return f"<{type(self).__name__} {name!r} n={n}: {getattr(self, 'description', '')}>"
