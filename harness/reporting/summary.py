"""What a person reads: summary.md, the verdict and divergence tables, and the one-line failures,
all rendered from the verdicts and the tidy tables."""
from __future__ import annotations

import math

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from harness import notebook
from harness.checks.trajectory import Divergence
from harness.checks.verdict import CONVENTION, INCONCLUSIVE, Finding, Verdict
from harness.config import FRAMEWORK_DEFAULTS, RunConfig
from harness.reporting import tables as report
from harness.truth import products, tolerances
from harness.truth.optimizers import SPEC_CONVENTIONS, departures
from impls.spec import MIXED_PRECISIONS, ORACLE_DTYPE

if TYPE_CHECKING:
    from harness.pipeline import Outcome


def divergence_table(divergences: list[Divergence]) -> pd.DataFrame:
    """divergence.csv: one row per run; empty cells where there is nothing to say."""
    rows = []
    for d in divergences:
        none = d.step is None
        rows.append({"impl": d.impl, "dtype": d.dtype, "nonfinite_at": _blank(d.nonfinite_at),
                     "reference_nonfinite_at": _blank(d.reference_nonfinite_at),
                     "oracle_nonfinite_at": _blank(d.oracle_nonfinite_at), "first_step": "" if none else d.step,
                     "detected_by": d.detected_by, "cause": d.cause,
                     "cause_step": "" if d.cause_step is None else d.cause_step, "param": d.param,
                     "rel": "" if none or not d.param else f"{d.rel:.3e}",
                     "allowed": "" if none or not d.param else f"{d.allowed:.3e}"})
    return pd.DataFrame(rows, columns=["impl", "dtype", "nonfinite_at", "reference_nonfinite_at",
                                       "oracle_nonfinite_at", "first_step", "detected_by", "cause", "cause_step",
                                       "param", "rel", "allowed"])


def _blank(value) -> object:
    return "" if value is None else value


def verdict_table(verdicts: list[Verdict]) -> pd.DataFrame:
    """verdicts.csv: one row per implementation and dtype, faulty ones included, with what failed."""
    return pd.DataFrame([{"impl": v.impl, "dtype": v.dtype, "verdict": v.status,
                          "failed_checks": " ".join(dict.fromkeys(f.check for f in v.failing))}
                         for v in verdicts], columns=["impl", "dtype", "verdict", "failed_checks"])


def relu_kink_notes(conventions: dict[str, float | None]) -> dict[str, str]:
    """impl -> the note a failure at a relu kink carries, for each implementation whose relu'(0) is not the
    oracle's 0 (where it is, a kink explains nothing)."""
    return {impl: f"a relu pre-activation is exactly 0 at this state, where {impl} takes relu'(0) = {value}"
                  f" and the oracle 0" for impl, value in conventions.items() if value != 0}


def failure_line(f: Finding) -> str:
    """One line naming implementation, dtype, step and parameter (and what was compared)."""
    who = f"{f.impl} {f.dtype}"
    if f.check == "fault":
        return f"faulty: {who}: {f.detail}"
    if f.check == "notebook":
        return f"notebook: {who} did not reproduce the notebook: {f.detail}"
    if f.check == "blow-up":
        return (f"trajectory: {who} diverged at step {f.step} (non-finite loss) before the oracle"
                f" ({_never(f.oracle_at)}) and the reference runs in {f.dtype} ({_never(f.reference_at)})")
    if f.check == "stated":
        return f"stated: {who}: {f.detail}"
    if f.check == "policy":
        return f"policy: {who}: {f.detail}"
    if f.check == INCONCLUSIVE:
        return f"inconclusive: {who} at step {f.step}: {f.detail}"
    if f.check == "resolution":
        return (f"resolution: {who} compared up to step {f.step}: from there the truth's loss is so large that"
                f" the notebook's central difference cannot resolve its derivative (its rounding, u |loss| / h, is"
                f" over 1 % of it), so the run follows rounding, not its method")
    if f.check == "branch":
        return (f"relu branch: {who} compared up to step {f.cause_step}: there its state and the truth's put a"
                f" {f.param} pre-activation on two sides of 0 (the truth's is {f.rel:.1e} from it), with every step"
                f" checked right; past it they follow different pieces of the network, so its trajectory from step"
                f" {f.step} is not judged")
    if f.check == "convention" and f.cause != "convention":  # a one-step row at a relu kink
        return (f"convention: {who}: {f.cause} at a relu kink: {f.detail}: {f.param} at step {f.step} is {f.rel:.3e}"
                f" from the spec's truth"
                f" (allowed {f.allowed:.1e}) and within tolerance of the truth under what it states")
    if f.check == "convention":
        return (f"convention: {who}: {f.detail}; its run leaves the spec's trajectory at step {f.step}"
                f" (by its {f.detected_by}) and stays within tolerance of the truth under what it states")
    if f.check == "trajectory":
        where = f"{f.cause} of {f.param} at step {f.cause_step}" if f.param else f.cause
        note = f"; {f.detail}" if f.detail else ""
        under = f" from the truth under what it states ({'; '.join(f.under)})" if f.under else ""
        return (f"trajectory: {who} diverges at step {f.step}{under} (by its {f.detected_by}); first disagreement:"
                f" {where},"
                f" {_exceeds('relative error', f.rel, f.allowed, '.3e')}{_source(f)}{note}")
    what = "relative error" if f.check != "update" else "error relative to the step"
    note = f"; {f.detail}" if f.detail else ""
    return (f"{f.check}: {who} step {f.step} {f.param}: {_exceeds(what, f.rel, f.allowed, '.1e')}{_source(f)}"
            f" ({f.count} values out of tolerance){note}")


def _source(f: Finding) -> str:
    """Where the allowance at that state came from, when something was measured there."""
    return f" (allowed by {f.allowed_by})" if f.allowed_by and f.allowed_by != "floor" else ""


def _exceeds(what: str, rel: float, allowed: float, digits: str) -> str:
    """'relative error 1.2e-03 > allowed 1.0e-08', or that the values are not finite (never 'nan' or 'inf')."""
    if not math.isfinite(rel):
        return f"{what}: its values are not finite where the oracle's are (allowed {allowed:{digits}})"
    return f"{what} {rel:.3e} > allowed {allowed:{digits}}"


def _never(step: int | None) -> str:
    return "never" if step is None else f"step {step}"


NOTHING_COMPARED = "nothing was compared: every implementation asked for is unavailable here (see Unavailable)"


def failure_lines(verdicts: list[Verdict]) -> list[str]:
    """Every finding of every verdict, faults first (or that nothing was compared at all)."""
    if not verdicts:
        return [NOTHING_COMPARED]
    found = [f for v in verdicts for f in v.failing]
    return [failure_line(f) for f in sorted(found, key=lambda f: f.check != "fault")]


def convention_lines(verdicts: list[Verdict]) -> list[str]:
    """Every divergence a stated convention explains, and what else is named without failing."""
    return [failure_line(f) for v in verdicts for f in v.named if f.check != INCONCLUSIVE]


def inconclusive_lines(verdicts: list[Verdict]) -> list[str]:
    """Why each inconclusive run's trajectory check could not have failed."""
    return [failure_line(f) for v in verdicts for f in v.named if f.check == INCONCLUSIVE]


def headline(verdicts: list[Verdict]) -> str:
    if not verdicts:
        return f"**FAIL**: {NOTHING_COMPARED}."
    named = convention_lines(verdicts)
    named = ("\n\nStated conventions that move a trajectory off the spec's:\n\n" + "\n".join(f"- {line}" for line in named)
             if named else "")
    if all(v.passed for v in verdicts):
        by_convention = sum(v.status == CONVENTION for v in verdicts)
        return (f"**PASS**: every check passed ({len(verdicts)} implementation-dtype runs"
                + (f"; {by_convention} by a stated convention" if by_convention else "") + ")." + named)
    bad = [f"{v.impl} {v.dtype}" for v in verdicts if not v.passed and v.status != INCONCLUSIVE]
    unsure = [f"{v.impl} {v.dtype}" for v in verdicts if v.status == INCONCLUSIVE]
    unsure_text = "\n".join(f"- {line}" for line in inconclusive_lines(verdicts))
    if not bad:
        return (f"**INCONCLUSIVE** ({', '.join(unsure)}): nothing failed, but these runs could not have failed"
                " (a longer run or a larger --lr makes the truth move past what rounding allows):\n\n"
                + unsure_text + named)
    return (f"**FAIL** ({', '.join(bad)}):\n\n" + "\n".join(f"- {line}" for line in failure_lines(verdicts))
            + (f"\n\nInconclusive ({', '.join(unsure)}):\n\n" + unsure_text if unsure else "") + named)


def summary_md(config: RunConfig, outcome: "Outcome", short: bool = False) -> str:
    """summary.md; ``short`` (what the terminal shows) leaves out the tolerance reasons."""
    t = outcome.tables
    verdict = headline(outcome.verdicts)
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
    sections["Verdict per implementation (relative errors vs the oracle)"] = report.agreement(
        t["gradients"], t["parameters"], t["verdicts"])
    for dtype in dict.fromkeys(t["agreement"].dtype):
        sections[f"Pairwise agreement, {dtype} (largest parameter difference over the run)"] = report.pairwise_matrix(
            t["agreement"], dtype)
    div = t["divergence"]
    sections["First divergence"] = (div.drop(columns=["nonfinite_at", "reference_nonfinite_at", "oracle_nonfinite_at"])
                                    if (div.first_step != "").any() else "No implementation left tolerance.")
    if (div.nonfinite_at != "").any() or (div.oracle_nonfinite_at != "").any():
        sections["Non-finite losses (step of the first NaN or inf)"] = div[
            ["impl", "dtype", "nonfinite_at", "reference_nonfinite_at", "oracle_nonfinite_at"]]
    final = t["final"]
    if len(final):
        final = final.assign(loss=final.loss.map(_digits(6)),
                             **{c: final[c].map(_digits(8)) for c in final if c.startswith("pred_")})
    sections[f"Final state (step {config.steps - 1}, the loop's last forward pass)"] = final
    if "relu" in config.activations:
        sections["relu'(0) conventions"] = report.markdown(pd.DataFrame(
            [{"impl": k, "relu'(0)": "not stated" if v is None else f"{v:g}"} for k, v in outcome.conventions.items()]
        )) + "\n\nThe oracle takes relu'(0) = 0; a failure at a state where a relu pre-activation is exactly 0 says so."
    if not config.spec("float64").plain_sgd:
        sections[f"Optimizer conventions ({config.optimizer})"] = report.markdown(conventions_table(
            config.spec("float64"), outcome.optimizer_conventions)) + "\n\n" + CONVENTIONS_NOTE
    if config.framework_defaults:
        sections["Library defaults (--framework-defaults)"] = report.markdown(defaults_table(
            config.spec("float64"), outcome.specs)) + "\n\nEach run trained on its library's own defaults; the lines" \
            " above give the first step at which each default that differs moves the truth beyond what is allowed."
    if matmuls := outcome.environment.get("matmul_precision"):
        sections["Float32 matmuls"] = matmul_section(matmuls, config.matmul_precision)
        if reduced := reduced_matmuls(matmuls):
            verdict += "\n\n" + "\n".join(f"- note: {line}" for line in reduced)
    if reduced := outcome.environment.get("reduced_precision"):
        sections["Reduced precision"] = reduced_section(reduced)
    sections["Timings"] = report.timing_table(t["timings"]) if not config.no_timings else \
        "Not taken (--no-timings): timings.csv has only its header."
    if outcome.skipped:
        sections["Unavailable"] = "\n".join(f"- {k}: {v}" for k, v in outcome.skipped.items())
    if not short:
        sections["Tolerances"] = report.tolerance_table()
    title = f"harness.compare: layers {config.layers}, {config.steps:,} steps, lr {config.lr}"
    if not config.spec("float64").plain_sgd:
        title += f", {config.optimizer}" + (f" ({config.schedule} schedule)" if config.schedule != "constant" else "")
    if config.mixed_precision:
        low = MIXED_PRECISIONS[config.mixed_precision]
        title += f", mixed precision {config.mixed_precision}"
        verdict += (f"\n\nMixed precision: the {low} runs keep float32 master weights and optimizer state and"
                    f" compute forward and backward in {low}, the loss in float32"
                    + (", scaling it dynamically from 2^16" if low == "float16" else "")
                    + " (impls/spec.py); they are judged against the oracle's run under the same policy.")
    return report.summary(title, verdict, sections)


def effects_of(effects) -> dict:
    """What a reduced dtype did to the oracle's plain run in it (``harness.truth.oracle.Effects``), as plain data
    for meta.json and the report."""
    scales = [float(s) for s in effects.scales]
    return {"updates": int(effects.updates), "lost": int(effects.lost), "underflows": int(effects.underflows),
            "skipped": len(effects.skipped), "first_skipped": effects.skipped[:5],
            "loss_scale": {"start": scales[0], "end": scales[-1], "lowest": min(scales)} if scales else None}


def reduced_section(found: dict[str, dict]) -> str:
    """The table of what each reduced dtype did to the oracle's run in it."""
    rows = []
    for dtype, e in found.items():
        scale = e["loss_scale"]
        rows.append({"dtype": dtype,
                     "updates lost to rounding": f"{e['lost']:,} of {e['updates']:,}"
                                                 f" ({e['lost'] / e['updates']:.1%})" if e["updates"] else "-",
                     "loss-gradient underflows": f"{e['underflows']:,}",
                     "steps skipped": f"{e['skipped']}" + (f" (first: {', '.join(map(str, e['first_skipped']))})"
                                                           if e["skipped"] else ""),
                     "loss scale (start, lowest, end)":
                         f"{scale['start']:g}, {scale['lowest']:g}, {scale['end']:g}" if scale else "-"})
    return report.markdown(pd.DataFrame(rows)) + (
        "\n\nCounted on the oracle's plain run in each dtype (under its policy): parameter entries with a nonzero"
        " gradient whose step left them where they were; entries of the scaled loss gradient that are nonzero in"
        " float32 and round to 0 in the dtype (mixed only); steps float16's loss scaling skipped, and its scale.")


def reduced_matmuls(matmuls: dict[str, dict]) -> list[str]:
    """One line per float32 run whose matmul probe shows products computed below float32 (TF32, bfloat16)."""
    limit = tolerances.REDUCED_MATMUL.rel
    return [f"{run}: float32 matmuls compute below float32 here (a 256-deep probe product is off by"
            f" {m['probe_rel_error']:.1e} > {limit:.0e}; setting {m['setting']}); --matmul-precision highest asks"
            " for float32" for run, m in matmuls.items() if m["probe_rel_error"] > limit]


def matmul_section(matmuls: dict[str, dict], asked: str) -> str:
    """What each float32 run's matmuls ran under and how far its probe landed from the exact product."""
    limit = tolerances.REDUCED_MATMUL.rel
    rows = [{"run": run, "setting in effect": m["setting"], "probe rel error": f"{m['probe_rel_error']:.1e}",
             "products in": "float32" if m["probe_rel_error"] <= limit else "below float32 (TF32 or bfloat16)"}
            for run, m in matmuls.items()]
    return report.markdown(pd.DataFrame(rows)) + (
        f"\n\n--matmul-precision {asked}. The probe multiplies two fixed 256 x 256 float32 matrices where each"
        f" implementation runs; an error above {limit:.0e} (REDUCED_MATMUL, under Tolerances) means its products"
        " were not computed in float32. float64 products are never reduced.")


CONVENTIONS_NOTE = ("Each implementation states where its optimizer departs from the spec (impls/spec.py); `*` marks"
                    " a departure that can change this run's updates. When a run leaves the spec's trajectory, the"
                    " oracle trains again under the stated conventions: a run within tolerance of that is named"
                    " above as a convention, not failed.")


def conventions_table(spec, stated: dict[str, dict[str, str]]) -> pd.DataFrame:
    """One row per implementation (and the spec's own): its value of every convention."""
    rows = [{"impl": "spec (oracle)", **SPEC_CONVENTIONS}]
    for impl, conventions in stated.items():
        departed = departures(spec, conventions)
        rows.append({"impl": impl, **{k: f"{v} *" if k in departed else v for k, v in conventions.items()}})
    return pd.DataFrame(rows, columns=["impl", *SPEC_CONVENTIONS])


def defaults_table(shared, specs: dict) -> pd.DataFrame:
    """The hyperparameters each run trained with, against the shared ones (a differing value marked *)."""
    keys = FRAMEWORK_DEFAULTS
    rows = [{"impl": "shared", "dtype": "", **{k: f"{getattr(shared, k):g}" for k in keys}}]
    for (impl, dtype), spec in specs.items():
        rows.append({"impl": impl, "dtype": dtype, **{
            k: f"{getattr(spec, k):g}" + (" *" if getattr(spec, k) != getattr(shared, k) else "") for k in keys}})
    return pd.DataFrame(rows, columns=["impl", "dtype", *keys])


def _digits(n: int):
    """Fixed-point text with ``n`` decimals; "-" where a run blew up (never a NaN shown as a number)."""
    return lambda v: f"{v:.{n}f}" if np.isfinite(v) else "-"


def oracle_info() -> dict:
    """How much more precise than float64 the oracle is here (longdouble is platform-dependent)."""
    eps = float(np.finfo(np.longdouble).eps)
    return {"dtype": ORACLE_DTYPE, "eps": eps, "more_precise_than_float64": eps < float(np.finfo(np.float64).eps),
            "significand_bits": products.EXTENDED_BITS,
            "gradients": "complex step in clongdouble (every entry; along random directions for large networks),"
                         " reverse mode in longdouble checked against it",
            "products": f"NumPy's longdouble loop where thin; else split into float64 BLAS products, one exact and"
                        f" two rounded {products.GUARD_BITS} bits past the significand (harness.truth.products)",
            "imports_from_impls": "impls.spec only"}
