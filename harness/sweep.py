"""python -m harness.sweep [--axes width,batch,depth] [--impls ...] [--impl MODULE:ATTR] [--dtype float64,float32]
    [--steps 200] [--device cpu] [--jobs 1 | --scheduler tcp://HOST:PORT] [--time-limit 600]

How each implementation's cost grows with the work, one factor at a time around a
base point (parity:4, one hidden tanh layer of width 16, sigmoid output):
- width: hidden width 4 to 16,384;
- batch: parity:N for N = 2 to 12, so 4 to 4,096 samples;
- depth: 1 to 4 hidden layers of width 16.
At every point the full comparison runs on a short trajectory (``--steps``: the
teacher-forced, finite-difference and trajectory checks, so a fast path that is
wrong fails here too) and takes the same timings as the main report.
Writes sweep.csv (tidy), summary.md (fastest path per framework at each size,
crossovers) and log-log plots of time per step against width and batch.
``--jobs N`` runs grid points in N processes; the default is 1 because points
running side by side on a 2-core machine slow each other and skew every timing.
``--scheduler tcp://HOST:PORT`` runs them on an existing Dask cluster instead
(``harness.running.executors``); each row says the host and device it ran on.
Either way an implementation (``--impl``: your own, validated first) that crashes,
is killed or hangs past ``--time-limit`` is one fault line and the sweep goes on.
Exit codes: 0 every check passed, 1 a check failed at some point, 2 bad usage, 3 an internal error
(one line, the traceback saved to a file), 4 the Dask workers run other versions than this process
(nothing run), 130 interrupted (nothing written).
"""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from harness.checks.verdict import INCONCLUSIVE
from harness.reporting import plots, results
from harness.reporting.summary import inconclusive_lines
from harness.reporting import tables as report
from harness.pipeline import compare, run_config
from harness import internal
from harness.cli import Interrupted, Parser, interrupted_code, stopping_on_signals
from harness.config import HELP, RunConfig, UsageError, repeated, validate
from harness.data import load
from harness.meta import run_metadata
from harness.running import plugins
from harness.running.executors import VERSION_MISMATCH, SchedulerError, VersionMismatch, executor, gpu_capped, where
from impls.registry import names

BASE = {"width": 16, "depth": 1, "batch": 4}  # batch is the parity bit count: 2**4 = 16 samples
GRID = {"width": (4, 16, 64, 256, 1024, 4096, 16384), "batch": (2, 4, 6, 8, 10, 12), "depth": (1, 2, 3, 4)}


@dataclass(frozen=True)
class Point:
    axis: str
    value: int  # the width, the number of samples, or the number of hidden layers

    def settings(self) -> dict:
        """width, depth and parity bits of this point."""
        knobs = dict(BASE)
        knobs[self.axis] = self.value if self.axis != "batch" else self.value.bit_length() - 1
        return knobs

    def config(self, base: RunConfig) -> RunConfig:
        knobs = self.settings()
        bits = knobs["batch"]
        layers = (bits, *[knobs["width"]] * knobs["depth"], 1)
        return RunConfig(impls=base.impls, impl=base.impl, dtype=base.dtype, steps=base.steps,
                         check_every=base.check_every, device=base.device, time_limit=base.time_limit,
                         layers=layers, activations=("tanh",) * knobs["depth"] + ("sigmoid",),
                         dataset=f"parity:{bits}", quiet=True)


def points(axes: tuple[str, ...]) -> list[Point]:
    """The grid: each axis swept with the others at the base point (batch as sample counts)."""
    return [Point(axis, v if axis != "batch" else 2**v) for axis in axes for v in GRID[axis]]


def measure(point: Point, base: RunConfig) -> tuple[pd.DataFrame, list[str]]:
    """One row per implementation and dtype at ``point``, and the failures found there (with the host and
    device it ran on)."""
    config = point.config(base)
    start = time.perf_counter()
    outcome = compare(config, {reference: plugins.load(reference) for reference in config.impl})
    point_s = time.perf_counter() - start
    ran_on = where(config.device)
    t = outcome.tables["timings"].set_index(["impl", "dtype", "measure"])
    grads = outcome.tables["gradients"]
    rows = []
    for v in outcome.verdicts:  # the one verdict decides "passed"; faulty implementations get a row too
        one = grads[(grads.check == "teacher-forced") & (grads.impl == v.impl) & (grads.dtype == v.dtype)]
        timed = (v.impl, v.dtype, "train_step") in t.index
        impl, dtype = v.impl, v.dtype
        rows.append({"axis": point.axis, "value": point.value, **point.settings(),
                     "samples": 2 ** point.settings()["batch"], "impl": impl, "dtype": dtype,
                     "step_median_s": t.loc[(impl, dtype, "train_step"), "median_s"] if timed else float("nan"),
                     "step_iqr_s": t.loc[(impl, dtype, "train_step"), "iqr_s"] if timed else float("nan"),
                     "call_median_s": t.loc[(impl, dtype, "loss_and_grads"), "median_s"] if timed else float("nan"),
                     "first_call_s": t.loc[(impl, dtype, "first_call"), "median_s"] if timed else float("nan"),
                     "one_step_rel_err": one.rel.max() if len(one) else float("nan"), "verdict": v.status,
                     "passed": v.passed, "matmul_form": jax_forms(config, impl, dtype), "point_s": point_s,
                     **oracle_share(outcome.work, config.steps), **ran_on})
    frame = pd.DataFrame(rows).drop(columns=["batch"]).rename(columns={"samples": "batch"})
    at = f"{point.axis}={point.value}"
    unsure = inconclusive_lines(outcome.verdicts)  # not failures, but never "passed" either
    return frame, [f"{at}: {line}" for line in outcome.failures + unsure]


def oracle_share(work: dict, steps: int) -> dict[str, float]:
    """The oracle's cost at a point (the same on each of its rows): its truth's seconds per step, the seconds its
    truths at the checkpoints took, and its share of the point's work (its runs and those truths, against the
    implementations' trajectories)."""
    oracle = work.get("oracle_s", float("nan")) + (work.get("oracle_checks_s") or 0.0)
    total = oracle + work.get("trajectories_s", float("nan"))
    return {"oracle_step_s": work.get("truth_s", float("nan")) / steps,
            "oracle_checks_s": work.get("oracle_checks_s") or float("nan"),
            "oracle_share": oracle / total if total > 0 else float("nan")}


def jax_forms(config: RunConfig, impl: str, dtype: str) -> str:
    """For ``jax``: each layer's product form at this point ("broadcast" or "dot", joined by "+"), where its
    fused loop switches between them (impls.jax_grad.matmul_form); empty for the others."""
    if impl != "jax":
        return ""
    from impls.jax_grad import layer_forms  # jax ran here, so it imports

    return "+".join(layer_forms(config.spec(dtype), len(load(config.dataset)[0])))


def framework(impl: str) -> str:
    return impl.split("-")[0]


def fastest(sweep: pd.DataFrame) -> pd.DataFrame:
    """Per axis value and dtype: the fastest implementation overall and the fastest path in each framework."""
    rows = []
    sweep = sweep.dropna(subset=["step_median_s"])  # a faulty implementation has a verdict but no timing
    for (axis, value, dtype), group in sweep.groupby(["axis", "value", "dtype"], sort=False):
        best = group.loc[group.step_median_s.idxmin()]
        row = {"axis": axis, "value": value, "dtype": dtype, "fastest": best.impl,
               "us/step": f"{best.step_median_s * 1e6:.3g}"}
        for fw, paths in group.groupby(group.impl.map(framework), sort=True):
            row[f"fastest {fw}"] = paths.loc[paths.step_median_s.idxmin()].impl
        if "matmul_form" in group and (group.impl == "jax").any():
            row["jax matmul form"] = group.loc[group.impl == "jax", "matmul_form"].iloc[0]
        rows.append(row)
    return pd.DataFrame(rows)


def crossovers(sweep: pd.DataFrame) -> list[str]:
    """Where, along each axis, the fastest implementation changes (between two grid values)."""
    lines = []
    table = fastest(sweep)
    for (axis, dtype), group in table.groupby(["axis", "dtype"], sort=False):
        previous = None
        for row in group.itertuples():
            if previous is not None and row.fastest != previous.fastest:
                lines.append(f"{axis}, {dtype}: {previous.fastest} is fastest up to {previous.value},"
                             f" {row.fastest} from {row.value}")
            previous = row
    return lines or ["No crossover: the same implementation is fastest at every point."]


def parse(argv: list[str] | None) -> tuple[RunConfig, tuple[str, ...], int, str | None, Path, bool]:
    parser = Parser(prog="python -m harness.sweep", description=__doc__.splitlines()[2])
    parser.add_argument("--axes", default="width,batch,depth", help="axes to sweep (default: width,batch,depth)")
    parser.add_argument("--impls", default=",".join(names()), help="implementations (default: every registered one)")
    parser.add_argument("--impl", action="append", default=[], metavar="MODULE:ATTR", help="your own (repeatable)")
    parser.add_argument("--dtype", default="float64,float32", help="dtypes (default: float64,float32)")
    parser.add_argument("--steps", type=int, default=200, help="trajectory length checked at each point (default: 200)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda, for torch and jax (default: cpu)")
    parser.add_argument("--jobs", type=int, default=1, help="grid points run in parallel processes (default: 1)")
    parser.add_argument("--scheduler", default=None, metavar="tcp://HOST:PORT",
                        help="run the grid points on this Dask cluster instead (needs the dask extra)")
    parser.add_argument("--time-limit", type=float, default=RunConfig.time_limit, metavar="SECONDS",
                        help=HELP["time_limit"])
    parser.add_argument("--out", default=None, help="results folder (default: a new one under results/)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out folder")
    parser.add_argument("--quiet", action="store_true", help="print only the verdict and failures")
    args = parser.parse_args(argv)
    axes = tuple(args.axes.split(","))
    if twice := repeated(axes):
        raise UsageError(f"--axes lists {twice!r} more than once")
    if unknown := [a for a in axes if a not in GRID]:
        raise UsageError(f"unknown axis {unknown[0]!r}; choose from {', '.join(GRID)}")
    if args.jobs < 1:
        raise UsageError(f"--jobs must be >= 1, got {args.jobs}")
    base = RunConfig(impls=tuple(args.impls.split(",")), impl=tuple(args.impl), dtype=tuple(args.dtype.split(",")),
                     steps=args.steps, check_every=max(1, args.steps // 2), device=args.device,
                     time_limit=args.time_limit)
    validate(base)
    for reference in base.impl:
        try:
            plugins.load(reference)
        except plugins.PluginError as exc:
            raise UsageError(str(exc)) from None
    out = Path(args.out) if args.out else results.default_out(results.RESULTS, "sweep")
    results.check_out(out, args.overwrite)
    return base, axes, args.jobs, args.scheduler, out, args.quiet


def main(argv: list[str] | None = None) -> int:
    try:
        base, axes, jobs, scheduler, out, quiet = parse(argv)
        jobs, note = gpu_capped(jobs, base.device, scheduler)
        if note:
            print(f"harness.sweep: {note}", file=sys.stderr)
        pool = executor(jobs, scheduler)
    except VersionMismatch as exc:
        print(f"harness.sweep: error: {exc}", file=sys.stderr)
        return VERSION_MISMATCH
    except (UsageError, ValueError, SchedulerError) as exc:
        print(f"harness.sweep: error: {exc}", file=sys.stderr)
        return 2
    try:
        with stopping_on_signals():
            return _sweep(base, axes, pool, out, quiet)
    except (Interrupted, KeyboardInterrupt) as exc:
        print(f"harness.sweep: interrupted; nothing was written to {out}", file=sys.stderr)
        return interrupted_code(exc)
    except Exception as exc:  # noqa: BLE001 -- a harness bug: one line, the traceback in a file
        return internal.report("harness.sweep", exc, out)


def _sweep(base: RunConfig, axes: tuple[str, ...], pool, out: Path, quiet: bool) -> int:
    """Every grid point compared and timed (on ``pool``, an executor), the results written; the exit code."""
    grid, ran_on = points(axes), pool.description
    if not quiet:
        print(f"harness.sweep: {len(grid)} points on {ran_on}; results go to {out}", file=sys.stderr, flush=True)
    try:
        measured = pool.run(measure, grid, base)
    finally:
        pool.close()
    sweep = pd.concat([frame for frame, _ in measured], ignore_index=True)
    failures = [line for _, lines in measured for line in lines]
    summary = report.summary(
        f"harness.sweep: {len(grid)} points, {base.steps} checked steps each",
        "**PASS**: every check passed at every point." if sweep.passed.all() else
        ("**INCONCLUSIVE**" if sweep[~sweep.passed].verdict.eq(INCONCLUSIVE).all() else "**FAIL**")
        + ":\n\n" + "\n".join(f"- {line}" for line in failures),
        {"Fastest path per framework at each size": fastest(sweep),
         "Crossovers": "\n".join(f"- {line}" for line in crossovers(sweep)),
         "The oracle's cost at each point": oracle_costs(sweep),
         "Every point (time per step, us)": _wide(sweep)})
    meta = {"config": {**run_config(base), "axes": list(axes), "grid": {a: list(GRID[a]) for a in axes},
                       "base": BASE, "ran_on": ran_on}, "environment": run_metadata()}
    figures = [(f"scaling_{axis}.png", lambda df, path, a=axis: plots.plot_scaling(df, a, path), sweep)
               for axis in axes if axis in ("width", "batch", "depth")]
    written = results.write(out, {"sweep": sweep}, meta, summary, figures)
    print("\n".join(failures) or "PASS" if quiet else summary)
    print(f"results: {written}")
    return 0 if sweep.passed.all() else 1


def oracle_costs(sweep: pd.DataFrame) -> pd.DataFrame:
    """One row per grid point: its wall seconds, the truth's time per step in extended precision beside the
    fastest and the slowest implementation's, the seconds of its truths at the checkpoints, and the oracle's
    share of the point's work."""
    rows = []
    for (axis, value), group in sweep.groupby(["axis", "value"], sort=False):
        steps = group.step_median_s.dropna()
        rows.append({"axis": axis, "value": value, "point (s)": f"{group.point_s.iloc[0]:.0f}",
                     "oracle (us/step)": f"{group.oracle_step_s.iloc[0] * 1e6:.3g}",
                     "fastest impl (us/step)": f"{steps.min() * 1e6:.3g}" if len(steps) else "-",
                     "slowest impl (us/step)": f"{steps.max() * 1e6:.3g}" if len(steps) else "-",
                     "oracle at checkpoints (s)": f"{group.oracle_checks_s.iloc[0]:.2g}",
                     "oracle's share": f"{group.oracle_share.iloc[0]:.1%}"})
    return pd.DataFrame(rows)


def _wide(sweep: pd.DataFrame) -> pd.DataFrame:
    """One row per grid point, one column per implementation and dtype: microseconds per step."""
    rows = []
    sweep = sweep.dropna(subset=["step_median_s"])
    for (axis, value), group in sweep.groupby(["axis", "value"], sort=False):
        row = {"axis": axis, "value": value}
        row.update({f"{i} {d}": f"{t * 1e6:.3g}" for i, d, t in zip(group.impl, group.dtype, group.step_median_s)})
        rows.append(row)
    return pd.DataFrame(rows)


if __name__ == "__main__":
    sys.exit(main())
