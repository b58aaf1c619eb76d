"""PNG figures of loss curves, deviation from the oracle and per-step timings.

Figures are built as ``matplotlib.figure.Figure`` objects on an Agg canvas, never
through ``pyplot``: that keeps the global backend and pyplot's figure registry
untouched (nothing to close, nothing to leak) for whoever imports this module.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

U64 = 2.0**-53  # float64 unit roundoff
U32 = 2.0**-24  # float32 unit roundoff
ZERO_FLOOR = 1e-20  # where an exact (zero) deviation is drawn on the log axis

# Same line style for a dtype in every figure, so float32 reads the same everywhere.
LINESTYLES = {"float64": "-", "float32": "--", "longdouble": "-."}
OTHER_LINESTYLE = (0, (3, 1, 1, 1, 1, 1))  # dash-dot-dot: plain dots are kept for the roundoff lines
HATCHES = {"float32": "//", "longdouble": ".."}
KNOWN_IMPLS = ["numpy", "torch", "jax", "numpy-fd", "oracle"]


def plot_losses(trajectory: pd.DataFrame, path: Path) -> None:
    """Write the loss curves, one line per (impl, dtype), log-log, to a PNG at ``path``."""
    _save(_losses_figure(trajectory), path)


def plot_deviation(deviation: pd.DataFrame, path: Path) -> None:
    """Write the relative error from the oracle against the step, log-log, to a PNG at ``path``."""
    _save(_deviation_figure(deviation), path)


def plot_timings(timings: pd.DataFrame, path: Path) -> None:
    """Write the median time per training step (IQR error bars) as horizontal bars to a PNG at ``path``."""
    _save(_timings_figure(timings), path)


def warm() -> None:
    """Draw a small log-log figure and drop it: matplotlib builds its font cache and mathtext parser (the
    log axes' tick labels) once per process, about 0.1 s that the report's first figure would pay instead."""
    fig, ax = _figure()
    ax.plot([1.0, 1e5], [1.0, 1e-16])
    ax.set(xscale="log", yscale="log", xlabel="step", ylabel="loss", title="warm-up")
    fig.canvas.draw()


def _losses_figure(trajectory: pd.DataFrame) -> Figure:
    # A log axis cannot show a zero or negative loss, so those points are dropped with the NaNs.
    data = _finite(trajectory, ["step", "loss"], positive=["loss"])
    if data is None:
        return _message("training loss", "no data")
    fig, ax = _figure()
    colours = _colours(data)
    for (impl, dtype), group in data.groupby(["impl", "dtype"], sort=True):
        _line(ax, group["step"] + 1, group["loss"], impl, dtype, colours)
    ax.set(xscale="log", yscale="log", xlabel="step + 1", ylabel="loss", title="training loss")
    _legend(ax)
    return fig


def _deviation_figure(deviation: pd.DataFrame) -> Figure:
    data = _finite(deviation, ["step", "rel_err"])
    if data is None:
        return _message("deviation from the oracle", "no data")
    # Zeros are clipped to a floor rather than dropped: an exact match is the most
    # informative result there is, and dropping it would look like missing data.
    data = data.assign(rel_err=data["rel_err"].clip(lower=ZERO_FLOOR))
    fig, ax = _figure()
    colours = _colours(data)
    for (impl, dtype), group in data.groupby(["impl", "dtype"], sort=True):
        _line(ax, group["step"] + 1, group["rel_err"], impl, dtype, colours)
    for value, label in ((U64, "u64"), (U32, "u32")):
        # Labelled in the legend, not beside the line: text at the axes' edge collides with the legend.
        ax.axhline(value, color="grey", linestyle=":", linewidth=1, label=label)
    ax.set(xscale="log", yscale="log", xlabel="step + 1", ylabel="relative error of the per-step loss",
           title="deviation from the oracle")
    _legend(ax)
    return fig


def _timings_figure(timings: pd.DataFrame) -> Figure:
    title = "time per training step"
    if timings.empty:
        return _message(title, "no data")
    steps = timings[timings["measure"] == "train_step"]
    # A non-positive median cannot sit on the log axis; a NaN IQR only loses its error bar.
    data = _finite(steps, ["median_s"], positive=["median_s"])
    if data is None:
        return _message(title, "no timings")
    # One bar per (impl, dtype): a repeated measurement keeps the last row, the latest run.
    data = data.drop_duplicates(["impl", "dtype"], keep="last").sort_values(["impl", "dtype"])
    median = data["median_s"].to_numpy(dtype=float) * 1e6
    half = pd.to_numeric(data["iqr_s"], errors="coerce").to_numpy(dtype=float) * 1e6 / 2
    half = np.where(np.isfinite(half) & (half > 0), half, 0.0)
    # Only the IQR's width is known, so it is drawn centred on the median; the lower arm
    # is capped below the median so that it stays on the log axis.
    lower = np.minimum(half, 0.9 * median)
    fig, ax = _figure(height=1.2 + 0.45 * len(data), left=LABELS_LEFT_IN, right=0.35)
    colours = _colours(data)
    labels = [f"{impl} {dtype}" for impl, dtype in zip(data["impl"], data["dtype"])]
    rows = np.arange(len(data))
    bars = ax.barh(rows, median, xerr=[lower, half], capsize=3,
                   color=[colours[impl] for impl in data["impl"]],
                   edgecolor="black", linewidth=0.5, error_kw={"elinewidth": 1})
    for bar, dtype in zip(bars, data["dtype"]):  # hatching marks float32 as dashing does in the line plots
        bar.set_hatch(HATCHES.get(dtype, ""))
    for row, value, right in zip(rows, median, median + half):
        ax.text(right * 1.08, row, f"{value:.3g} us", va="center", fontsize=9)
    ax.set_yticks(rows, labels)
    ax.invert_yaxis()  # first (impl, dtype) at the top, reading order
    ax.set_xscale("log")
    # Bars start at the left edge on a log axis, so the limits are set from the data:
    # a decade below the lowest whisker, and room on the right for the value labels.
    left = 10.0 ** np.floor(np.log10((median - lower).min())) / 10
    ax.set_xlim(left, (median + half).max() * 3)
    ax.set(xlabel="median time per step (us, log scale; bars: IQR)", title=title)
    return fig


def _finite(frame: pd.DataFrame, numeric: Sequence[str], positive: Sequence[str] = ()) -> pd.DataFrame | None:
    """The rows whose ``numeric`` columns are finite (and ``positive`` ones > 0), or None if none are."""
    if frame.empty:
        return None
    values = {col: pd.to_numeric(frame[col], errors="coerce").astype(float) for col in numeric}
    keep = np.logical_and.reduce([np.isfinite(v.to_numpy()) for v in values.values()])
    for col in positive:
        keep &= values[col].to_numpy() > 0
    data = frame.assign(**values)[keep]
    if data.empty:
        return None
    # Labels are plotted as text; casting keeps a stray non-str (None, a number) from breaking sorting.
    return data.assign(impl=data["impl"].astype(str), dtype=data["dtype"].astype(str))


WIDTH_IN = 8.0
# Fixed margins (inches) instead of constrained layout, which took 1.1 of the 1.6 s the default run's three
# plots cost: room for the y labels on the left, and on the right for the legend outside the axes.
MARGINS_IN = {"left": 1.3, "right": 2.2, "bottom": 0.6, "top": 0.45}
LABELS_LEFT_IN = 1.9  # the timings' bar labels ("torch-compile float32") sit left of the axes, no legend


def _figure(height: float = 5.0, left: float = MARGINS_IN["left"], right: float = MARGINS_IN["right"]
            ) -> tuple[Figure, Axes]:
    """A figure on an Agg canvas with one axes inside fixed margins (inches)."""
    fig = Figure(figsize=(WIDTH_IN, height), dpi=100)
    FigureCanvasAgg(fig)
    fig.subplots_adjust(left=left / WIDTH_IN, right=1 - right / WIDTH_IN, bottom=MARGINS_IN["bottom"] / height,
                        top=1 - MARGINS_IN["top"] / height)
    return fig, fig.add_subplot()


def _message(title: str, text: str) -> Figure:
    """A figure that says why there is nothing to plot, so a missing plot is never silent."""
    fig, ax = _figure(height=3.0)
    ax.set_axis_off()
    ax.set_title(title)
    ax.text(0.5, 0.5, text, ha="center", va="center", fontsize=16, transform=ax.transAxes)
    return fig


def _colours(data: pd.DataFrame) -> dict[str, str]:
    """One colour per implementation, shared by its dtypes and the same in every figure."""
    # Known names get fixed colours, so "torch" is not red in one figure and purple in the next
    # just because another figure lacks the oracle; unknown names take the colours after them.
    names = KNOWN_IMPLS + sorted(set(data["impl"]) - set(KNOWN_IMPLS))
    return {impl: f"C{i % 10}" for i, impl in enumerate(names)}


def _line(ax: Axes, x: pd.Series, y: pd.Series, impl: str, dtype: str, colours: dict[str, str]) -> None:
    """One curve; a lone point gets a marker, since a one-point line draws nothing."""
    ax.plot(x.to_numpy(), y.to_numpy(), color=colours[impl], linestyle=LINESTYLES.get(dtype, OTHER_LINESTYLE),
            marker="o" if len(x) == 1 else None, label=f"{impl} {dtype}")


def _legend(ax: Axes) -> None:
    # Outside the axes: curves fill most corners, and loc="best" is slow on 100k-point lines.
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=9, frameon=False)


def _save(fig: Figure, path: Path) -> None:
    """Write the PNG; without the Software key its bytes do not depend on the matplotlib version."""
    fig.savefig(Path(path), format="png", metadata={"Software": None})


def plot_scaling(sweep: pd.DataFrame, axis: str, path: Path) -> None:
    """Write per-step time against one sweep axis (log-log), one line per (impl, dtype), to a PNG."""
    _save(_scaling_figure(sweep, axis), path)


def _scaling_figure(sweep: pd.DataFrame, axis: str) -> Figure:
    title = f"time per training step against {axis}"
    data = _finite(sweep[sweep["axis"] == axis] if not sweep.empty else sweep, ["value", "step_median_s"],
                   positive=["value", "step_median_s"])
    if data is None:
        return _message(title, "no data")
    fig, ax = _figure()
    colours = _colours(data)
    for (impl, dtype), group in data.sort_values("value").groupby(["impl", "dtype"], sort=True):
        _line(ax, group["value"], group["step_median_s"] * 1e6, impl, dtype, colours)
    points = data.sort_values("value").drop_duplicates("value")
    truth = _finite(points, ["oracle_step_s"], positive=["oracle_step_s"]) if "oracle_step_s" in data else None
    if truth is not None:  # the oracle's truth in extended precision: what checking costs beside training
        ax.plot(truth["value"], truth["oracle_step_s"] * 1e6, color="black", linestyle="--", linewidth=2,
                marker="s", label="oracle (extended)")
    ax.set(xscale="log", yscale="log", xlabel=AXIS_LABELS.get(axis, axis), ylabel="median time per step (us)",
           title=title)
    _legend(ax)
    return fig


AXIS_LABELS = {"width": "hidden width", "batch": "batch (samples)", "depth": "hidden layers"}
