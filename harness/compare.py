"""python -m harness.compare [--impls numpy,torch] [--dtype float64] [--steps 100000] [--out DIR] ...

Compares every available implementation on one configuration (defaults: the
notebook's run, every implementation, float64 and float32):
1. teacher-forced: loss and gradients at the same parameters (the initial
   weights and every checkpoint of numpy's float64 trajectory) against the
   longdouble oracle;
2. finite differences of every implementation's own forward pass, in float64;
3. free-running: each native training loop against the oracle's, the loss on
   every step and the parameters at checkpoints, with the first divergence
   named down to the step and parameter;
4. timings: first call apart, steady state as median and IQR.
Long trajectories train in two worker processes (harness/runs.py); checks and
timings run here. Writes tables, meta.json, summary.md and plots to --out
(harness/results.py). Exit codes: 0 every check passed, 1 a check failed
(printed), 2 bad usage, 130/143 interrupted (nothing written).
"""
from __future__ import annotations

import signal
import sys
from functools import partial
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from harness import notebook
from harness.reporting import plots, results, summary
from harness.running import plugins, timing
from harness.config import RunConfig, UsageError, parse_args
from harness.data import load
from harness.checks.trajectory import first_divergence, loss_table, param_table
from harness.checks.gradcheck import finite_differences, teacher_forced
from harness.init import initial_params
from harness.meta import run_metadata
from harness.running.runs import Run, train_all
from harness.running.guard import Fault, guarded
from harness.running.plugins import Factory, PluginError
from impls.interface import Implementation, Unavailable
from impls.registry import available, create
from impls.spec import ORACLE_DTYPE

TIMING_REPEAT_S = 0.03  # aim for a timed repeat this long: enough to swamp the clock and dispatch jitter
TIMING_STEPS = (100, 20_000)  # bounds on native-loop steps per timed repeat
TIMING_REPEATS = 5
CALL_REPEATS, CALLS_PER_REPEAT = 7, 20
MAX_PRED_COLUMNS = 16  # final.csv keeps every prediction up to this many outputs (accuracy always)
STORED_LOSS_STEPS = 400  # per-step losses kept in trajectory.csv: log-spaced, plus every checkpoint


@dataclass
class Outcome:
    tables: dict[str, pd.DataFrame]
    failures: list[str]
    skipped: dict[str, str]
    faults: dict[str, list[str]] = field(default_factory=dict)  # "impl dtype" -> what validation found
    conventions: dict[str, float | None] = field(default_factory=dict)  # impl -> its relu'(0)
    notebook_line: dict[tuple[str, str], str] = field(default_factory=dict)


def _impls(config: RunConfig, extra: dict[str, Factory], params, x, y):
    """(implementations to run, numpy first in each dtype; factory per name; skipped; faults)."""
    wanted = ["numpy"] + [n for n in config.impls if n != "numpy"]
    impls, factories, skipped, faults = [], {n: partial(create, n) for n in wanted}, {}, {}
    for dtype in config.dtype:
        spec = config.spec(dtype)
        ready, missing = available(spec, wanted)
        impls += ready.values()
        skipped.update({f"{name} {dtype}": reason for name, reason in missing.items()})
        for label, factory in extra.items():
            try:
                impl = factory(spec)
            except Unavailable as exc:
                skipped[f"{label} {dtype}"] = str(exc)
                continue
            except Exception as exc:
                faults[f"{label} {dtype}"] = [f"construction raised {type(exc).__name__}: {exc}"]
                continue
            found = plugins.validate(impl, spec, _cast(params, dtype), x, y, config.time_limit)
            if found:
                faults[f"{getattr(impl, 'name', label)} {dtype}"] = found
            else:
                impls.append(impl)
                factories[impl.name] = factory
    return impls, factories, skipped, faults


def _cast(params, dtype: str) -> dict[str, np.ndarray]:
    return {k: np.asarray(v, dtype=dtype) for k, v in params.items()}


def _stored_steps(steps: int, checkpoints: list[int], extra: list[int]) -> np.ndarray:
    logspaced = np.unique(np.geomspace(1, steps, STORED_LOSS_STEPS).astype(int) - 1)
    return np.unique(np.concatenate([logspaced, checkpoints, extra]).astype(int).clip(0, steps - 1))


def _time(impl: Implementation, factory: Factory, run: Run, params, x, y) -> list[dict]:
    """First call on a fresh instance, steady loss-and-grads and train-step times, the whole run."""
    fresh = factory(impl.spec)
    per_step = run.wall_s / len(run.result.losses)
    steps = int(np.clip(TIMING_REPEAT_S / per_step, *TIMING_STEPS))
    measured = {
        "first_call": timing.once(lambda: fresh.loss_and_grads(params, x, y)),
        "loss_and_grads": timing.steady(lambda: impl.loss_and_grads(params, x, y), CALL_REPEATS, CALLS_PER_REPEAT),
        "train_step": timing.steady(lambda: impl.train(params, x, y, steps), TIMING_REPEATS, 1, steps),
        "trajectory": timing.Timing(run.wall_s, 0.0, 1, 1),
    }
    return [{"impl": impl.name, "dtype": impl.spec.dtype, "measure": m, "median_s": t.median_s, "iqr_s": t.iqr_s,
             "repeats": t.repeats, "number": t.number, "noisy": t.noisy} for m, t in measured.items()]


def compare(config: RunConfig, extra: dict[str, Factory] | None = None, timings: bool = True) -> Outcome:
    """Run every check; the tables it returns are what results.write stores.

    ``extra`` maps a label to a factory of your own implementation (validated first).
    An implementation that raises or hangs at any stage becomes a fault and is left out.
    Overflow to inf or NaN is a result here, reported per run, so NumPy's warnings are silenced.
    """
    with np.errstate(all="ignore"):
        return _compare(config, extra or {}, timings)


def _compare(config: RunConfig, extra: dict[str, Factory], timings: bool) -> Outcome:
    x, y = load(config.dataset)
    params = initial_params(config.spec("float64"), config.preset())
    impls, factories, skipped, faults = _impls(config, extra, params, x, y)
    oracle_impl = create("numpy", config.spec(ORACLE_DTYPE))
    bar = tqdm(total=2 * len(impls) + 1, disable=config.quiet or not sys.stderr.isatty(), file=sys.stderr,
               unit="task", leave=False)

    def attempt(impl: Implementation, label: str, fn):
        """fn(), or None with the fault recorded against ``impl``."""
        bar.set_description(f"{label} {impl.name} {impl.spec.dtype}")
        bar.update()
        try:
            return guarded(f"{label}()", fn, config.time_limit)
        except Fault as exc:
            faults.setdefault(f"{impl.name} {impl.spec.dtype}", []).append(str(exc))
            return None

    bar.set_description("trajectories")
    trained = train_all([(oracle_impl, partial(create, "numpy"))] + [(i, factories[i.name]) for i in impls],
                        params, x, y, config.steps, config.check_every, config.time_limit)
    bar.update()
    oracle, runs = trained[0], []
    for impl, run in zip(impls, trained[1:]):
        if isinstance(run, Run):
            runs.append(run)
        else:
            faults.setdefault(f"{impl.name} {impl.spec.dtype}", []).append(run)
    plain = {r.dtype: r for r in runs if r.name == "numpy"}
    reference = plain.get("float64") or oracle
    states = {k: v for k, v in reference.result.checkpoints.items() if _finite(v)}
    plain_impls = {d: r.impl for d, r in plain.items()}

    grads, fd_states = [], {0: params, **({config.steps: states[config.steps]} if config.steps in states else {})}
    for run in list(runs):
        checks = attempt(run.impl, "loss_and_grads", lambda: pd.concat([
            teacher_forced([run.impl], oracle_impl, plain_impls, states, x, y),
            finite_differences([run.impl] if run.dtype == "float64" else [], oracle_impl, fd_states, x, y),
        ], ignore_index=True))
        if checks is None:
            runs.remove(run)
        else:
            grads.append(checks)

    loss_tables, param_tables, divergences, finals = [], [], [], []
    for run in runs:
        horizon = _horizon(run, oracle, plain[run.dtype], config.steps)
        losses = loss_table(run, oracle, plain[run.dtype])
        losses = losses[losses.step < horizon]
        params_err = param_table(run, oracle, plain[run.dtype], horizon)
        div = first_divergence(run, losses, params_err, oracle_impl, plain[run.dtype].impl, x, y)
        div.nonfinite_at, div.oracle_nonfinite_at = run.nonfinite_at, oracle.nonfinite_at
        div.plain_nonfinite_at = plain[run.dtype].nonfinite_at
        loss_tables.append(losses)
        param_tables.append(params_err)
        divergences.append(div)
        finals.append(_final(run, config.steps, x, y))
    checkpoints = sorted(reference.result.checkpoints)
    extra_steps = [d.step for d in divergences if d.step is not None]
    all_losses = pd.concat(loss_tables, ignore_index=True)
    stored = all_losses[all_losses.step.isin(_stored_steps(config.steps, checkpoints, extra_steps))]

    rows = []
    for run in runs if timings else []:
        rows += attempt(run.impl, "timing", partial(_time, run.impl, factories[run.name], run, params, x, y)) or []
    bar.close()

    tables = {
        "gradients": pd.concat(grads, ignore_index=True),
        "trajectory": stored.reset_index(drop=True),
        "parameters": pd.concat(param_tables, ignore_index=True),
        "divergence": summary.divergence_table(divergences),
        "final": pd.DataFrame(finals).drop(columns=["notebook_line"]),  # the line is checked, not stored
        "timings": pd.DataFrame(rows, columns=["impl", "dtype", "measure", "median_s", "iqr_s", "repeats",
                                               "number", "noisy"]),
    }
    fault_lines = [f"faulty: {key}: {fault}" for key, found in faults.items() for fault in found]
    conventions = {r.name: getattr(r.impl, "relu_grad_at_zero", None) for r in runs}
    outcome = Outcome(tables, fault_lines + summary.failures(tables, conventions), skipped, faults)
    outcome.conventions = conventions
    outcome.notebook_line = {(f["impl"], f["dtype"]): f["notebook_line"] for f in finals}
    if config.is_notebook_run:
        for (impl, dtype), line in outcome.notebook_line.items():
            if dtype == "float64" and line != notebook.PRINTED:
                outcome.failures.append(f"{impl} float64 did not reproduce the notebook: {line}")
    return outcome


def _finite(state: dict[str, np.ndarray]) -> bool:
    return all(np.all(np.isfinite(v)) for v in state.values())


def _horizon(run: Run, oracle: Run, plain: Run, steps: int) -> int:
    """Steps compared: up to the first non-finite loss of the run, its baseline or the oracle."""
    return min([k for k in (run.nonfinite_at, oracle.nonfinite_at, plain.nonfinite_at) if k is not None] + [steps])


def _final(run: Run, steps: int, x, y) -> dict:
    """The notebook's printed state: the loop's last forward pass, at step steps - 1."""
    preds = run.impl.forward(run.state(steps - 1), x).ravel()
    loss = float(run.result.losses[steps - 1])
    row = {"impl": run.name, "dtype": run.dtype, "step": steps - 1, "loss": loss}
    if preds.size <= MAX_PRED_COLUMNS:
        row.update({f"pred_{i}": float(p) for i, p in enumerate(preds)})
    correct = np.round(preds) == y.ravel()
    row["solved"], row["accuracy"] = bool(np.all(correct)), float(np.mean(correct))
    row["notebook_line"] = notebook.printed_line(loss, preds)
    return row


def _plots(tables: dict[str, pd.DataFrame]) -> list[results.Plot]:
    return [("loss.png", plots.plot_losses, tables["trajectory"]),
            ("deviation.png", plots.plot_deviation, tables["trajectory"]),
            ("timings.png", plots.plot_timings, tables["timings"])]


OUTPUT_ONLY = ("out", "overwrite", "no_plots", "quiet")  # how a run is written, not what it computes
INTERRUPTED = {signal.SIGINT: 130, signal.SIGTERM: 143}  # 128 + signal number, the shell's convention


class Interrupted(BaseException):
    """Ctrl-C or SIGTERM arrived; the run stops and writes nothing."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.code = INTERRUPTED[signum]


def _on_signal(signum, frame):
    raise Interrupted(signum)


def run_config(config: RunConfig) -> dict:
    """The configuration as meta.json stores it: what was computed, not where it was written."""
    return {k: v for k, v in asdict(config).items() if k not in OUTPUT_ONLY}


def main(argv: list[str] | None = None) -> int:
    try:
        config = parse_args(argv)
        extra = {reference: plugins.load(reference) for reference in config.impl}
        out = Path(config.out) if config.out else results.default_out()
        results.check_out(out, config.overwrite)
    except (UsageError, PluginError, ValueError) as exc:
        print(f"harness.compare: error: {exc}", file=sys.stderr)
        return 2
    previous = {s: signal.signal(s, _on_signal) for s in INTERRUPTED}
    try:
        if not config.quiet:
            print(f"harness.compare: {config.steps:,} steps of {', '.join(config.impls + config.impl)} in"
                  f" {', '.join(config.dtype)}; results go to {out}", file=sys.stderr, flush=True)
        outcome = compare(config, extra)
        text = summary.summary_md(config, outcome)
        meta = {"config": run_config(config), "skipped": outcome.skipped, "oracle": summary.oracle_info(),
                "environment": run_metadata()}
        plots_ = [] if config.no_plots else _plots(outcome.tables)
        written = results.write(out, outcome.tables, meta, text, plots_)
    except (Interrupted, KeyboardInterrupt) as exc:
        code = exc.code if isinstance(exc, Interrupted) else INTERRUPTED[signal.SIGINT]
        print(f"harness.compare: interrupted; nothing was written to {out}", file=sys.stderr)
        return code
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    if config.quiet:
        print("\n".join(outcome.failures) or "PASS")
    else:
        print(summary.summary_md(config, outcome, short=True))
    print(f"results: {written}")
    return 1 if outcome.failures else 0


if __name__ == "__main__":
    sys.exit(main())
