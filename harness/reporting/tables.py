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


STORED_LOSS_STEPS = 400  # per-step losses kept in trajectory.csv: log-spaced, plus every checkpoint


def stored_losses(losses: pd.DataFrame, steps: int, checkpoints: list[int], extra: list[int]) -> pd.DataFrame:
    """trajectory.csv: 400 log-spaced steps, every checkpoint and each first divergence (all steps are judged)."""
    logspaced = np.unique(np.geomspace(1, steps, STORED_LOSS_STEPS).astype(int) - 1)
    keep = np.unique(np.concatenate([logspaced, checkpoints, extra]).astype(int).clip(0, steps - 1))
    return losses[losses.step.isin(keep)].reset_index(drop=True)


def agreement(grads: pd.DataFrame, params: pd.DataFrame, verdicts: pd.DataFrame) -> pd.DataFrame:
    """Per implementation and dtype: the worst one-step error and what was allowed at that very point, the
    finite-difference error, the accumulated error at the end, and the verdict (from verdicts.csv)."""
    tf = grads[grads.check == "teacher-forced"]
    fd = grads[(grads.check == "finite-difference") & grads.judged]
    rows = []
    for v in verdicts.itertuples():
        one = tf[(tf.impl == v.impl) & (tf.dtype == v.dtype)]
        worst = one.loc[(one.rel / one.allowed).idxmax()] if len(one) else None
        fd_rows = fd[(fd.impl == v.impl) & (fd.dtype == v.dtype)]
        mine = params[(params.impl == v.impl) & (params.dtype == v.dtype)]
        end = mine[mine.step == mine.step.max()] if len(mine) else mine
        rows.append({"impl": v.impl, "dtype": v.dtype,
                     "one-step rel err (worst)": np.nan if worst is None else worst.rel,
                     "allowed there": np.nan if worst is None else worst.allowed,
                     "finite-diff rel err": fd_rows.rel.max() if len(fd_rows) else np.nan,
                     "end rel err (params)": end.rel_err.max() if len(end) else np.nan,
                     "allowed at end": end.allowed.max() if len(end) else np.nan,
                     "verdict": v.verdict.upper()})
    return pd.DataFrame(rows)


def pairwise_matrix(pairs: pd.DataFrame, dtype: str) -> pd.DataFrame:
    """One dtype's pairwise agreement as a square table (rows and columns: implementations, then the oracle)."""
    mine = pairs[pairs.dtype == dtype]
    names = list(dict.fromkeys(mine.a))
    rows = []
    for a in names:
        row = {"": a}
        for b in names:
            rel = mine[(mine.a == a) & (mine.b == b)].rel
            row[b] = "" if a == b else ("-" if rel.isna().all() else f"{float(rel.iloc[0]):.1e}")
        rows.append(row)
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
    """Every named tolerance and factor, with its reason."""
    rows = []
    for name, value in vars(tolerances).items():
        if isinstance(value, tolerances.Tolerance):
            rows.append({"name": name, "value": f"{value.rel:.0e}", "reason": value.reason})
        elif isinstance(value, tolerances.Factor):
            rows.append({"name": name, "value": f"x{value.times:g}", "reason": value.reason})
    return pd.DataFrame(rows)


def summary(title: str, verdict: str, sections: dict[str, pd.DataFrame | str]) -> str:
    """summary.md: a title, the verdict, then one section per table."""
    parts = [f"# {title}", "", verdict, ""]
    for heading, body in sections.items():
        parts += [f"## {heading}", "", body if isinstance(body, str) else markdown(body), ""]
    return "\n".join(parts)


README_SECTIONS = ("Verdict per implementation",)  # the rest of the reference run is in the docs (Performance)
MARK_START, MARK_END = "<!-- reference:start", "<!-- reference:end -->"


def readme_block(summary_md: str) -> str:
    """The reference run's verdict and its table, as the README shows them."""
    head = summary_md.split("\n## ", 1)[0].splitlines()
    blocks = [line for line in head if line.startswith("**")]  # the one-line verdict
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
