"""What a person reads: summary.md, the divergence table and the one-line failures, from the tidy tables."""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from harness import notebook
from harness.reporting import tables as report
from harness.config import RunConfig
from harness.checks.trajectory import Divergence
from impls.spec import ORACLE_DTYPE

if TYPE_CHECKING:
    from harness.compare import Outcome


def divergence_table(divergences: list[Divergence]) -> pd.DataFrame:
    """divergence.csv: one row per run; empty cells where there is nothing to say."""
    rows = []
    for d in divergences:
        none = d.step is None
        rows.append({"impl": d.impl, "dtype": d.dtype, "nonfinite_at": _blank(d.nonfinite_at),
                     "plain_nonfinite_at": _blank(d.plain_nonfinite_at),
                     "oracle_nonfinite_at": _blank(d.oracle_nonfinite_at), "first_step": "" if none else d.step,
                     "detected_by": d.detected_by, "cause": d.cause,
                     "cause_step": "" if d.cause_step is None else d.cause_step, "param": d.param,
                     "rel": "" if none or not d.param else f"{d.rel:.3e}",
                     "allowed": "" if none or not d.param else f"{d.allowed:.3e}"})
    return pd.DataFrame(rows)


def _blank(value) -> object:
    return "" if value is None else value


def failures(tables: dict[str, pd.DataFrame], conventions: dict[str, float | None]) -> list[str]:
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
        if d.nonfinite_at != "" and d.oracle_nonfinite_at == "" and d.plain_nonfinite_at == "":
            lines.append(f"trajectory: {d.impl} {d.dtype} diverged at step {d.nonfinite_at} (non-finite loss) while"
                         f" the oracle and numpy {d.dtype} stay finite")
        if d.first_step != "" and d.cause != "accumulated rounding":
            where = f"{d.cause} of {d.param} at step {d.cause_step}" if d.param else d.cause
            lines.append(f"trajectory: {d.impl} {d.dtype} diverges at step {d.first_step} (by its {d.detected_by});"
                         f" first disagreement: {where}, relative error {d.rel} > allowed {d.allowed}")
    return lines


def summary_md(config: RunConfig, outcome: "Outcome", short: bool = False) -> str:
    """summary.md; ``short`` (what the terminal shows) leaves out the tolerance reasons."""
    t = outcome.tables
    verdict = ("**PASS**: every check passed." if not outcome.failures else
               "**FAIL**:\n\n" + "\n".join(f"- {line}" for line in outcome.failures))
    sections: dict[str, pd.DataFrame | str] = {}
    oracle = oracle_info()
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
    sections["First divergence"] = (div.drop(columns=["nonfinite_at", "plain_nonfinite_at", "oracle_nonfinite_at"])
                                    if (div.first_step != "").any() else "No implementation left tolerance.")
    if (div.nonfinite_at != "").any() or (div.oracle_nonfinite_at != "").any():
        sections["Non-finite losses (step of the first NaN or inf)"] = div[
            ["impl", "dtype", "nonfinite_at", "plain_nonfinite_at", "oracle_nonfinite_at"]]
    final = t["final"]
    final = final.assign(loss=final.loss.map(_digits(6)),
                         **{c: final[c].map(_digits(8)) for c in final if c.startswith("pred_")})
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


def _digits(n: int):
    """Fixed-point text with ``n`` decimals; "-" where a run blew up (never a NaN shown as a number)."""
    return lambda v: f"{v:.{n}f}" if np.isfinite(v) else "-"


def oracle_info() -> dict:
    """How much more precise than float64 the oracle is here (longdouble is platform-dependent)."""
    eps = float(np.finfo(np.longdouble).eps)
    return {"dtype": ORACLE_DTYPE, "eps": eps, "more_precise_than_float64": eps < float(np.finfo(np.float64).eps)}
