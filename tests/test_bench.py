"""streammoe bench end to end on a tiny run: every row, the ratios and both files."""
from __future__ import annotations

import json

from typer.testing import CliRunner

from streammoe.bench import ratios, run_bench
from streammoe.cli import app


def test_bench_writes_rows_ratios_and_files(tmp_path):
    result = run_bench(["sea_a"], 3000, 1, tmp_path, slow_n=1000, keys=8, keyed_events=64, log=lambda s: None)
    models = [r.model for r in result["rows"]]
    assert models[:5] == ["DriftMoE numba", "DriftMoE river", "river ARF (10 trees)", "river HoeffdingTree",
                          "DriftMoE numba (per event)"]
    assert any(m.startswith("KeyedDriftMoE 8 keys (cpu)") for m in models)
    fast = result["rows"][0]
    assert fast.n == 3000 and result["rows"][1].n == 1000
    assert 0.5 < fast.accuracy <= 1 and fast.events_per_s > 0 and fast.bytes_per_expert > 0
    per_event = result["rows"][4]  # the same model called once per event: the same predictions
    assert per_event.n == 1000 and per_event.accuracy == fast.extra["accuracy_first"]["accuracy"]
    r = ratios(result["rows"])["sea_a"]
    assert r["DriftMoE river"] > 1  # the compiled engine is faster than river's trees, whatever the machine
    saved = json.loads((tmp_path / "bench.json").read_text())
    assert len(saved["rows"]) == len(result["rows"])
    assert "| sea_a | DriftMoE numba |" in (tmp_path / "bench.md").read_text()


def test_bench_command_rejects_unknown_models(tmp_path):
    out = CliRunner().invoke(app, ["bench", "--models", "XGBoost", "--out", str(tmp_path)])
    assert out.exit_code == 2 and "unknown model" in out.output


def test_bench_command_rejects_unknown_streams(tmp_path):
    out = CliRunner().invoke(app, ["bench", "--streams", "sea_a,nope", "--out", str(tmp_path)])
    assert out.exit_code == 2 and "cannot open source 'nope'" in out.output and "led_a" in out.output
