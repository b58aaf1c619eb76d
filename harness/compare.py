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
Writes tables, meta.json, summary.md and plots to --out (harness/results.py).
Exit codes: 0 every check passed, 1 a check failed (printed), 2 bad usage.
"""
from __future__ import annotations

import sys
from functools import partial
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from harness import notebook, plots, plugins, report, results, timing
from harness.config import RunConfig, UsageError, parse_args
from harness.data import load
from harness.divergence import Divergence, first_divergence, loss_table, param_table
from harness.gradcheck import finite_differences, teacher_forced
from harness.init import initial_params
from harness.meta import run_metadata
from harness.runs import Run, train
from harness.plugins import Factory, PluginError
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
            found = plugins.validate(impl, spec, _cast(params, dtype), x, y)
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
    """
    x, y = load(config.dataset)
    params = initial_params(config.spec("float64"), config.preset())
    impls, factories, skipped, faults = _impls(config, extra or {}, params, x, y)
    oracle_impl = create("numpy", config.spec(ORACLE_DTYPE))
    bar = tqdm(total=2 * len(impls) + 3, disable=config.quiet or not sys.stderr.isatty(), file=sys.stderr,
               unit="task", leave=False)

    def step(label: str) -> None:
        bar.set_description(label)
        bar.update()

    bar.set_description(f"oracle {ORACLE_DTYPE}")
    oracle = train(oracle_impl, params, x, y, config.steps, config.check_every)
    step("trajectories")
    runs = []
    for impl in impls:
        bar.set_description(f"train {impl.name} {impl.spec.dtype}")
        runs.append(train(impl, params, x, y, config.steps, config.check_every))
        bar.update()
    plain = {r.dtype: r for r in runs if r.name == "numpy"}
    reference = plain.get("float64") or oracle

    step("teacher-forced and finite-difference checks")
    plain_impls = {d: r.impl for d, r in plain.items()}
    grads = pd.concat([
        teacher_forced(impls, oracle_impl, plain_impls, reference.result.checkpoints, x, y),
        finite_differences([i for i in impls if i.spec.dtype == "float64"], oracle_impl,
                           {0: params, config.steps: reference.state(config.steps)}, x, y),
    ], ignore_index=True)

    step("trajectory checks")
    loss_tables, param_tables, divergences, finals = [], [], [], []
    for run in runs:
        losses, params_err = loss_table(run, oracle, plain[run.dtype]), param_table(run, oracle, plain[run.dtype])
        div = first_divergence(run, losses, params_err, oracle_impl, plain[run.dtype].impl, x, y)
        loss_tables.append(losses)
        param_tables.append(params_err)
        divergences.append(div)
        finals.append(_final(run, config.steps, x, y))
    checkpoints = sorted(reference.result.checkpoints)
    extra = [d.step for d in divergences if d.step is not None]
    all_losses = pd.concat(loss_tables, ignore_index=True)
    stored = all_losses[all_losses.step.isin(_stored_steps(config.steps, checkpoints, extra))]

    rows = []
    for run in runs if timings else []:
        bar.set_description(f"time {run.name} {run.dtype}")
        rows += _time(run.impl, factories[run.name], run, params, x, y)
        bar.update()
    bar.close()

    tables = {
        "gradients": grads,
        "trajectory": stored.reset_index(drop=True),
        "parameters": pd.concat(param_tables, ignore_index=True),
        "divergence": _divergence_table(divergences),
        "final": pd.DataFrame(finals),
        "timings": pd.DataFrame(rows, columns=["impl", "dtype", "measure", "median_s", "iqr_s", "repeats",
                                               "number", "noisy"]),
    }
    fault_lines = [f"faulty: {key}: {fault}" for key, found in faults.items() for fault in found]
    conventions = {i.name: getattr(i, "relu_grad_at_zero", None) for i in impls}
    outcome = Outcome(tables, fault_lines + _failures(tables, conventions), skipped, faults)
    outcome.conventions = conventions
    outcome.notebook_line = {(f["impl"], f["dtype"]): f["notebook_line"] for f in finals}
    if config.is_notebook_run:
        for (impl, dtype), line in outcome.notebook_line.items():
            if dtype == "float64" and line != notebook.PRINTED:
                outcome.failures.append(f"{impl} float64 did not reproduce the notebook: {line}")
    return outcome


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


def _divergence_table(divergences: list[Divergence]) -> pd.DataFrame:
    rows = []
    for d in divergences:
        none = d.step is None
        rows.append({"impl": d.impl, "dtype": d.dtype, "first_step": "" if none else d.step,
                     "detected_by": d.detected_by, "cause": d.cause,
                     "cause_step": "" if d.cause_step is None else d.cause_step, "param": d.param,
                     "rel": "" if none else f"{d.rel:.3e}", "allowed": "" if none else f"{d.allowed:.3e}"})
    return pd.DataFrame(rows)


def _failures(tables: dict[str, pd.DataFrame], conventions: dict[str, float | None]) -> list[str]:
    """One line per failed check, naming implementation, dtype, step and parameter."""
    lines = []
    g = tables["gradients"]
    for (check, impl, dtype), bad in g[~g.passed].groupby(["check", "impl", "dtype"], sort=False):
        first = bad.iloc[0]
        note = ""
        if first.relu_kink:
            note = (f"; a relu pre-activation is exactly 0 at this state, where {impl} takes relu'(0) ="
                    f" {conventions.get(impl)} and the oracle 0")
        lines.append(f"{check}: {impl} {dtype} step {first.step} {first.param}: relative error"
                     f" {first.rel:.3e} > allowed {first.allowed:.1e} ({len(bad)} values out of tolerance){note}")
    for d in tables["divergence"].itertuples():
        if d.first_step != "":
            where = f"{d.cause} of {d.param} at step {d.cause_step}" if d.param else d.cause
            lines.append(f"trajectory: {d.impl} {d.dtype} diverges at step {d.first_step} (by its {d.detected_by});"
                         f" first disagreement: {where}, relative error {d.rel} > allowed {d.allowed}")
    return lines


def _summary(config: RunConfig, outcome: Outcome, short: bool = False) -> str:
    """summary.md; ``short`` (what the terminal shows) leaves out the tolerance reasons."""
    t = outcome.tables
    verdict = ("**PASS**: every check passed." if not outcome.failures else
               "**FAIL**:\n\n" + "\n".join(f"- {line}" for line in outcome.failures))
    sections: dict[str, pd.DataFrame | str] = {}
    oracle = _oracle_info()
    if not oracle["more_precise_than_float64"]:
        verdict += "\n\nWarning: longdouble is float64 on this platform, so the oracle is no more precise than float64."
    if config.is_notebook_run:
        sections["The notebook's printed line"] = (
            f"Notebook: `{notebook.PRINTED}`\n\n" + report.markdown(pd.DataFrame(
                [{"impl": i, "dtype": d, "line at step " + str(config.steps - 1): f"`{line}`",
                  "reproduced": "yes" if line == notebook.PRINTED else ("NO" if d == "float64" else "-")}
                 for (i, d), line in outcome.notebook_line.items()])))
    sections["Agreement (relative error vs the longdouble oracle)"] = report.agreement(
        t["gradients"], t["parameters"], t["divergence"])
    div = t["divergence"]
    sections["First divergence"] = div if (div.first_step != "").any() else "No implementation left tolerance."
    final = t["final"].drop(columns=["notebook_line"])
    final = final.assign(loss=final.loss.map("{:.6f}".format),
                         **{c: final[c].map("{:.8f}".format) for c in final if c.startswith("pred_")})
    sections[f"Final state (step {config.steps - 1}, the loop's last forward pass)"] = final
    if "relu" in config.activations:
        sections["relu'(0) conventions"] = report.markdown(pd.DataFrame(
            [{"impl": k, "relu'(0)": "not stated" if v is None else f"{v:g}"} for k, v in outcome.conventions.items()]
        )) + "\n\nThe oracle takes relu'(0) = 0; a failure at a state where a relu pre-activation is exactly 0 says so."
    sections["Timings"] = report.timing_table(t["timings"])
    if outcome.faults:
        sections["Faulty implementations (not compared)"] = "\n".join(
            f"- {key}: {fault}" for key, found in outcome.faults.items() for fault in found)
    if outcome.skipped:
        sections["Unavailable"] = "\n".join(f"- {k}: {v}" for k, v in outcome.skipped.items())
    if not short:
        sections["Tolerances"] = report.tolerance_table()
    title = f"harness.compare: layers {config.layers}, {config.steps:,} steps, lr {config.lr}"
    return report.summary(title, verdict, sections)


def _oracle_info() -> dict:
    """How much more precise than float64 the oracle is here (longdouble is platform-dependent)."""
    eps = float(np.finfo(np.longdouble).eps)
    return {"dtype": ORACLE_DTYPE, "eps": eps, "more_precise_than_float64": eps < float(np.finfo(np.float64).eps)}


def _plots(tables: dict[str, pd.DataFrame]) -> list[results.Plot]:
    return [("loss.png", plots.plot_losses, tables["trajectory"]),
            ("deviation.png", plots.plot_deviation, tables["trajectory"]),
            ("timings.png", plots.plot_timings, tables["timings"])]


def main(argv: list[str] | None = None) -> int:
    try:
        config = parse_args(argv)
        extra = {reference: plugins.load(reference) for reference in config.impl}
        out = Path(config.out) if config.out else results.default_out()
        results.check_out(out, config.overwrite)
    except (UsageError, PluginError, ValueError) as exc:
        print(f"harness.compare: error: {exc}", file=sys.stderr)
        return 2
    outcome = compare(config, extra)
    summary = _summary(config, outcome)
    meta = {"config": asdict(config), "skipped": outcome.skipped, "oracle": _oracle_info(),
            "environment": run_metadata()}
    written = results.write(out, outcome.tables, meta, summary, [] if config.no_plots else _plots(outcome.tables))
    if config.quiet:
        print("\n".join(outcome.failures) or "PASS")
    else:
        print(_summary(config, outcome, short=True))
    print(f"results: {written}")
    return 1 if outcome.failures else 0


if __name__ == "__main__":
    sys.exit(main())
