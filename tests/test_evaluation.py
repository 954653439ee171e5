"""Prequential evaluation: metric definitions, windows, recovery, summary, plot."""
from __future__ import annotations

import csv
import itertools
import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from river import metrics, tree
from river.datasets import synth

from streammoe.evaluation import (
    Prequential,
    Score,
    StreamBaselines,
    default_window,
    recovery_after_drifts,
    save_run,
    score_sequence,
    to_jsonable,
    write_errors_csv,
    write_windowed_csv,
)
from streammoe.plots import drift_log_points, plot_run


# ---------------------------------------------------------------- metric definitions (by hand)
def test_metrics_match_hand_computation_multiclass():
    y_true = ["cat", "ant", "cat", "cat", "ant", "bird"]
    y_pred = ["ant", "ant", "cat", "cat", "ant", "cat"]
    s = score_sequence(y_true, y_pred)
    # p0 = 4/6.  Marginals: true cat 3 ant 2 bird 1; pred ant 3 cat 3 -> pe = (3*3 + 2*3 + 0)/36 = 15/36
    assert s.accuracy == pytest.approx(4 / 6)
    assert s.kappa == pytest.approx((4 / 6 - 15 / 36) / (1 - 15 / 36))
    # majority classifier predicts: -, cat, cat(tie, cat first), cat, cat, cat -> right on events 2, 3
    assert s.majority_accuracy == pytest.approx(2 / 6)
    assert s.kappa_m == pytest.approx((4 / 6 - 2 / 6) / (1 - 2 / 6))  # = 0.5
    # no-change classifier predicts: -, cat, ant, cat, cat, ant -> right on event 3 only
    assert s.no_change_accuracy == pytest.approx(1 / 6)
    assert s.kappa_t == pytest.approx((4 / 6 - 1 / 6) / (1 - 1 / 6))  # = 0.6


def test_metrics_hand_computed_with_missing_first_prediction_and_majority_tie():
    y_true = [1, 1, 0, 0, 0]
    y_pred = [None, 1, 1, 0, 0]  # no prediction on the first event counts as wrong
    s = score_sequence(y_true, y_pred)
    assert s.accuracy == pytest.approx(3 / 5)
    # pe: true {1: 2, 0: 3}, pred {None: 1, 1: 2, 0: 2} -> (2*2 + 3*2) / 25 = 0.4
    assert s.kappa == pytest.approx((0.6 - 0.4) / 0.6)
    # majority: -, 1 (hit), 1, 1, 1 (tie 2-2 keeps the label that got there first) -> 1/5
    assert s.kappa_m == pytest.approx((0.6 - 0.2) / 0.8)
    # no-change: -, 1 (hit), 1, 0 (hit), 0 (hit) -> 3/5: no better than persistence
    assert s.kappa_t == pytest.approx(0.0)


def test_kappa_is_zero_when_chance_agreement_is_perfect():
    s = score_sequence(["a", "a", "a"], ["a", "a", "a"])
    assert s.accuracy == 1.0
    assert s.kappa == 0.0  # pe = 1: undefined, reported as 0 like river
    assert s.kappa_m == pytest.approx(1.0)  # majority misses the first event: pm = 2/3


def test_kappa_agrees_with_river_cohen_kappa():
    y_true = [0, 1, 2, 2, 1, 0, 0, 2, 1, 1, 2, 0]
    y_pred = [0, 2, 2, 2, 1, 1, 0, 2, 0, 1, 2, 0]
    river_kappa = metrics.CohenKappa()
    for yt, yp in zip(y_true, y_pred):
        river_kappa.update(yt, yp)
    assert score_sequence(y_true, y_pred).kappa == pytest.approx(river_kappa.get())


def _naive_kappas(y_true, y_pred):
    """Literal, non-incremental restatement of the definitions."""
    n = len(y_true)
    p0 = sum(p is not None and p == t for t, p in zip(y_true, y_pred)) / n
    maj_hits = nc_hits = 0
    for i, t in enumerate(y_true):
        past = y_true[:i]
        if past:
            best = max(past.count(c) for c in set(past))
            # the label that reached the best count first
            first_at = {}
            for c in set(past):
                if past.count(c) == best:
                    seen = 0
                    for j, v in enumerate(past):
                        seen += v == c
                        if seen == best:
                            first_at[c] = j
                            break
            majority = min(first_at, key=first_at.get)
            maj_hits += majority == t
            nc_hits += past[-1] == t
    pm, pt = maj_hits / n, nc_hits / n
    pe = sum(y_true.count(c) * y_pred.count(c) for c in set(y_true)) / (n * n)

    def k(ref):
        return 0.0 if ref >= 1 else (p0 - ref) / (1 - ref)

    return p0, k(pe), k(pm), k(pt)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 3), st.one_of(st.none(), st.integers(0, 3))), min_size=1, max_size=40))
def test_incremental_metrics_equal_naive_definitions(pairs):
    y_true = [t for t, _ in pairs]
    y_pred = [p for _, p in pairs]
    s = score_sequence(y_true, y_pred)
    p0, kappa, kappa_m, kappa_t = _naive_kappas(y_true, y_pred)
    assert s.accuracy == pytest.approx(p0)
    assert s.kappa == pytest.approx(kappa)
    assert s.kappa_m == pytest.approx(kappa_m)
    assert s.kappa_t == pytest.approx(kappa_t)


def test_score_sequence_rejects_length_mismatch():
    with pytest.raises(ValueError, match="3 labels but y_pred has 2"):
        score_sequence([1, 2, 3], [1, 2])


def test_baselines_first_event_has_no_prediction():
    b = StreamBaselines()
    assert b.step("x") == (False, False)
    assert b.step("x") == (True, True)
    assert b.step("y") == (False, False)


def test_empty_score_is_zero_not_an_error():
    s = Score()
    assert s.as_dict() == {"n": 0, "accuracy": 0.0, "kappa": 0.0, "kappa_m": 0.0, "kappa_t": 0.0}


def test_balanced_accuracy_is_the_mean_recall_per_class():
    # class a: 3 of 4 right; class b: 0 of 1 right -> (0.75 + 0.0) / 2, while plain accuracy is 3/5
    s = score_sequence(["a", "a", "a", "a", "b"], ["a", "a", "a", "b", "a"])
    assert s.accuracy == pytest.approx(0.6)
    assert s.balanced_accuracy == pytest.approx(0.375)
    assert Score().balanced_accuracy == 0.0


def test_default_window_clamped():
    assert default_window(None) == 1000
    assert default_window(3000) == 500
    assert default_window(100_000) == 1000
    assert default_window(10_000_000) == 10_000


# ---------------------------------------------------------------- recovery
def _win(start, end, acc):
    return {"window_start": start, "window_end": end, "accuracy": acc}


def test_recovery_after_drifts_from_windows():
    windows = [_win(0, 100, 0.90), _win(100, 200, 0.92), _win(200, 300, 0.60), _win(300, 400, 0.85),
               _win(400, 500, 0.915), _win(500, 600, 0.95), _win(600, 700, 0.5), _win(700, 800, 0.6)]
    rec = recovery_after_drifts(windows, [200, 600])
    assert rec[0] == {"drift_position": 200, "pre_drift_accuracy": 0.92, "recovered_at": 500,
                      "events_to_recover": 300}  # 0.915 >= 0.92 - 0.01
    assert rec[1]["pre_drift_accuracy"] == 0.95 and rec[1]["recovered_at"] is None
    assert rec[1]["events_to_recover"] is None


def test_recovery_gradual_drift_uses_level_before_the_drift_starts():
    windows = [_win(0, 100, 0.9), _win(100, 200, 0.7), _win(200, 300, 0.8), _win(300, 400, 0.89)]
    # drift centred at 200 with width 200 starts at 100: pre-drift level is the window ending at 100
    rec = recovery_after_drifts(windows, [200], drift_width=200)
    assert rec[0]["pre_drift_accuracy"] == 0.9 and rec[0]["recovered_at"] == 400


def test_recovery_none_without_a_window_before_the_drift():
    rec = recovery_after_drifts([_win(0, 100, 0.5)], [50])
    assert rec == [{"drift_position": 50, "pre_drift_accuracy": None, "recovered_at": None,
                    "events_to_recover": None}]


# ---------------------------------------------------------------- the runner
class Probe:
    """A tiny classifier that records the order of calls and exposes DriftMoE's introspection."""

    def __init__(self, bad_at: int | None = None):
        self.calls: list[tuple[str, int]] = []
        self.t = 0
        self.last_expert = None
        self.bad_at = bad_at
        self.drift_log = [{"event": 150, "action": "grow", "expert": 2, "kind": "river-ht", "reason": "test"}]

    def predict_one(self, x):
        self.calls.append(("predict", x["i"]))
        if self.bad_at is not None and x["i"] == self.bad_at:
            raise ValueError("feature 'i' is bad here")
        self.last_expert = (x["i"] // 100) % 3
        return x["i"] % 2 if self.t else None

    def learn_one(self, x, y):
        self.calls.append(("learn", x["i"]))
        self.t += 1


class ListSource:
    def __init__(self, events, name="list", drift_positions=(), drift_width=0, errors=()):
        self.events, self.name, self.n = events, name, len(events)
        self.drift_positions, self.drift_width, self.errors = list(drift_positions), drift_width, list(errors)

    def __iter__(self):
        return iter(self.events)


def _sea(n, seed=3):
    return list(itertools.islice(synth.SEA(seed=seed), n))


def test_test_then_train_order_and_same_events_for_all_models():
    events = [({"i": i}, i % 2) for i in range(250)]
    a, b = Probe(), Probe()
    result = Prequential({"a": a, "b": b}, window=100).run(ListSource(events))
    expected = [(kind, i) for i in range(250) for kind in ("predict", "learn")]
    assert a.calls == expected and b.calls == expected
    # Probe predicts the label exactly, except the first event (no prediction yet)
    assert result.summary["models"]["a"]["accuracy"] == pytest.approx(249 / 250)


def test_runner_metrics_equal_a_hand_written_prequential_loop():
    events = _sea(1500)
    result = Prequential({"ht": tree.HoeffdingTreeClassifier()}, window=400).run(ListSource(events), seed=3)
    ref_model = tree.HoeffdingTreeClassifier()
    preds = []
    for x, y in events:
        preds.append(ref_model.predict_one(x))
        ref_model.learn_one(x, y)
    ref = score_sequence([y for _, y in events], preds)
    got = result.summary["models"]["ht"]
    assert (got["accuracy"], got["kappa"], got["kappa_m"], got["kappa_t"]) == pytest.approx(
        (ref.accuracy, ref.kappa, ref.kappa_m, ref.kappa_t))
    assert got["n"] == 1500 and got["events_per_s"] > 0
    # windows: 400, 800, 1200 and the final partial window of 300
    rows = result.windows_of("ht")
    assert [(w["window_start"], w["window_end"], w["n"]) for w in rows] == [
        (0, 400, 400), (400, 800, 400), (800, 1200, 400), (1200, 1500, 300)]
    for w in rows:
        sl = slice(w["window_start"], w["window_end"])
        hits = sum(p == y for p, (_, y) in zip(preds[sl], events[sl]))
        assert w["accuracy"] == pytest.approx(hits / w["n"])
    assert rows[-1]["cumulative_accuracy"] == pytest.approx(ref.accuracy)


def test_windowed_csv_content_and_expert_shares(tmp_path):
    events = [({"i": i}, i % 2) for i in range(350)]
    result = Prequential({"moe": Probe(), "ht": tree.HoeffdingTreeClassifier()}, window=100).run(ListSource(events))
    path = write_windowed_csv(result.windows, tmp_path / "w.csv")
    with path.open() as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0])[:10] == ["model", "window_start", "window_end", "n", "accuracy", "kappa", "kappa_m",
                                  "kappa_t", "events_per_s", "cumulative_accuracy"]
    assert list(rows[0])[10:] == ["share_expert_0", "share_expert_1", "share_expert_2"]
    assert [(r["model"], r["window_end"]) for r in rows] == [
        (m, str(e)) for e in (100, 200, 300, 350) for m in ("moe", "ht")]
    moe = [r for r in rows if r["model"] == "moe"]
    # Probe answers with expert (i // 100) % 3: windows 0-99 -> expert 0, 100-199 -> 1, 200-299 -> 2, 300-349 -> 0
    assert [[float(r[f"share_expert_{e}"]) for e in range(3)] for r in moe] == [
        [1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [1.0, 0.0, 0.0]]
    assert float(moe[0]["accuracy"]) == pytest.approx(99 / 100) and float(moe[1]["accuracy"]) == 1.0
    ht = [r for r in rows if r["model"] == "ht"]
    assert all(r["share_expert_0"] == "" for r in ht)
    s = result.summary["models"]["moe"]
    assert s["expert_predictions"] == [150, 100, 100]
    assert s["expert_shares"] == pytest.approx([150 / 350, 100 / 350, 100 / 350])
    assert s["drift_log"] == [{"event": 150, "action": "grow", "expert": 2, "kind": "river-ht", "reason": "test"}]
    assert "expert_shares" not in result.summary["models"]["ht"]


def test_model_value_error_is_recorded_and_run_continues(tmp_path):
    events = [({"i": i}, i % 2) for i in range(200)]
    result = Prequential({"p": Probe(bad_at=17)}, window=100).run(ListSource(events))
    assert result.event_errors == [{"event": 17, "model": "p", "reason": "feature 'i' is bad here"}]
    assert result.summary["event_errors"] == 1 and result.summary["models"]["p"]["errors"] == 1
    assert result.summary["models"]["p"]["accuracy"] == pytest.approx(198 / 200)
    path = write_errors_csv(result.bad_rows, result.event_errors, tmp_path / "errors.csv")
    assert "feature 'i' is bad here" in path.read_text()


def test_unlabelled_events_are_reported_not_scored():
    events = [({"i": 0}, 0), ({"i": 1}, None), ({"i": 2}, 0)]
    result = Prequential({"p": Probe()}).run(ListSource(events))
    assert result.summary["source"]["n"] == 2 and result.summary["unlabelled_events"] == 1
    assert result.event_errors[0]["event"] == 1 and "no label" in result.event_errors[0]["reason"]


def test_summary_is_json_and_has_the_fields():
    events = _sea(600)
    src = ListSource(events, name="sea_demo", drift_positions=[300], drift_width=0)
    runner = Prequential({"ht": tree.HoeffdingTreeClassifier()}, window=100)
    result = runner.run(src, seed=7, extra={"config": {"x": 1}})
    s = json.loads(json.dumps(result.summary, allow_nan=False))
    assert s["source"] == {"name": "sea_demo", "n": 600, "n_requested": 600, "drift_positions": [300],
                           "drift_width": 0}
    assert s["seed"] == 7 and s["window"] == 100 and s["config"] == {"x": 1} and s["bad_rows"] == 0
    assert set(s["versions"]) == {"python", "streammoe", "river", "numpy", "numba", "torch"}
    assert s["wall_time_s"] > 0
    m = s["models"]["ht"]
    for key in ("accuracy", "kappa", "kappa_m", "kappa_t", "events_per_s", "n", "recovery"):
        assert key in m
    assert m["recovery"][0]["drift_position"] == 300


def test_progress_callback_reports_running_accuracy():
    seen = []
    Prequential({"p": Probe()}, progress=seen.append, progress_every=50).run(
        ListSource([({"i": i}, i % 2) for i in range(120)]))
    assert [p.events for p in seen] == [50, 100, 120]
    assert seen[-1].done and not seen[0].done and seen[-1].total == 120
    assert seen[0].accuracy["p"] == pytest.approx(49 / 50)


def test_runner_rejects_bad_arguments():
    with pytest.raises(ValueError, match="at least one model"):
        Prequential({})
    with pytest.raises(TypeError, match="no predict_one"):
        Prequential({"x": object()})
    with pytest.raises(ValueError, match="window"):
        Prequential({"p": Probe()}, window=0)


def test_to_jsonable_handles_numpy_and_nan():
    import numpy as np

    assert to_jsonable({"a": np.int64(3), "b": np.array([1.5, np.nan]), 1: (np.float32(2.0),)}) == {
        "a": 3, "b": [1.5, None], "1": [2.0]}


# ---------------------------------------------------------------- plot and saved outputs
def test_save_run_writes_every_output_and_plot_is_a_png(tmp_path):
    events = [({"i": i}, i % 2) for i in range(600)]
    src = ListSource(events, name="probe", drift_positions=[300], drift_width=100)
    result = Prequential({"moe": Probe(), "ht": tree.HoeffdingTreeClassifier()}, window=50).run(src)
    paths = save_run(result, tmp_path / "run")
    assert {p.name for p in paths.values()} == {"summary.json", "windowed.csv", "errors.csv", "plot.png"}
    png = paths["plot"].read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 20_000
    assert json.loads(paths["summary"].read_text())["source"]["name"] == "probe"


def test_plot_without_expert_model_and_rejects_empty(tmp_path):
    result = Prequential({"ht": tree.HoeffdingTreeClassifier()}, window=100).run(ListSource(_sea(400)))
    path = plot_run(result.windows, result.summary, tmp_path / "one.png")
    assert path.stat().st_size > 10_000
    with pytest.raises(ValueError, match="no windows"):
        plot_run([], result.summary, tmp_path / "none.png")
    assert not math.isnan(result.summary["models"]["ht"]["accuracy"])


def test_drift_log_points_read_driftmoe_entries():
    log = [{"event": 120, "action": "freeze", "expert": 1, "kind": "river-ht", "reason": "adwin"},
           {"event": 120, "action": "grow", "expert": 4, "kind": "river-ht", "reason": "replaces 1"},
           {"position": 300, "kind": "Pruned"},
           {"action": "grow"}]  # no position: cannot be placed, left out
    assert drift_log_points(log) == [(120.0, "freeze"), (120.0, "grow"), (300.0, "pruned")]
