"""CSV and JSON-lines files (optionally gzip-compressed) as replayable event sources.

Parsing rules (the same on every iteration):

* CSV needs a header row; leading blank lines before it are skipped. JSONL holds one JSON
  object per line: either flat ``{"feature": number, ..., "y": label}`` or, as written by
  the service, ``{"x": {"feature": number, ...}, "y": label, ...}`` (then keys other than
  ``x`` and the target, such as ``id`` or ``ts``, are ignored).
* Target: ``target=`` if given, else ``y``, ``class``, ``target`` or ``label`` (exact
  name first, then ignoring case), else (CSV only) the last column.
* Features are numbers (parsed to float; JSON ``true``/``false`` are 1/0) or categories
  (strings). A *text column* - one whose values in the file are mostly not numbers - is
  categorical: all its values are passed on as strings, and the model treats it as a nominal
  feature. ``feature_types`` may mark columns ``"categorical"`` (for numeric-looking codes:
  every value becomes its text), ``"numeric"`` (text in it is then a bad row) or ``"ignore"``
  (CSV checks the names against the header; JSONL cannot, so unknown names there are simply
  unused). An empty CSV cell or a JSON ``null`` means the feature is missing in that row: its
  key is omitted.
* Labels keep the file's type: JSON values as given; CSV text, except that a target column
  whose every value is an integer (e.g. ``0``/``1``) yields ints.
* Blank (empty or whitespace-only) lines are skipped silently. Every other row that cannot
  be used (wrong field count, text or NaN/inf in a numeric feature, missing target, invalid
  JSON, not an object, nested values, invalid UTF-8) is skipped and recorded as a
  :class:`BadRow` with its 1-based physical line number (a CSV row spanning several lines
  reports its first line) and a reason naming the column.

Opening a file reads it once in full (up to ``n`` good rows) to fix the label type and to
know ``n``, ``classes`` and the feature names before the first event; a file that cannot
be read at all (missing header, corrupt gzip) fails then, with a ``ValueError``.
"""
from __future__ import annotations

import csv
import gzip
import json
import math
import os
import re
import zlib
from abc import abstractmethod
from itertools import islice
from pathlib import Path
from typing import IO, Any, Iterator, Mapping

from .base import (
    BadRow,
    ErrorLog,
    Event,
    FeatureTyper,
    RowError,
    Source,
    check_feature_types,
    short,
    sort_classes,
    text_columns,
)

#: Suffixes recognised as files (each may also end in ``.gz``).
FILE_SUFFIXES = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl"}
#: Default target names, in order of preference.
TARGET_NAMES = ("y", "class", "target", "label")

_INT = re.compile(r"[+-]?\d+")
_BAD_UTF8 = re.compile("[\udc80-\udcff]")  # bytes that were not UTF-8 (surrogateescape)


def file_format(path: str | os.PathLike) -> str | None:
    """``"csv"`` / ``"jsonl"`` from the file name's suffix (``.gz`` allowed), else None."""
    name = os.fspath(path).lower()
    if name.endswith(".gz"):
        name = name[:-3]
    for suffix, fmt in FILE_SUFFIXES.items():
        if name.endswith(suffix):
            return fmt
    return None


def _invalid_utf8(text: str) -> bool:
    return not text.isascii() and _BAD_UTF8.search(text) is not None


def _default_target(names: list[str]) -> str | None:
    for wanted in TARGET_NAMES:
        if wanted in names:
            return wanted
    lowered = {name.lower(): name for name in reversed(names)}
    for wanted in TARGET_NAMES:
        if wanted in lowered:
            return lowered[wanted]
    return None


class FileSource(Source):
    """Common machinery: opening (gzip by suffix), the validating first pass, label typing."""

    format = ""

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        n: int | None = None,
        target: str | None = None,
        feature_types: Mapping[str, str] | None = None,
    ) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"no such file: {self.path}")
        self.target = target
        self.kinds = check_feature_types(feature_types)
        self._int_labels = False
        # The validating first pass. It is an ordinary iteration, so src.errors afterwards
        # lists the file's bad rows. It also probes for text columns: if it met text in a
        # column without a declared kind, the columns that are mostly text become categorical
        # and the pass runs again with the final kinds (text left in a numeric column is then
        # a bad row).
        self._probe: FeatureTyper | None = None
        try:
            self._prepare()  # format-specific: header / target detection
            if self.target in self.kinds:
                raise ValueError(f"feature_types names the target column {self.target!r}")
            self._probing = True
            errors, count, labels, seen = self._first_pass(n)
            self._probing = False
            if self._probe is not None and self._probe.text:
                self.kinds.update(dict.fromkeys(text_columns(self._probe), "categorical"))
                errors, count, labels, seen = self._first_pass(n)
        except (OSError, EOFError, zlib.error) as exc:
            raise ValueError(f"cannot read {self.path}: {exc}") from exc
        if self.format == "jsonl":  # CSV knows its columns from the header
            self._feature_names = list(seen)
        self._int_labels = self._labels_are_ints(labels)
        if self._int_labels:
            labels = {int(label) for label in labels}
        super().__init__(
            name=self.path.name,
            n=count,
            description="",
            n_features=len(self._feature_names),
            feature_names=list(self._feature_names),
            classes=sort_classes(labels),
            limit=n,
        )
        self.errors = errors
        n_classes = "" if self.classes is None else f", {len(self.classes)} classes"
        skipped = f", {errors.total} bad rows skipped" if errors.total else ""
        self.description = (
            f"{self.format.upper()} file {self.path}: {count} events, "
            f"{self.n_features} features, target {self.target!r}{n_classes}{skipped}"
        )

    def _first_pass(self, n: int | None) -> tuple[ErrorLog, int, set, dict]:
        errors = ErrorLog()
        count, labels, seen = 0, set(), {}
        for _, x, label in islice(self._parse(errors), n):
            count += 1
            labels.add(label)
            seen.update(dict.fromkeys(x))
        return errors, count, labels, seen

    def _typer(self, *, strings: bool, bools: bool) -> FeatureTyper:
        """This iteration's typer (the probing one during the first pass)."""
        typer = FeatureTyper(self.kinds, strings=strings, bools=bools, probe=getattr(self, "_probing", False))
        if typer._probe:
            self._probe = typer
        return typer

    def _open(self) -> IO[str]:
        # surrogateescape: undecodable bytes survive into the text, so the row holding
        # them becomes a BadRow instead of the whole iteration dying on a UnicodeError.
        if self.path.name.lower().endswith(".gz"):
            return gzip.open(self.path, "rt", encoding="utf-8-sig", errors="surrogateescape",
                             newline="")
        return open(self.path, encoding="utf-8-sig", errors="surrogateescape", newline="")

    def _labels_are_ints(self, labels: set) -> bool:
        return False

    def _events(self, errors: list[BadRow]) -> Iterator[Event]:
        for _, x, label in self._parse(errors):
            yield x, label

    @abstractmethod
    def _prepare(self) -> None:
        """Fix ``self.target`` and the feature layout; raise ValueError if impossible."""

    @abstractmethod
    def _parse(self, errors: list[BadRow]) -> Iterator[tuple[int, dict[str, float], Any]]:
        """Yield ``(line, x, raw label)`` for every good row, recording bad ones in ``errors``."""


class CsvSource(FileSource):
    format = "csv"

    def _prepare(self) -> None:
        with self._open() as f:
            first = next(self._rows(f), None)
        if first is None:
            raise ValueError(f"{self.path} is empty: a CSV source needs a header row")
        header = first[1]
        if header is None:
            raise ValueError(f"{self.path}: cannot parse the header row: {first[2]}")
        names = [name.strip() for name in header]
        if any(_invalid_utf8(name) for name in names):
            raise ValueError(f"{self.path}: the header row is not valid UTF-8")
        for i, name in enumerate(names):
            if not name:
                raise ValueError(f"{self.path}: header column {i + 1} has an empty name")
        seen: set[str] = set()
        for name in names:
            if name in seen:
                raise ValueError(f"{self.path}: header names column {name!r} twice")
            seen.add(name)
        if len(names) < 2:
            raise ValueError(
                f"{self.path}: the header has {len(names)} column; a CSV source needs a "
                "target column and at least one feature column"
            )
        if self.target is None:
            self.target = _default_target(names) or names[-1]
        elif self.target not in names:
            raise ValueError(
                f"{self.path}: target column {self.target!r} not in header {names}"
            )
        unknown = [name for name in self.kinds if name not in names]
        if unknown:
            raise ValueError(f"{self.path}: feature_types names unknown columns {unknown}")
        self._header = names
        self._target_index = names.index(self.target)
        self._columns = [
            (i, name) for i, name in enumerate(names)
            if i != self._target_index and self.kinds.get(name) != "ignore"
        ]
        self._feature_names = [name for _, name in self._columns]

    @staticmethod
    def _rows(f: IO[str]) -> Iterator[tuple[int, list[str] | None, str]]:
        """``(first line number, fields, raw text)`` per CSV row, blank lines skipped.

        ``fields`` is None when the csv module rejects the row (the error is in ``raw``'s
        place as the reason). Lines are fed through a recorder so each row's exact raw text
        and starting line are known even when a quoted field spans several lines.
        """
        consumed: list[str] = []
        count = 0

        def lines() -> Iterator[str]:
            nonlocal count
            for line in f:
                count += 1
                consumed.append(line)
                yield line

        reader = csv.reader(lines())
        while True:
            start = count + 1
            try:
                row = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                consumed.clear()
                yield start, None, f"CSV error: {exc}"
                continue
            raw = "".join(consumed)
            consumed.clear()
            if not raw.strip():
                continue
            yield start, row, raw

    def _parse(self, errors: list[BadRow]) -> Iterator[tuple[int, dict[str, float], Any]]:
        typer = self._typer(strings=True, bools=False)
        width = len(self._header)
        target, t_index, columns = self.target, self._target_index, self._columns
        with self._open() as f:
            rows = self._rows(f)
            first = next(rows, None)
            if first is None or [c.strip() for c in first[1] or []] != self._header:
                raise ValueError(f"{self.path} changed: its header is no longer {self._header}")
            for line, row, raw in rows:
                if row is None:
                    errors.append(BadRow(line, raw, ""))
                    continue
                try:
                    if _invalid_utf8(raw):
                        raise RowError("invalid UTF-8 bytes")
                    if len(row) != width:
                        spans = raw.count("\n") - raw.endswith("\n")
                        hint = f" (row spans {spans + 1} lines: unbalanced quote?)" if spans else ""
                        raise RowError(f"expected {width} fields, got {len(row)}{hint}")
                    label = row[t_index].strip()
                    if not label:
                        raise RowError(f"missing target {target!r}")
                    x = typer.type_row((name, row[i]) for i, name in columns)
                except RowError as exc:
                    errors.append(BadRow(line, str(exc), short(raw.rstrip("\r\n"))))
                    continue
                yield line, x, label

    def _labels_are_ints(self, labels: set) -> bool:
        return bool(labels) and all(_INT.fullmatch(label) for label in labels)

    def _events(self, errors: list[BadRow]) -> Iterator[Event]:
        if not self._int_labels:
            yield from super()._events(errors)
            return
        # The first pass saw only integer labels; a file edited since must still not crash.
        for line, x, label in self._parse(errors):
            if _INT.fullmatch(label):
                yield x, int(label)
            else:
                errors.append(BadRow(line, f"target {self.target!r}: {label!r} is not an "
                                           "integer like the rest of the column (file changed?)",
                                     short(label)))


class JsonlSource(FileSource):
    format = "jsonl"

    def _prepare(self) -> None:
        first = None
        with self._open() as f:
            for line in f:
                try:
                    obj = json.loads(line) if line.strip() else None
                except (ValueError, RecursionError):
                    continue
                if isinstance(obj, dict):
                    first = obj
                    break
        self._event_form = first is not None and isinstance(first.get("x"), dict)
        keys = list(first) if first is not None else []
        if self.target is None:
            if first is None:
                raise ValueError(
                    f"{self.path} holds no JSON object line, so no target can be detected; "
                    "pass target= (an empty source)"
                )
            self.target = _default_target(keys)
            if self.target is None:
                raise ValueError(
                    f"{self.path}: no target key found (looked for {', '.join(TARGET_NAMES)} "
                    f"in the first object's keys {keys}); pass target="
                )
        self._feature_names: list[str] = []

    def _parse(self, errors: list[BadRow]) -> Iterator[tuple[int, dict[str, float], Any]]:
        typer = self._typer(strings=False, bools=True)
        target, event_form = self.target, self._event_form
        with self._open() as f:
            for line_no, line in enumerate(f, 1):
                text = line.strip()
                if not text:
                    continue
                try:
                    if _invalid_utf8(text):
                        raise RowError("invalid UTF-8 bytes")
                    try:
                        obj = json.loads(text)
                    except json.JSONDecodeError as exc:
                        raise RowError(f"not JSON: {exc.msg} at column {exc.colno}") from None
                    except (ValueError, RecursionError) as exc:
                        raise RowError(f"not usable JSON: {exc}") from None
                    if not isinstance(obj, dict):
                        raise RowError(f"not a JSON object (got {type(obj).__name__})")
                    label = obj.get(target)
                    if label is None:
                        raise RowError(f"missing target {target!r}")
                    if isinstance(label, (dict, list)):
                        raise RowError(f"target {target!r}: nested value, expected a scalar")
                    if isinstance(label, float) and not math.isfinite(label):
                        raise RowError(f"target {target!r}: non-finite value {label!r}")
                    if event_form:
                        features = obj.get("x")
                        if not isinstance(features, dict):
                            raise RowError('"x" is not a JSON object of features')
                        items = features.items()
                    else:
                        items = ((k, v) for k, v in obj.items() if k != target)
                    x = typer.type_row(items)
                except RowError as exc:
                    errors.append(BadRow(line_no, str(exc), short(text)))
                    continue
                yield line_no, x, label
