"""`streammoe` command line, end to end in a temporary folder (real streams, real models)."""
from __future__ import annotations

import csv
import json
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from streammoe.cli import app

runner = CliRunner()


def _invoke(*args: str):
    return runner.invoke(app, list(args), catch_exceptions=False)


def test_help_lists_the_commands():
    result = _invoke("--help")
    assert result.exit_code == 0
    assert "replay" in result.output and "version" in result.output


def test_python_dash_m_runs_the_app():
    out = subprocess.run([sys.executable, "-m", "streammoe", "version"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("python ") and "\nriver " in out.stdout and "\nstreammoe " in out.stdout


def test_replay_with_compare_writes_all_outputs(tmp_path):
    out = tmp_path / "run"
    result = _invoke("replay", "sea_a", "--n", "3000", "--compare", "--out", str(out))
    assert result.exit_code == 0, result.output
    for name in ("driftmoe", "ARF", "HoeffdingTree", "HoeffdingAdaptiveTree", "kappa-M", "kappa-T", "events/s"):
        assert name in result.output
    assert "bad rows: 0" in result.output
    for name in ("summary.json", "windowed.csv", "errors.csv", "plot.png"):
        assert (out / name).stat().st_size > 0, name

    summary = json.loads((out / "summary.json").read_text())
    assert summary["seed"] == 42 and summary["bad_rows"] == 0 and summary["window"] == 500
    assert summary["source"]["name"] == "sea_a" and summary["source"]["n"] == 3000
    assert summary["source"]["drift_positions"] == [750, 1500, 2250]
    assert set(summary["versions"]) >= {"python", "streammoe", "river", "numpy", "numba", "torch"}
    assert summary["config"]["experts"] == 12 and summary["config"]["compare"] is True
    assert list(summary["models"]) == ["driftmoe", "ARF", "HoeffdingTree", "HoeffdingAdaptiveTree"]
    for m in summary["models"].values():
        assert 0.5 < m["accuracy"] <= 1.0 and m["n"] == 3000 and m["events_per_s"] > 0
        for key in ("kappa", "kappa_m", "kappa_t"):
            assert -1.0 <= m[key] <= 1.0
        assert [r["drift_position"] for r in m["recovery"]] == [750, 1500, 2250]
    moe = summary["models"]["driftmoe"]
    assert len(moe["expert_usage"]) == 12 and sum(moe["expert_shares"]) == pytest.approx(1.0)

    with (out / "windowed.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 4 * 6  # four models x six windows of 500
    assert {r["window_end"] for r in rows} == {str(e) for e in range(500, 3001, 500)}
    assert (out / "plot.png").read_bytes()[:4] == b"\x89PNG"


def test_replay_is_reproducible_and_quiet_prints_only_the_folder(tmp_path):
    outs = []
    for k in range(2):
        out = tmp_path / f"r{k}"
        result = _invoke("replay", "sea_g", "--n", "800", "--seed", "5", "--experts", "4", "--top-k", "2",
                         "--metrics-window", "200", "--quiet", "--out", str(out))
        assert result.exit_code == 0, result.output
        assert result.output.strip() == str(out)
        outs.append(out)
    cols = ("model", "window_end", "accuracy", "kappa", "kappa_m", "kappa_t", "share_expert_0")

    def metrics(folder):
        with (folder / "windowed.csv").open() as fh:
            return [tuple(r[c] for c in cols) for r in csv.DictReader(fh)]

    assert metrics(outs[0]) == metrics(outs[1]) and len(metrics(outs[0])) == 4


def test_default_out_folder_is_under_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = _invoke("replay", "sea_a", "--n", "300", "--experts", "3", "--quiet")
    assert result.exit_code == 0, result.output
    folders = list((tmp_path / "streammoe-runs").iterdir())
    assert len(folders) == 1 and folders[0].name.startswith("sea_a-")
    assert result.output.strip() == str(folders[0])


def test_file_source_bad_rows_are_counted_and_listed(tmp_path):
    path = tmp_path / "events.csv"
    lines = ["a,b,label", "1,2,x", "3,oops,y", "5,6", "7,8,x"]
    lines += [f"{i % 7},{i % 5},{'x' if i % 3 else 'y'}" for i in range(400)]
    path.write_text("\n".join(lines) + "\n")
    out = tmp_path / "run"
    result = _invoke("replay", str(path), "--target", "label", "--experts", "3", "--out", str(out))
    assert result.exit_code == 0, result.output
    assert "bad rows: 2" in result.output and "line 3" in result.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["bad_rows"] == 2 and summary["source"]["n"] == 402
    with (out / "errors.csv").open() as fh:
        errors = list(csv.DictReader(fh))
    assert [(e["kind"], e["line"]) for e in errors] == [("bad_row", "3"), ("bad_row", "4")]
    assert "oops" in errors[0]["reason"]


@pytest.mark.parametrize(
    "args, message",
    [
        (["replay", "no_such_stream", "--n", "100"], "led_a"),  # the message lists the choices
        (["replay", "sea_a", "--model", "nope"], "unknown model preset 'nope'"),
        (["replay", "sea_a", "--experts", "2", "--top-k", "3"], "--top-k 3 is larger than --experts 2"),
        (["replay", "sea_a", "--mode", "sideways"], "sideways"),
        (["replay", "sea_a", "--n", "0"], "--n"),
        (["replay", "does-not-exist.csv"], "does-not-exist.csv"),
    ],
)
def test_usage_errors_exit_2_with_a_clear_message(args, message, tmp_path):
    result = runner.invoke(app, args + ["--out", str(tmp_path / "x")])
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert not (tmp_path / "x").exists()


def test_help_lists_every_command():
    from typer.testing import CliRunner

    from streammoe.cli import app

    out = CliRunner().invoke(app, ["--help"])
    assert out.exit_code == 0
    for command in ("replay", "serve", "generate", "inspect", "bench", "version"):
        assert command in out.output


def test_replay_runs_several_presets_side_by_side(tmp_path):
    import json

    from typer.testing import CliRunner

    from streammoe.cli import app

    out = CliRunner().invoke(app, ["replay", "sea_a", "--n", "1500", "--model", "driftmoe,driftmoe-adaptive",
                                   "--out", str(tmp_path), "--quiet"])
    assert out.exit_code == 0, out.output
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert set(summary["models"]) == {"driftmoe", "driftmoe-adaptive"}
    bad = CliRunner().invoke(app, ["replay", "sea_a", "--model", "driftmoe,nope", "--out", str(tmp_path)])
    assert bad.exit_code == 2 and "nope" in bad.output


def test_no_usable_row_prints_the_first_bad_rows_and_writes_errors_csv(tmp_path):
    path = tmp_path / "short.csv"
    path.write_text("a,b,label\n" + "".join(f"{i},{i}\n" for i in range(50)))  # every row lacks its label
    out = tmp_path / "run"
    result = runner.invoke(app, ["replay", str(path), "--target", "label", "--out", str(out)])
    assert result.exit_code == 2, result.output
    assert "produced no labelled events (50 bad rows" in result.output
    assert "bad row, line 2:" in result.output and "bad row, line 6:" in result.output  # the first five
    assert "45 more in errors.csv" in result.output
    with (out / "errors.csv").open() as fh:
        errors = list(csv.DictReader(fh))
    assert len(errors) == 50 and errors[0]["line"] == "2" and errors[0]["reason"]


def test_compare_runs_the_baselines_on_a_shown_subset(tmp_path):
    out = tmp_path / "run"
    result = _invoke("replay", "sea_a", "--n", "2000", "--compare", "--compare-n", "1000", "--out", str(out))
    assert result.exit_code == 0, result.output
    assert "acc. first 1,000" in result.output and "river baselines on the first 1,000 events" in result.output
    summary = json.loads((out / "summary.json").read_text())
    models = summary["models"]
    assert models["driftmoe"]["n"] == 2000 and models["driftmoe"]["at_mark"]["n"] == 1000
    assert {models[b]["n"] for b in ("ARF", "HoeffdingTree", "HoeffdingAdaptiveTree")} == {1000}
    assert summary["compare"]["n"] == 1000 and summary["config"]["compare_n"] == 1000


def test_progress_is_a_plain_line_when_stderr_is_not_a_terminal(tmp_path):
    out = subprocess.run([sys.executable, "-m", "streammoe", "replay", "sea_a", "--n", "1000", "--experts", "3",
                          "--out", str(tmp_path / "run")], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "replay: 1,000/1,000 events" in out.stderr and "ev/s" in out.stderr


def test_plain_progress_keeps_talking_while_no_event_has_finished():
    import io
    import time

    from streammoe.cli.progress import Progress

    buf = io.StringIO()  # not a terminal
    with Progress("replay", 10, every_s=0.05, stream=buf):
        deadline = time.monotonic() + 30
        while "compiling" not in buf.getvalue() and time.monotonic() < deadline:
            time.sleep(0.01)
    assert "replay: 0/10 events" in buf.getvalue() and "compiling" in buf.getvalue()
    quiet = io.StringIO()
    with Progress("replay", 10, enabled=False, every_s=0.01, stream=quiet):
        pass
    assert quiet.getvalue() == ""


def test_help_imports_no_model_library():
    """`streammoe --help` stays instant: torch, river, numba, Kafka and matplotlib load with the commands."""
    code = ("import sys; from streammoe.cli import app; import streammoe, streammoe.presets; "
            "heavy = [m for m in ('torch', 'river', 'numba', 'kafka', 'matplotlib', 'pandas') if m in sys.modules]; "
            "print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
