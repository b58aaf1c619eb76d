"""The tables a person reads first, built from the tidy results, and their Markdown rendering."""
from __future__ import annotations

import numpy as np
import pandas as pd

from harness.truth import tolerances


def markdown(df: pd.DataFrame) -> str:
    """A GitHub/terminal-readable Markdown table; floats in short scientific notation."""
    def cell(v) -> str:
        if isinstance(v, (float, np.floating)):
            return "-" if not np.isfinite(v) else f"{v:.2e}"
        return str(v)
    head = "| " + " | ".join(map(str, df.columns)) + " |"
    rule = "|" + "|".join("---" for _ in df.columns) + "|"
    body = ["| " + " | ".join(cell(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join([head, rule, *body])


def agreement(grads: pd.DataFrame, params: pd.DataFrame, divergences: pd.DataFrame) -> pd.DataFrame:
    """Per implementation and dtype: the worst one-step error, the accumulated error at the end, the verdict."""
    tf = grads[grads.check == "teacher-forced"]
    fd = grads[(grads.check == "finite-difference") & grads.judged]
    end = params[params.step == params.step.max()]
    rows = []
    for (impl, dtype), one in tf.groupby(["impl", "dtype"], sort=False):
        fd_rows = fd[fd.impl == impl] if dtype == "float64" else fd.iloc[0:0]
        acc = end[(end.impl == impl) & (end.dtype == dtype)]
        div = divergences[(divergences.impl == impl) & (divergences.dtype == dtype)]
        diverged = len(div) and div.first_step.iloc[0] != ""
        ok = one.passed.all() and fd_rows.passed.all() and not diverged
        rows.append({"impl": impl, "dtype": dtype,
                     "one-step rel err (max)": one.rel.max(), "allowed": one.allowed.min(),
                     "finite-diff rel err": fd_rows.rel.max() if len(fd_rows) else np.nan,
                     "end rel err (params)": acc.rel_err.max(),
                     "growth": acc.rel_err.max() / one.rel.max() if one.rel.max() > 0 else np.nan,
                     "verdict": "PASS" if ok else "FAIL"})
    return pd.DataFrame(rows)


def timing_table(timings: pd.DataFrame) -> pd.DataFrame:
    """One row per implementation and dtype, times in microseconds or seconds as a person reads them."""
    rows = []
    for (impl, dtype), t in timings.groupby(["impl", "dtype"], sort=False):
        get = t.set_index("measure")
        def us(measure: str) -> str:
            r = get.loc[measure]
            flag = " (noisy)" if r.noisy else ""
            return f"{r.median_s * 1e6:.1f} ± {r.iqr_s * 1e6:.1f}{flag}"
        rows.append({"impl": impl, "dtype": dtype,
                     "first call (ms)": f"{get.loc['first_call'].median_s * 1e3:.2f}",
                     "loss+grads (us, median ± IQR)": us("loss_and_grads"),
                     "train step (us, median ± IQR)": us("train_step"),
                     "trajectory (s)": f"{get.loc['trajectory'].median_s:.2f}"})
    return pd.DataFrame(rows)


def tolerance_table() -> pd.DataFrame:
    named = {k: v for k, v in vars(tolerances).items() if isinstance(v, tolerances.Tolerance)}
    rows = [{"name": k, "rel": f"{v.rel:.0e}", "reason": v.reason} for k, v in named.items()]
    rows.append({"name": "VS_PLAIN_NUMPY", "rel": f"x{tolerances.VS_PLAIN_NUMPY:g}",
                 "reason": tolerances.VS_PLAIN_NUMPY_REASON})
    return pd.DataFrame(rows)


def summary(title: str, verdict: str, sections: dict[str, pd.DataFrame | str]) -> str:
    """summary.md: a title, the verdict, then one section per table."""
    parts = [f"# {title}", "", verdict, ""]
    for heading, body in sections.items():
        parts += [f"## {heading}", "", body if isinstance(body, str) else markdown(body), ""]
    return "\n".join(parts)


README_SECTIONS = ("Agreement", "First divergence", "Final state", "Timings")
MARK_START, MARK_END = "<!-- reference:start", "<!-- reference:end -->"


def readme_block(summary_md: str) -> str:
    """The reference run's headline tables, as the README shows them."""
    blocks = []
    for part in summary_md.split("\n## ")[1:]:
        title, _, body = part.partition("\n\n")
        if title.startswith(README_SECTIONS):
            blocks.append(f"**{title}**\n\n{body.strip()}")
    return "\n\n".join(blocks)


def update_readme(readme: str, summary_md: str) -> str:
    """``readme`` with the text between the reference markers replaced by ``readme_block``."""
    head, rest = readme.split(MARK_START, 1)
    marker_line, rest = rest.split("\n", 1)
    _, tail = rest.split(MARK_END, 1)
    return f"{head}{MARK_START}{marker_line}\n{readme_block(summary_md)}\n{MARK_END}{tail}"
