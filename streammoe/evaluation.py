"""Prequential (test-then-train) evaluation of stream classifiers, side by side on the same events.

Why this module exists: every claim the project makes ("DriftMoE recovers faster than ARF after an
abrupt drift", "the fast engine is as accurate as the plain one") is a number produced here, so the
metrics follow the stream-learning literature exactly and are computed incrementally, one event at a
time, without ever looking ahead.

Metric definitions (Bifet et al. 2013 "Pitfalls in benchmarking data stream classification";
Zliobaite, Bifet, Read, Pfahringer, Holmes 2015 "Evaluation methods and decision theory for
classification of streaming data with temporal dependence"):

* accuracy ``p0`` = correct predictions / events.
* Cohen's kappa ``(p0 - pe) / (1 - pe)`` with ``pe = sum_c P(true = c) * P(pred = c)``, the agreement
  expected from a classifier that guesses with the model's own class frequencies.
* kappa-M ``(p0 - pm) / (1 - pm)`` where ``pm`` is the prequential accuracy of the majority-class
  classifier: before each label is revealed it predicts the most frequent label seen so far.
* kappa-T ``(p0 - pt) / (1 - pt)`` where ``pt`` is the prequential accuracy of the no-change
  (persistent) classifier: it predicts the previous label of the stream.
* balanced accuracy = the mean over the classes seen of each class's recall (correct / events of
  that class): a model that ignores a rare class loses as much as on a frequent one.

Conventions, stated because they move numbers:

* A model that has no prediction yet (``predict_one`` returns ``None``, typically on the very first
  event) is scored as wrong.  The two baselines are scored the same way on the first event.
* When a kappa's denominator is zero (the reference is perfect) the kappa is reported as ``0.0``,
  like river's ``CohenKappa``.
* Windowed metrics use tumbling windows of ``window`` events.  Inside a window, kappa-M and kappa-T
  compare the model with the *same* prequential baselines (majority over all labels seen so far,
  previous label) restricted to that window's events, so window and run figures agree in meaning.
* If a model raises ``ValueError`` on an event (bad feature value), the event is recorded in
  ``PrequentialResult.event_errors`` with the model's message and scored as a wrong prediction for
  that model; evaluation of the other models and later events continues.
"""
from __future__ import annotations

import csv
import json
import math
import platform
import time
from collections import Counter
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

__all__ = [
    "Score",
    "StreamBaselines",
    "score_sequence",
    "default_window",
    "recovery_after_drifts",
    "ProgressInfo",
    "PrequentialResult",
    "Prequential",
    "versions",
    "to_jsonable",
    "write_summary_json",
    "write_windowed_csv",
    "write_errors_csv",
    "save_run",
    "run_baselines",
]

#: key under which a missing prediction is counted in the prediction marginals; never equals a label
NO_PREDICTION = None


def _kappa(p0: float, reference: float) -> float:
    """``(p0 - reference) / (1 - reference)``, 0.0 when the reference is perfect."""
    denom = 1.0 - reference
    if denom <= 0.0:
        return 0.0
    return (p0 - reference) / denom


class StreamBaselines:
    """The two label-only reference classifiers kappa-M and kappa-T are measured against.

    Both are run prequentially on the labels alone, once per event, and shared by every model being
    evaluated (all models see the same events, so they share the same references).
    """

    __slots__ = ("_counts", "_majority", "_majority_count", "_previous", "_seen")

    def __init__(self) -> None:
        self._counts: Counter = Counter()
        self._majority: Any = None
        self._majority_count = 0
        self._previous: Any = None
        self._seen = False

    def step(self, y: Any) -> tuple[bool, bool]:
        """Score both baselines on label ``y`` and then let them learn it.

        Returns ``(majority_was_right, no_change_was_right)``.  On the first event neither has a
        prediction, so both are wrong.  Ties for the majority keep the label that reached the top
        count first, which makes the baseline deterministic.
        """
        majority_hit = self._seen and self._majority == y
        no_change_hit = self._seen and self._previous == y
        count = self._counts[y] + 1
        self._counts[y] = count
        if count > self._majority_count:
            self._majority, self._majority_count = y, count
        self._previous = y
        self._seen = True
        return majority_hit, no_change_hit


class Score:
    """Incremental accuracy, Cohen's kappa, kappa-M and kappa-T over a span of events.

    Holds only counts (label marginals of truth and prediction, hits of the model and of the two
    baselines), so ``update`` is O(1) and the figures can be read at any moment.
    """

    __slots__ = ("n", "correct", "majority_correct", "no_change_correct", "true_counts", "pred_counts",
                 "class_correct")

    def __init__(self) -> None:
        self.n = 0
        self.correct = 0
        self.class_correct: Counter = Counter()
        self.majority_correct = 0
        self.no_change_correct = 0
        self.true_counts: Counter = Counter()
        self.pred_counts: Counter = Counter()

    def update(self, y_true: Any, y_pred: Any, majority_hit: bool, no_change_hit: bool) -> None:
        self.n += 1
        if y_pred is not NO_PREDICTION and y_pred == y_true:
            self.correct += 1
            self.class_correct[y_true] += 1
        self.majority_correct += majority_hit
        self.no_change_correct += no_change_hit
        self.true_counts[y_true] += 1
        self.pred_counts[y_pred] += 1

    @property
    def accuracy(self) -> float:
        return self.correct / self.n if self.n else 0.0

    @property
    def majority_accuracy(self) -> float:
        return self.majority_correct / self.n if self.n else 0.0

    @property
    def no_change_accuracy(self) -> float:
        return self.no_change_correct / self.n if self.n else 0.0

    @property
    def balanced_accuracy(self) -> float:
        """Mean per-class recall over the classes seen (0.0 before any event)."""
        if not self.n:
            return 0.0
        return sum(self.class_correct.get(c, 0) / k for c, k in self.true_counts.items()) / len(self.true_counts)

    @property
    def kappa(self) -> float:
        if not self.n:
            return 0.0
        n2 = float(self.n) * self.n
        pe = sum(count * self.pred_counts.get(label, 0) for label, count in self.true_counts.items()) / n2
        return _kappa(self.accuracy, pe)

    @property
    def kappa_m(self) -> float:
        return _kappa(self.accuracy, self.majority_accuracy) if self.n else 0.0

    @property
    def kappa_t(self) -> float:
        return _kappa(self.accuracy, self.no_change_accuracy) if self.n else 0.0

    def as_dict(self) -> dict[str, float | int]:
        return {"n": self.n, "accuracy": self.accuracy, "kappa": self.kappa, "kappa_m": self.kappa_m,
                "kappa_t": self.kappa_t}


def score_sequence(y_true: Sequence[Any], y_pred: Sequence[Any]) -> Score:
    """Score a finished sequence of predictions exactly as the runner would, event by event."""
    if len(y_true) != len(y_pred):
        raise ValueError(f"y_true has {len(y_true)} labels but y_pred has {len(y_pred)} predictions")
    baselines, score = StreamBaselines(), Score()
    for yt, yp in zip(y_true, y_pred):
        score.update(yt, yp, *baselines.step(yt))
    return score


def default_window(n: int | None) -> int:
    """n/100 clamped to [500, 10000]: ~100 points per curve without noisy tiny windows.

    Streams of unknown length get 1000.
    """
    if not n or n <= 0:
        return 1000
    return int(min(10_000, max(500, n // 100)))


def recovery_after_drifts(
    windows: Sequence[Mapping[str, Any]],
    drift_positions: Sequence[int],
    drift_width: int = 0,
    tolerance: float = 0.01,
) -> list[dict[str, Any]]:
    """How long one model needed to get back to its pre-drift windowed accuracy after each drift.

    ``windows`` are this model's window rows in stream order (keys ``window_start``, ``window_end``,
    ``accuracy``).  The pre-drift level is the accuracy of the last window that ends before the drift
    begins (``position - drift_width // 2``: a gradual drift is centred on its position).  The model
    has recovered at the end of the first window that starts at or after the drift position and whose
    accuracy is at least ``pre - tolerance``; the search stops at the next drift (a recovery after
    that belongs to the next drift).  ``events_to_recover`` is counted from the drift position, so its
    resolution is one window.  ``None`` when there is no window before the drift or no recovery.
    """
    ordered = sorted(int(p) for p in drift_positions)
    out: list[dict[str, Any]] = []
    for i, position in enumerate(ordered):
        begin = position - max(0, int(drift_width)) // 2
        before = [w for w in windows if w["window_end"] <= begin]
        pre = before[-1]["accuracy"] if before else None
        limit = ordered[i + 1] if i + 1 < len(ordered) else math.inf
        recovered_at = None
        if pre is not None:
            for w in windows:
                if w["window_start"] < position:
                    continue
                if w["window_end"] > limit:
                    break
                if w["accuracy"] >= pre - tolerance:
                    recovered_at = int(w["window_end"])
                    break
        out.append({
            "drift_position": position,
            "pre_drift_accuracy": pre,
            "recovered_at": recovered_at,
            "events_to_recover": None if recovered_at is None else recovered_at - position,
        })
    return out


@dataclass(frozen=True)
class ProgressInfo:
    """What a progress display needs; handed to the ``progress`` callback every few events."""

    events: int
    total: int | None
    elapsed_s: float
    events_per_s: float
    accuracy: dict[str, float]
    done: bool = False


@dataclass
class PrequentialResult:
    """Everything a run produced: the summary, the window rows and the errors seen on the way."""

    summary: dict[str, Any]
    windows: list[dict[str, Any]]
    bad_rows: list[Any] = field(default_factory=list)
    event_errors: list[dict[str, Any]] = field(default_factory=list)

    def windows_of(self, model: str) -> list[dict[str, Any]]:
        return [w for w in self.windows if w["model"] == model]


class _Track:
    """Per-model bookkeeping of one run: scores, time, expert choices."""

    __slots__ = ("name", "model", "score", "window_score", "ns", "window_ns", "has_expert",
                 "expert_counts", "window_expert_counts", "errors", "at_mark")

    def __init__(self, name: str, model: Any) -> None:
        self.name = name
        self.model = model
        self.score = Score()
        self.window_score = Score()
        self.ns = 0
        self.window_ns = 0
        self.has_expert = hasattr(model, "last_expert")
        self.expert_counts: Counter = Counter()
        self.window_expert_counts: Counter = Counter()
        self.errors = 0
        self.at_mark: dict | None = None


_MAX_STORED_ERRORS = 10_000


@dataclass
class _Chunk:
    xs: list
    ys: list
    unlabelled: int = 0
    unlabelled_at: list = field(default_factory=list)  # offsets relative to the chunk's first labelled event


def _labelled_chunks(source: Iterable[tuple[dict, Any]], size: int) -> Iterator[_Chunk]:
    """Group the stream into chunks of ``size`` labelled events (unlabelled ones are counted, not evaluated)."""
    chunk = _Chunk([], [])
    for x, y in source:
        if y is None:
            chunk.unlabelled += 1
            chunk.unlabelled_at.append(len(chunk.xs))
            continue
        chunk.xs.append(x)
        chunk.ys.append(y)
        if len(chunk.xs) == size:
            yield chunk
            chunk = _Chunk([], [])
    if chunk.xs or chunk.unlabelled:
        yield chunk


def _prequential_chunk(model: Any, has_expert: bool, xs: list, ys: list):
    """Test-then-train one model over a chunk: predictions, answering experts and (index, error) pairs.

    Models with ``predict_learn_many`` (DriftMoE) get the whole chunk at once so their compiled
    path can run; results are identical to the per-event loop.  If the chunk holds an invalid event,
    the chunk is replayed event by event so that exactly the bad events are reported and skipped.
    """
    batch = getattr(model, "predict_learn_many", None)
    if batch is not None:
        try:
            answers = batch(xs, ys, proba=False)
        except ValueError:
            pass
        else:
            return [p for p, _ in answers], [e for _, e in answers], []
    preds, experts, errors = [], [], []
    for j, (x, y) in enumerate(zip(xs, ys)):
        try:
            y_pred = model.predict_one(x)
            expert = model.last_expert if has_expert else None
            model.learn_one(x, y)
        except ValueError as exc:
            y_pred, expert = NO_PREDICTION, None
            errors.append((j, str(exc)))
        preds.append(y_pred)
        experts.append(expert)
    return preds, experts, errors


class Prequential:
    """Test-then-train runner over named models, every model on the same events in the same order.

    For each event and for each model: ``predict_one(x)`` then ``learn_one(x, y)``.  Events are
    handed over in chunks of ``chunk`` labelled events; a model with ``predict_learn_many`` (DriftMoE)
    takes the chunk in one call, which gives the same results as the per-event loop.  Only those
    calls are timed for a model's events/s.  Any river classifier
    works; models with ``last_expert`` (DriftMoE) also get per-window expert shares, and models with
    ``drift_log`` have it copied into the summary.

    ``progress`` is called with a :class:`ProgressInfo` every ``progress_every`` events and once at
    the end (``done=True``); the CLI uses it for its progress bar.  With ``mark=m`` each model's
    summary also holds ``at_mark``: its figures over the first ``m`` events (to compare with models
    that ran only those, e.g. ``replay --compare``'s baselines).
    """

    def __init__(
        self,
        models: Mapping[str, Any],
        *,
        window: int | None = None,
        progress: Callable[[ProgressInfo], None] | None = None,
        progress_every: int = 500,
        chunk: int = 512,
        mark: int | None = None,
    ) -> None:
        if not models:
            raise ValueError("Prequential needs at least one model")
        for name, model in models.items():
            if not (callable(getattr(model, "predict_one", None)) and callable(getattr(model, "learn_one", None))):
                raise TypeError(f"model {name!r} ({type(model).__name__}) has no predict_one/learn_one")
        if window is not None and window < 1:
            raise ValueError(f"window must be >= 1, got {window}")
        if progress_every < 1:
            raise ValueError(f"progress_every must be >= 1, got {progress_every}")
        self.models = dict(models)
        self.window = window
        self.progress = progress
        self.progress_every = progress_every
        self.chunk = int(chunk)
        self.mark = mark

    def run(self, source: Iterable[tuple[dict, Any]], *, seed: int | None = None,
            extra: Mapping[str, Any] | None = None) -> PrequentialResult:
        """Evaluate every model over ``source`` and return the summary, windows and errors.

        ``source`` is any iterable of ``(x, y)``; the attributes of a streammoe ``Source`` (``name``,
        ``n``, ``drift_positions``, ``drift_width``, ``errors``) are used when present.  ``seed`` and
        ``extra`` are recorded in the summary as given.
        """
        declared_n = getattr(source, "n", None)
        window = self.window or default_window(declared_n)
        tracks = [_Track(name, model) for name, model in self.models.items()]
        baselines = StreamBaselines()
        windows: list[dict[str, Any]] = []
        event_errors: list[dict[str, Any]] = []
        n_event_errors = 0
        skipped_unlabelled = 0
        window_start = 0
        i = 0
        perf = time.perf_counter_ns
        started = time.time()
        t0 = time.perf_counter()

        for chunk in _labelled_chunks(source, self.chunk):
            if chunk.unlabelled:
                skipped_unlabelled += chunk.unlabelled
                n_event_errors += chunk.unlabelled
                for at in chunk.unlabelled_at[: max(0, _MAX_STORED_ERRORS - len(event_errors))]:
                    event_errors.append({"event": at + i, "model": "", "reason": "event has no label; not evaluated"})
            xs, ys = chunk.xs, chunk.ys
            if not xs:
                continue
            hits = [baselines.step(y) for y in ys]
            answers = []
            for tr in tracks:
                t = perf()
                preds, experts, errors = _prequential_chunk(tr.model, tr.has_expert, xs, ys)
                dt = perf() - t
                tr.ns += dt
                answers.append((preds, experts, dt / len(ys)))  # a chunk's time, spread over its events
                for j, reason in errors:
                    tr.errors += 1
                    n_event_errors += 1
                    if len(event_errors) < _MAX_STORED_ERRORS:
                        event_errors.append({"event": i + j, "model": tr.name, "reason": reason})
            for j, y in enumerate(ys):
                majority_hit, no_change_hit = hits[j]
                for tr, (preds, experts, ns_per_event) in zip(tracks, answers):
                    tr.window_ns += ns_per_event
                    y_pred = preds[j]
                    tr.score.update(y, y_pred, majority_hit, no_change_hit)
                    tr.window_score.update(y, y_pred, majority_hit, no_change_hit)
                    expert = experts[j]
                    if expert is not None:
                        tr.expert_counts[expert] += 1
                        tr.window_expert_counts[expert] += 1
                i += 1
                if i == self.mark:
                    for tr in tracks:
                        tr.at_mark = tr.score.as_dict()
                if i - window_start == window:
                    windows.extend(self._close_window(tracks, window_start, i))
                    window_start = i
                if self.progress is not None and i % self.progress_every == 0:
                    self.progress(self._progress(tracks, i, declared_n, t0, done=False))

        if i > window_start:
            windows.extend(self._close_window(tracks, window_start, i))
        wall = time.perf_counter() - t0
        if self.progress is not None:
            self.progress(self._progress(tracks, i, declared_n, t0, done=True))

        bad_rows = list(getattr(source, "errors", None) or [])
        drift_positions = [int(p) for p in (getattr(source, "drift_positions", None) or [])]
        drift_width = int(getattr(source, "drift_width", 0) or 0)
        models_summary = {}
        for tr in tracks:
            own = [w for w in windows if w["model"] == tr.name]
            models_summary[tr.name] = self._model_summary(tr, own, drift_positions, drift_width)
        summary: dict[str, Any] = {
            "source": {
                "name": getattr(source, "name", type(source).__name__),
                "n": i,
                "n_requested": declared_n,
                "drift_positions": drift_positions,
                "drift_width": drift_width,
                **({"description": str(source.description)} if getattr(source, "description", None) else {}),
            },
            "seed": seed,
            "window": window,
            "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
            "wall_time_s": wall,
            "bad_rows": int(getattr(getattr(source, "errors", None), "total", len(bad_rows)) or len(bad_rows)),
            "event_errors": n_event_errors,
            "unlabelled_events": skipped_unlabelled,
            "baselines": {"majority_accuracy": tracks[0].score.majority_accuracy,
                          "no_change_accuracy": tracks[0].score.no_change_accuracy},
            "versions": versions(),
            "models": models_summary,
        }
        if extra:
            summary.update(dict(extra))
        return PrequentialResult(summary=to_jsonable(summary), windows=windows, bad_rows=bad_rows,
                                 event_errors=event_errors)

    @staticmethod
    def _close_window(tracks: list[_Track], start: int, end: int) -> list[dict[str, Any]]:
        rows = []
        for tr in tracks:
            s = tr.window_score
            row: dict[str, Any] = {
                "model": tr.name, "window_start": start, "window_end": end, "n": s.n,
                "accuracy": s.accuracy, "kappa": s.kappa, "kappa_m": s.kappa_m, "kappa_t": s.kappa_t,
                "events_per_s": (s.n / (tr.window_ns / 1e9)) if tr.window_ns else 0.0,
                "cumulative_accuracy": tr.score.accuracy,
            }
            if tr.has_expert:
                row["expert_shares"] = {int(e): c / s.n for e, c in sorted(tr.window_expert_counts.items())}
            rows.append(row)
            tr.window_score = Score()
            tr.window_ns = 0
            tr.window_expert_counts = Counter()
        return rows

    @staticmethod
    def _progress(tracks: list[_Track], i: int, total: int | None, t0: float, done: bool) -> ProgressInfo:
        elapsed = time.perf_counter() - t0
        return ProgressInfo(events=i, total=total, elapsed_s=elapsed,
                            events_per_s=i / elapsed if elapsed > 0 else 0.0,
                            accuracy={tr.name: tr.score.accuracy for tr in tracks}, done=done)

    @staticmethod
    def _model_summary(tr: _Track, windows: list[dict[str, Any]], drift_positions: list[int],
                       drift_width: int) -> dict[str, Any]:
        s = tr.score
        seconds = tr.ns / 1e9
        out: dict[str, Any] = {
            "estimator": type(tr.model).__name__,
            "accuracy": s.accuracy, "balanced_accuracy": s.balanced_accuracy,
            "kappa": s.kappa, "kappa_m": s.kappa_m, "kappa_t": s.kappa_t,
            "events_per_s": s.n / seconds if seconds > 0 else 0.0,
            "seconds": seconds,
            "n": s.n,
            "errors": tr.errors,
            "recovery": recovery_after_drifts(windows, drift_positions, drift_width),
        }
        if tr.at_mark is not None:
            out["at_mark"] = tr.at_mark
        if tr.has_expert:
            total = sum(tr.expert_counts.values())
            n_exp = max(tr.expert_counts, default=-1) + 1
            n_exp = max(n_exp, int(getattr(tr.model, "n_experts_", 0) or 0))
            out["expert_predictions"] = [tr.expert_counts.get(e, 0) for e in range(n_exp)]
            out["expert_shares"] = [tr.expert_counts.get(e, 0) / total if total else 0.0 for e in range(n_exp)]
        usage = getattr(tr.model, "expert_usage", None)
        if callable(usage):
            out["expert_usage"] = usage()
        accuracy = getattr(tr.model, "expert_accuracy", None)
        if callable(accuracy):
            out["expert_accuracy"] = accuracy()
        log = getattr(tr.model, "drift_log", None)
        if log is not None:
            out["drift_log"] = [dict(entry) for entry in log]
        describe = getattr(tr.model, "describe", None)
        if callable(describe):
            out["describe"] = describe()
        else:
            params = getattr(tr.model, "_get_params", None)
            if callable(params):
                out["params"] = {k: (v if isinstance(v, (int, float, str, bool, type(None))) else repr(v))
                                 for k, v in params().items()}
        return out


def versions() -> dict[str, str]:
    """Versions that decide a run's numbers, read from package metadata (nothing is imported)."""
    out = {"python": platform.python_version()}
    for dist in ("streammoe", "river", "numpy", "numba", "torch"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = "not installed"
    if out["streammoe"] == "not installed":
        # Running from a source checkout that was not pip-installed: report the package's own version.
        try:
            import streammoe
            out["streammoe"] = str(getattr(streammoe, "__version__", "source checkout"))
        except ImportError:  # pragma: no cover - this module is part of streammoe
            pass
    return out


def to_jsonable(value: Any) -> Any:
    """Plain JSON types only: numpy scalars/arrays become Python numbers/lists, NaN/inf become None."""
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    tolist = getattr(value, "tolist", None)  # numpy scalars and arrays
    if callable(tolist):
        return to_jsonable(tolist())
    return str(value)


def write_summary_json(summary: Mapping[str, Any], path: str | Path) -> Path:
    path = Path(path)
    path.write_text(json.dumps(to_jsonable(summary), indent=2, allow_nan=False) + "\n", encoding="utf-8")
    return path


_WINDOW_COLUMNS = ["model", "window_start", "window_end", "n", "accuracy", "kappa", "kappa_m", "kappa_t",
                   "events_per_s", "cumulative_accuracy"]


def write_windowed_csv(windows: Sequence[Mapping[str, Any]], path: str | Path) -> Path:
    """One row per (model, window end).  Expert shares become ``share_expert_<i>`` columns.

    The share columns are the union over all windows (pools may grow); they are empty for models
    without experts and 0 for an expert that answered nothing in that window.
    """
    path = Path(path)
    n_experts = 0
    for w in windows:
        shares = w.get("expert_shares")
        if shares:
            n_experts = max(n_experts, max(shares) + 1)
    share_cols = [f"share_expert_{e}" for e in range(n_experts)]
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(_WINDOW_COLUMNS + share_cols)
        for w in windows:
            row = [w[c] for c in _WINDOW_COLUMNS]
            shares = w.get("expert_shares")
            if shares is None:
                row += [""] * n_experts
            else:
                row += [shares.get(e, 0.0) for e in range(n_experts)]
            writer.writerow(row)
    return path


def write_errors_csv(bad_rows: Sequence[Any], event_errors: Sequence[Mapping[str, Any]],
                     path: str | Path) -> Path:
    """Every problem of a run in one file: source rows that were rejected (with their line number)
    and events a model refused (with the event index and model name)."""
    path = Path(path)
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["kind", "line", "event", "model", "reason", "raw"])
        for row in bad_rows:
            writer.writerow(["bad_row", getattr(row, "line", ""), "", "", getattr(row, "reason", str(row)),
                             getattr(row, "raw", "")])
        for err in event_errors:
            writer.writerow(["model_error", "", err.get("event", ""), err.get("model", ""), err.get("reason", ""), ""])
    return path


def save_run(result: PrequentialResult, folder: str | Path) -> dict[str, Path]:
    """Write a run's outputs into ``folder`` (created if needed): summary.json, windowed.csv,
    errors.csv (header only when nothing went wrong) and plot.png.  Returns name -> path."""
    from .plots import plot_run  # matplotlib is only needed when a picture is drawn

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    return {
        "summary": write_summary_json(result.summary, folder / "summary.json"),
        "windowed": write_windowed_csv(result.windows, folder / "windowed.csv"),
        "errors": write_errors_csv(result.bad_rows, result.event_errors, folder / "errors.csv"),
        "plot": plot_run(result.windows, result.summary, folder / "plot.png"),
    }


def run_baselines(spec: str, n: int | None, seed: int, target: str | None, names: list[str],
                  window: int, feature_types: Mapping[str, str] | None = None) -> PrequentialResult:
    """River's baselines (:data:`streammoe.presets.BASELINES` ``names``) over the first ``n`` events of
    the source ``spec``, with the metrics window ``window``.

    A plain function of plain arguments, so that ``replay --compare`` can run it in a worker process
    (the source is reopened there: every source is replayable and seeded, so the events are the same).
    """
    from .connectors import open_source
    from .presets import river_baselines

    kwargs: dict[str, Any] = {"n": n, "seed": seed, "target": target}
    if feature_types:
        kwargs["feature_types"] = feature_types
    source = open_source(spec, **kwargs)
    return Prequential(river_baselines(seed, names), window=window).run(source, seed=seed)
