"""The results writer: whole runs or nothing; and the timing helpers."""
import json

import pandas as pd
import pytest

from harness.reporting import results
from harness.running import timing


def _write(out, plots=()):
    return results.write(out, {"final": pd.DataFrame({"impl": ["numpy"], "loss": [0.5]})},
                         {"config": {"steps": 1}}, "# summary\n", list(plots))


def test_write_creates_the_folder_with_format_version(tmp_path):
    out = _write(tmp_path / "run")
    assert sorted(p.name for p in out.iterdir()) == ["final.csv", "meta.json", "summary.md"]
    assert json.loads((out / "meta.json").read_text())["format_version"] == results.FORMAT_VERSION


def test_a_failure_midway_leaves_nothing_behind(tmp_path):
    def broken_plot(data, path):
        raise RuntimeError("plotting failed")

    with pytest.raises(RuntimeError):
        _write(tmp_path / "run", [("x.png", broken_plot, pd.DataFrame())])
    assert list(tmp_path.iterdir()) == []


def test_overwrite_replaces_the_whole_folder(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "stale.csv").write_text("old")
    (out / "meta.json").write_text("{}")
    _write(out)
    assert not (out / "stale.csv").exists() and (out / "summary.md").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["run"]


def test_check_out_refuses_existing_and_unwritable(tmp_path):
    (tmp_path / "taken").mkdir()
    with pytest.raises(ValueError, match="exists; pass --overwrite"):
        results.check_out(tmp_path / "taken", overwrite=False)
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="is not a folder"):
        results.check_out(tmp_path / "file", overwrite=True)


def test_default_out_never_reuses_a_folder(tmp_path):
    first = results.default_out(tmp_path)
    first.mkdir(parents=True)
    assert results.default_out(tmp_path) != first


def test_steady_timing_reports_median_and_spread():
    calls = []
    t = timing.steady(lambda: calls.append(1), repeats=5, number=3)
    assert len(calls) == 1 + 5 * 3  # one warm-up call, then the timed batches
    assert t.median_s > 0 and t.iqr_s >= 0 and t.repeats == 5 and t.number == 3


def test_noisy_flag_is_iqr_over_median():
    assert timing.Timing(1.0, 0.2, 5, 1).noisy and not timing.Timing(1.0, 0.05, 5, 1).noisy
