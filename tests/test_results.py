"""The results writer: whole runs or nothing; and the timing helpers."""
import json
import time
from pathlib import Path

import pandas as pd
import pytest

from harness.reporting import results
from harness.running import timing

pytestmark = pytest.mark.slow  # the edit loop leaves this module out: pytest -m 'not slow'


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


FORKED_PLOTS = """
import sys
from pathlib import Path
import numpy as np, pandas as pd
from harness.reporting import plots, results
from harness.forking import fork_context

assert fork_context() is not None  # no framework loaded: the plots are drawn in forks
frame = pd.DataFrame({"impl": "numpy", "dtype": "float64", "step": np.arange(50), "loss": np.exp(-np.arange(50) / 9),
                      "rel_err": 1e-16 * np.arange(50), "allowed": 1e-12})
def broken(frame, path):
    path.write_bytes(b"half")
    raise RuntimeError("the plot broke")
drawn = [("loss.png", plots.plot_losses, frame), ("deviation.png", plots.plot_deviation, frame)]
results.write(Path(sys.argv[1]), {}, {}, "", [*drawn, ("timings.png", plots.plot_timings, pd.DataFrame())])
try:
    results.write(Path(sys.argv[2]), {}, {}, "", [("broken.png", broken, frame), *drawn])
except RuntimeError as exc:
    print(exc)
"""


def test_plots_drawn_in_forks_equal_those_drawn_here_and_a_broken_one_fails_the_write(tmp_path, monkeypatch):
    import subprocess
    import sys

    import numpy as np

    from harness.reporting import plots

    forked, broken = tmp_path / "forked", tmp_path / "broken"
    found = subprocess.run([sys.executable, "-c", FORKED_PLOTS, str(forked), str(broken)], capture_output=True,
                           text=True, timeout=120, cwd=Path(__file__).resolve().parent.parent)
    assert found.returncode == 0, found.stderr
    assert found.stdout.strip() == "the plot broke" and not broken.exists()  # raised here; nothing left
    frame = pd.DataFrame({"impl": "numpy", "dtype": "float64", "step": np.arange(50),
                          "loss": np.exp(-np.arange(50) / 9), "rel_err": 1e-16 * np.arange(50), "allowed": 1e-12})
    here = tmp_path / "here"
    monkeypatch.setattr(results, "fork_context", lambda: None)  # as where a framework is loaded: drawn in turn
    results.write(here, {}, {}, "", [("loss.png", plots.plot_losses, frame),
                                     ("deviation.png", plots.plot_deviation, frame)])
    for name in ("loss.png", "deviation.png"):
        assert (forked / name).read_bytes() == (here / name).read_bytes(), name
    assert (forked / "timings.png").exists()


def test_timed_repeats_shrink_only_for_slow_steps_and_calls():
    """A repeat lasts TIMING_REPEAT_S and, for train(), 100 steps up to 0.1 s: the default run's fast steps keep
    100 or more, a wide network's 10 ms steps take 10, not 100 (a second a repeat)."""
    assert timing.repeat_steps(33e-6) == 303 and timing.repeat_steps(200e-6) == 100
    assert timing.repeat_steps(1e-3) == 100 and timing.repeat_steps(10e-3) == 10 and timing.repeat_steps(5.0) == 10
    calls = []
    fast = timing.steady(lambda: calls.append(1), repeats=3, number=20, fit=True)
    assert fast.number == 20 and len(calls) == 1 + 3 * 20
    slow = timing.steady(lambda: time.sleep(0.02), repeats=2, number=20, fit=True)
    assert slow.number == 1  # one call already lasts TIMING_REPEAT_S
