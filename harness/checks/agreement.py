"""Pairwise agreement between implementations, so the odd one out shows without trusting the oracle."""
from __future__ import annotations

import pandas as pd

from harness.running.runs import Run
from harness.truth.references import Reference, param_errors


def pairwise(runs: list[Run], truth: Reference, end: dict[tuple[str, str], int]) -> pd.DataFrame:
    """dtype, a, b, rel: the largest parameter difference between runs a and b over their common checkpoints
    before both stop being compared (relative to the truth's largest parameter there), the truth included as
    "oracle"."""
    rows = []
    for dtype in dict.fromkeys(r.dtype for r in runs):
        members = [(r.name, r.result.checkpoints, end[(r.name, r.dtype)]) for r in runs if r.dtype == dtype]
        members.append(("oracle", truth.checkpoints, len(truth.losses) + 1))
        worst = {}
        for i, (a, states_a, end_a) in enumerate(members):
            for b, states_b, end_b in members[i:]:
                steps = [k for k in states_a if k in states_b and k < min(end_a, end_b) and k in truth.checkpoints]
                worst[a, b] = worst[b, a] = max((e for k in steps for e in
                                                 param_errors(states_a[k], states_b[k], truth.state(k)).values()),
                                                default=float("nan"))
        rows += [{"dtype": dtype, "a": a, "b": b, "rel": worst[a, b]} for a, _, _ in members for b, _, _ in members]
    return pd.DataFrame(rows, columns=["dtype", "a", "b", "rel"])
