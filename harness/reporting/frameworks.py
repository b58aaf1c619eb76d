"""What differs between frameworks: the cases ``python -m harness.frameworks`` compares, and its table.

Each case is one optimizer setting, trained by numpy (the spec written out by
hand), torch-nn, jax-optax and keras from the notebook's weights, in float64,
on the shared hyperparameters and on each library's own defaults. Every row
says how far that run's parameters stand from the truth of the shared spec at
a few steps, and which stated convention or library default moved it there.
"""
from __future__ import annotations

import pandas as pd

from harness.checks.verdict import Verdict
from impls.spec import OPTIMIZERS

IMPLS = ("numpy", "torch-nn", "jax-optax", "keras")
EARLY = (1, 2, 10)  # the early steps where the table reports each run's distance from the spec's truth
STEP_DECAY = {"schedule": "step", "decay_every": 100, "decay_factor": 0.5}
# (label, settings, also on the libraries' defaults)
CASES: list[tuple[str, dict, bool]] = [(opt, {"optimizer": opt}, True) for opt in OPTIMIZERS] + [
    ("momentum, step decay", {"optimizer": "momentum", **STEP_DECAY}, False),
    ("nesterov, step decay", {"optimizer": "nesterov", **STEP_DECAY}, False),
    ("adam, weight decay 0.01", {"optimizer": "adam", "weight_decay": 0.01}, False),
    ("adam, eps 0", {"optimizer": "adam", "eps": 0.0}, False),
]
COLUMNS = ["case", "hyperparameters", "impl", "verdict", *[f"dist_step_{k}" for k in EARLY], "dist_end",
           "named"]


def rows(label: str, mode: str, early: pd.DataFrame, whole: pd.DataFrame, verdicts: list[Verdict],
         end: int) -> list[dict]:
    """One row per implementation: its verdict, what was named, and its largest parameter distance from the
    shared spec's truth at the early steps (``early``: a short run's parameter table) and at step ``end``
    (the full run's last compared state, its last forward pass)."""
    found = []
    for v in verdicts:
        def at(table: pd.DataFrame, step: int) -> float:
            mine = table[(table.impl == v.impl) & (table.step == step)]
            return float(mine.rel_err.max()) if len(mine) else float("nan")

        named = "; ".join(f.detail for f in v.findings if f.check == "convention")
        failed = "; ".join(f.check for f in v.findings if f.check != "convention")
        found.append({"case": label, "hyperparameters": mode, "impl": v.impl,
                      "verdict": v.status + (f" ({failed})" if failed else ""),
                      **{f"dist_step_{k}": at(early, k) for k in EARLY}, "dist_end": at(whole, end),
                      "named": named})
    return found


def markdown_rows(table: pd.DataFrame) -> pd.DataFrame:
    """The table with its distances in three significant digits (0 where a run is the truth to longdouble)."""
    shown = table.copy()
    for column in [c for c in table if c.startswith("dist_")]:
        shown[column] = table[column].map(lambda v: f"{v:.2g}")
    return shown
