"""harness.reporting.plots: each function writes a readable PNG, and copes with empty, NaN and one-point input."""
import ast
import struct
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib.colors import to_rgba

from harness.reporting import plots

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
STEPS = [0, 1, 10, 100, 1_000, 10_000, 99_999]


def trajectory() -> pd.DataFrame:
    rows = []
    for impl, dtype, scale in [("numpy", "float64", 1.0), ("torch", "float64", 1.0),
                               ("jax", "float32", 1.001), ("oracle", "longdouble", 1.0)]:
        rows += [{"impl": impl, "dtype": dtype, "step": s, "loss": scale * 0.25 / (1 + s) ** 0.5} for s in STEPS]
    return pd.DataFrame(rows)


def deviation() -> pd.DataFrame:
    rows = [{"impl": "numpy", "dtype": "float64", "step": s, "rel_err": 0.0 if s == 0 else 1e-16 * (1 + s)}
            for s in STEPS]
    rows += [{"impl": "jax", "dtype": "float32", "step": s, "rel_err": 1e-8 * (1 + s) ** 0.5} for s in STEPS]
    return pd.DataFrame(rows)


def timings() -> pd.DataFrame:
    return pd.DataFrame({
        "impl": ["numpy", "torch", "jax", "numpy", "numpy-fd"],
        "dtype": ["float64", "float64", "float32", "float64", "float64"],
        "measure": ["train_step", "train_step", "train_step", "forward", "train_step"],
        "median_s": [4.2e-6, 1.45e-4, 2.1e-5, 1e-6, 1.9e-4],
        "iqr_s": [3e-7, 1.2e-5, np.nan, 1e-7, 2e-5],
    })


def assert_png(path: Path, min_bytes: int = 5_000) -> tuple[int, int]:
    """The file is a PNG of a plausible size; returns its (width, height) in pixels from the IHDR chunk."""
    data = path.read_bytes()
    assert data.startswith(PNG_SIGNATURE)
    assert len(data) > min_bytes, f"{path.name} is only {len(data)} bytes"
    return struct.unpack(">II", data[16:24])


def curves(fig):
    """The data lines of the figure's axes, without the dotted roundoff reference lines."""
    return [line for line in fig.axes[0].get_lines() if line.get_label() not in ("u64", "u32")]


def texts(fig) -> list[str]:
    return [t.get_text().strip() for ax in fig.axes for t in ax.texts]


def test_losses_png_has_a_log_log_line_per_impl_and_dtype(tmp_path):
    path = tmp_path / "losses.png"
    plots.plot_losses(trajectory(), path)
    assert assert_png(path, 20_000) == (800, 500)
    fig = plots._losses_figure(trajectory())
    ax = fig.axes[0]
    assert (ax.get_xscale(), ax.get_yscale(), ax.get_xlabel()) == ("log", "log", "step + 1")
    styles = {line.get_label(): line.get_linestyle() for line in curves(fig)}
    assert styles == {"jax float32": "--", "numpy float64": "-", "oracle longdouble": "-.", "torch float64": "-"}
    assert [t.get_text() for t in ax.get_legend().get_texts()] == list(styles)
    assert curves(fig)[0].get_xdata()[0] == 1  # step 0 is drawn at step + 1 = 1


def test_deviation_png_clips_zeros_and_draws_roundoff_lines(tmp_path):
    path, again = tmp_path / "deviation.png", tmp_path / "again.png"
    plots.plot_deviation(deviation(), path)
    plots.plot_deviation(deviation(), again)
    assert_png(path, 20_000)
    # Byte-for-byte reproducible, and without the Software chunk naming the matplotlib version.
    assert path.read_bytes() == again.read_bytes() and b"matplotlib" not in path.read_bytes()
    fig = plots._deviation_figure(deviation())
    ax = fig.axes[0]
    assert ax.get_title() == "deviation from the oracle"
    assert (ax.get_xscale(), ax.get_yscale()) == ("log", "log")
    numpy_line = next(line for line in curves(fig) if line.get_label() == "numpy float64")
    assert numpy_line.get_ydata()[0] == plots.ZERO_FLOOR  # the exact match at step 0 stays visible
    refs = {line.get_label(): line.get_ydata()[0] for line in ax.get_lines() if line.get_linestyle() == ":"}
    assert refs == {"u64": 2.0**-53, "u32": 2.0**-24}
    assert {"u64", "u32", "jax float32"} <= {t.get_text() for t in ax.get_legend().get_texts()}


def test_timings_png_plots_train_step_rows_only(tmp_path):
    path = tmp_path / "timings.png"
    plots.plot_timings(timings(), path)
    assert_png(path, 10_000)
    fig = plots._timings_figure(timings())
    ax = fig.axes[0]
    assert ax.get_xscale() == "log"
    assert [t.get_text() for t in ax.get_yticklabels()] == [
        "jax float32", "numpy float64", "numpy-fd float64", "torch float64"]
    assert texts(fig) == ["21 us", "4.2 us", "190 us", "145 us"]
    widths = [bar.get_width() for bar in ax.patches]
    assert widths == pytest.approx([21, 4.2, 190, 145])
    assert ax.get_xlim()[0] < 4.2 and ax.get_xlim()[1] > 190


def test_timings_without_train_step_rows_says_so(tmp_path):
    other = timings().assign(measure="forward")
    plots.plot_timings(other, tmp_path / "t.png")
    assert_png(tmp_path / "t.png", 2_000)
    assert texts(plots._timings_figure(other)) == ["no timings"]


@pytest.mark.parametrize("plot, builder", [
    (plots.plot_losses, plots._losses_figure),
    (plots.plot_deviation, plots._deviation_figure),
    (plots.plot_timings, plots._timings_figure),
])
def test_empty_frame_gives_a_no_data_figure(tmp_path, plot, builder):
    for empty in (pd.DataFrame(), trajectory().iloc[:0]):
        plot(empty, tmp_path / "empty.png")
        assert_png(tmp_path / "empty.png", 2_000)
        assert texts(builder(empty)) == ["no data"]


def test_nan_and_inf_points_are_skipped(tmp_path):
    bad = trajectory()
    bad.loc[1, "loss"] = np.nan
    bad.loc[2, "loss"] = np.inf
    bad.loc[3, "step"] = np.nan
    plots.plot_losses(bad, tmp_path / "losses.png")
    assert_png(tmp_path / "losses.png", 20_000)
    numpy_line = curves(plots._losses_figure(bad))[1]
    assert numpy_line.get_label() == "numpy float64"
    assert len(numpy_line.get_xdata()) == len(STEPS) - 3
    assert np.isfinite(numpy_line.get_ydata()).all()

    dev = deviation().assign(rel_err=np.nan)
    assert texts(plots._deviation_figure(dev)) == ["no data"]  # all NaN: nothing left to draw

    times = timings()
    times.loc[0, "median_s"] = np.inf
    fig = plots._timings_figure(times)
    assert "numpy float64" not in [t.get_text() for t in fig.axes[0].get_yticklabels()]
    # (a NaN IQR is in timings() itself, so test_timings_png_* already renders that case to PNG)


def test_single_point_is_drawn_with_a_marker(tmp_path):
    one = pd.DataFrame({"impl": ["numpy"], "dtype": ["float64"], "step": [0], "loss": [0.25], "rel_err": [0.0]})
    plots.plot_losses(one, tmp_path / "l.png")
    plots.plot_deviation(one, tmp_path / "d.png")
    one_time = pd.DataFrame({"impl": ["jax"], "dtype": ["float64"], "measure": ["train_step"],
                             "median_s": [1e-6], "iqr_s": [0.0]})
    plots.plot_timings(one_time, tmp_path / "t.png")
    for name in ("l.png", "d.png", "t.png"):
        assert_png(tmp_path / name)
    assert curves(plots._losses_figure(one))[0].get_marker() == "o"
    assert texts(plots._timings_figure(one_time)) == ["1 us"]


def test_module_does_not_import_pyplot():
    # pyplot would pick a global backend and keep figures alive until closed; Figure objects do neither.
    tree = ast.parse(Path(plots.__file__).read_text())
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert "matplotlib.figure" in imported
    assert not any("pyplot" in name for name in imported)


def test_an_implementation_keeps_its_colour_across_figures():
    # trajectory() has the oracle and deviation() does not; torch's colour must not shift with that.
    line_colour = {line.get_label(): line.get_color() for line in curves(plots._losses_figure(trajectory()))}
    dev_colour = {line.get_label(): line.get_color() for line in curves(plots._deviation_figure(deviation()))}
    assert line_colour["jax float32"] == dev_colour["jax float32"]
    bars = plots._timings_figure(timings()).axes[0].patches
    assert to_rgba(line_colour["torch float64"]) == bars[3].get_facecolor()  # torch float64 is the last bar
    assert len(set(line_colour.values())) == 4  # numpy, torch, jax, oracle
