"""The library behind ``python -m harness.compare``: one comparison, its stages wired in the order the data flows.

1. configuration (harness/config.py), what it will need (harness/running/resources.py)
   and initial weights (harness/init.py);
2. which implementations run (harness/running/roster.py), each in a worker process
   of its own (harness/running/workers.py, remote.py);
3. training: the truth, the reference runs in each dtype and every native loop
   (harness/running/training.py);
4. checks (harness/checks/suite.py): teacher-forced loss, gradients and updates,
   finite differences, free-running trajectories within the measured rounding
   envelope, the replay that names a divergence's cause;
5. the verdict (harness/checks/verdict.py), the one place pass or fail is decided.

``compare(config)`` returns an ``Outcome``; the command (harness/compare.py) writes
the report (harness/reporting/) and sets the exit code. The public API: ``compare``,
``Outcome`` and ``run_config`` (also importable from ``harness.compare``).
"""
from __future__ import annotations

import importlib
import sys
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd
from tqdm import tqdm

from harness.checks import verdict
from harness.checks.agreement import pairwise
from harness.checks.suite import WhileTraining, check_all, notebook_misses
from harness.checks.verdict import Verdict
from harness.config import RunConfig, UsageError
from harness.data import load
from harness.init import initial_params
from harness.reporting import summary
from harness.reporting.summary import effects_of
from harness.reporting.tables import stored_losses
from harness.running import remote, resources, roster, timing, training, workers
from harness.running.plugins import Factory
from harness.running.remote import RemoteOracle
from harness.truth.optimizers import conventions_of
from harness.truth.oracle import Oracle
from impls.spec import ModelSpec

OUTPUT_ONLY = ("out", "overwrite", "no_plots", "no_timings", "quiet")  # how a run is written and measured, not what
# it computes


@dataclass
class Outcome:
    """Everything one comparison found: the tables results.write stores, and the verdicts."""

    tables: dict[str, pd.DataFrame]
    verdicts: list[Verdict]
    skipped: dict[str, str]
    conventions: dict[str, float | None] = field(default_factory=dict)  # impl -> its relu'(0)
    notebook_line: dict[tuple[str, str], str] = field(default_factory=dict)
    environment: dict = field(default_factory=dict)  # torch's and jax's settings, read in the workers
    optimizer_conventions: dict[str, dict[str, str]] = field(default_factory=dict)  # impl -> its stated conventions
    specs: dict[tuple[str, str], ModelSpec] = field(default_factory=dict)  # what each run trained (its own defaults)
    work: dict[str, float] = field(default_factory=dict)  # the trajectories' seconds, the run's floor (training.work)
    memory: dict = field(default_factory=dict)  # the estimate's bytes beside each process's measured peak

    @property
    def failures(self) -> list[str]:
        """One line per finding, rendered from the verdicts."""
        return summary.failure_lines(self.verdicts)

    @property
    def conventions_named(self) -> list[str]:
        """One line per divergence that a stated convention explains (not a failure)."""
        return summary.convention_lines(self.verdicts)


def compare(config: RunConfig, extra: dict[str, Factory] | None = None, timings: bool = True) -> Outcome:
    """Configuration, initial weights, training, checks, verdict: the stages in order.

    ``extra`` maps a label to a factory of your own implementation (validated first).
    An implementation that raises or hangs at any stage becomes a fault and is left out.
    Overflow to inf or NaN is a result here, reported per run, so NumPy's warnings are silenced.
    """
    with np.errstate(all="ignore"):
        try:
            return _compare(config, extra or {}, timings)
        finally:
            workers.stop_all()  # every implementation's worker and the oracle's, whatever happened


def _compare(config: RunConfig, extra: dict[str, Factory], timings: bool) -> Outcome:
    x, y = load(config.dataset)
    workers.forget_peaks()
    params = initial_params(config.spec("float64"), config.preset())
    truth = training.start_oracle(config, params, x, y)  # before the workers' imports: it trains meanwhile
    cast = roster.build(config, extra, params, x, y)
    needs = _time_check(config, cast, params, x, y)
    bar = tqdm(total=2 * len(cast.impls) + 1, disable=config.quiet or not sys.stderr.isatty(), file=sys.stderr,
               unit="task", leave=False)

    def progress(label: str) -> None:
        bar.set_description(label)
        bar.update()

    progress("trajectories")
    oracle = RemoteOracle(config.spec("float64")) if remote.usable(Oracle) else Oracle(config.spec("float64"))
    early = WhileTraining(config, cast, oracle, params, x, y)  # each run's checks, on a core training leaves free
    trained = training.train_everything(config, cast, params, x, y, timings, lambda runs, references, tail: (
        early.idle(runs, references) or (tail and not config.no_plots and _warm_plots())), truth,
        resources.train_limits(needs, config))
    checked = check_all(config, cast, trained, oracle, params, x, y, progress, early)
    rows = []
    for run in checked.runs if timings else []:
        if isinstance(run.timings, str):
            cast.fault(run.name, run.dtype, run.timings)
        rows += [] if isinstance(run.timings, str) else run.timings
    bar.close()
    conventions = {r.name: getattr(r.impl, "relu_grad_at_zero", None) for r in checked.runs}
    misses = notebook_misses(config, checked.finals)
    verdicts = verdict.decide([(r.name, r.dtype) for r in checked.runs], checked.gradients, checked.divergences,
                              cast.faults, misses, summary.relu_kink_notes(conventions), config.strict)
    tables = {
        "gradients": checked.gradients,
        "trajectory": stored_losses(checked.losses, config.steps, sorted(trained.truth.checkpoints),
                                    [d.step for d in checked.divergences if d.step is not None]),
        "parameters": checked.parameters,
        "divergence": summary.divergence_table(checked.divergences),
        "agreement": pairwise(checked.runs, trained.truth, checked.compared),
        "verdicts": summary.verdict_table(verdicts),
        "final": pd.DataFrame(checked.finals).drop(columns=["notebook_line"], errors="ignore"),
        "timings": pd.DataFrame(rows, columns=timing.COLUMNS),
    }
    environment = {k: v for impl in cast.impls for k, v in getattr(impl, "environment", {}).items()}
    environment.update({f"{impl.name} {impl.spec.dtype}": impl.framework_settings for impl in cast.impls
                        if getattr(impl, "framework_settings", None)})  # e.g. keras: its backend and floatx
    environment["matmul_precision"] = {  # what float32 products ran under, and how far the probe landed
        f"{impl.name} {impl.spec.dtype}": {"setting": impl.matmul_precision, "probe_rel_error": impl.matmul_error}
        for impl in cast.impls if getattr(impl, "matmul_error", None) is not None}
    environment["reduced_precision"] = {  # what each reduced dtype did to the oracle's plain run in it
        dtype: effects_of(stack[0].effects) for dtype, stack in trained.references.items()
        if stack and stack[0].effects is not None}
    return Outcome(tables, verdicts, cast.skipped, conventions,
                   {(f["impl"], f["dtype"]): f["notebook_line"] for f in checked.finals}, environment,
                   {r.name: conventions_of(r.impl) for r in checked.runs},
                   {(r.name, r.dtype): r.impl.spec for r in checked.runs},
                   {**training.work(trained), "oracle_checks_s": getattr(oracle, "seconds", None)},
                   {"estimate_bytes": needs.bytes, "estimate_biggest": needs.biggest_bytes,
                    "peak_bytes": {"this process (its whole life)": resources.own_peak_bytes(),
                                   **workers.peak_memory()}})


def _time_check(config: RunConfig, cast, params, x, y) -> resources.Estimate:
    """Estimated time, calibrated in the workers when it is long: said when over 30 s, refused (UsageError)
    when over --max-hours. Returns the estimate."""
    built = [(impl.name, impl.spec.dtype) for impl in cast.impls]
    needs = resources.estimate(config, x, runs=built)
    if needs.seconds <= resources.SHOW_ESTIMATE_S:
        return needs
    needs = resources.estimate(config, x, resources.calibrate(needs, config.steps, x, y, cast.impls, params), built)
    if why := resources.refusal(needs, config.max_hours, None):
        raise UsageError(why)
    if not config.quiet and needs.seconds > resources.SHOW_ESTIMATE_S:
        print(f"harness.compare: estimated {resources.duration(needs.seconds)} (longest part: "
              f"{needs.biggest_seconds}) and {resources.size(needs.bytes)} of memory", file=sys.stderr, flush=True)
    return needs


def _warm_plots() -> bool:
    """Import matplotlib and draw once (about 0.5 s) on a core free in training's tail (where the last
    trajectories leave one idle) rather than after the checks; whether it was still to do."""
    if "harness.reporting.plots" in sys.modules:
        return False
    importlib.import_module("harness.reporting.plots").warm()
    return True


def run_config(config: RunConfig) -> dict:
    """The configuration as meta.json stores it: what was computed, not where it was written."""
    return {k: v for k, v in asdict(config).items() if k not in OUTPUT_ONLY}
