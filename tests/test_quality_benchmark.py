"""The model-quality benchmark's harness (``benchmarks/quality.py``) on a tiny run: records and targets.

Why: the issue-12 figures (accuracy vs ARF, speed ratios, state bytes, recovery) are produced there;
this checks the plumbing on a few hundred events, not the figures.
"""
import json
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "benchmarks"
sys.path.insert(0, str(BENCH))

import quality  # noqa: E402


def test_parse_spec_reads_overrides_as_literals():
    assert quality.parse_spec("driftmoe-data@top_k=4,combine=mixture,window=64") == (
        "driftmoe-data", {"top_k": 4, "combine": "mixture", "window": 64})
    assert quality.parse_spec("ARF") == ("ARF", {})
    with pytest.raises(ValueError, match="unknown model"):
        quality.make_model("no-such-model", seed=1)


def test_tiny_run_writes_records_and_a_report_with_targets(tmp_path):
    quality.main(["--n", "800", "--seeds", "1", "--streams", "sea_a", "--models", "default", "reset",
                  "--out", str(tmp_path)])
    records = {json.loads(f.read_text())["model"]: json.loads(f.read_text()) for f in tmp_path.glob("*.json")}
    assert set(records) == {"default", "reset", "ARF", "HT"}
    for r in records.values():
        assert r["n"] == 800 and 0.0 <= r["balanced_accuracy"] <= 1.0 and r["state_bytes"] > 0
        assert set(r["same_run_events_per_s"]) == {"default", "reset", "ARF", "HT"}
        assert [d["drift_position"] for d in r["recovery"]] == [200, 400, 600]
    text = (tmp_path / "report.md").read_text()
    assert "## Targets for `default`" in text and "## sea_a" in text
    assert "\n| ARF | " in text and "## Leaderboard" in text
