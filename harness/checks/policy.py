"""The mixed policy's dtypes, checked on what a run returns: where its loss and its master weights are held.

Under the mixed policy (``impls.spec``) the reported loss is a float32 computed from low-dtype outputs and the
master weights are float32 numbers moved by float32 updates: almost none of them is a number of the low dtype
(a float32 is one with probability 2^-16 for bfloat16, 2^-13 for float16). A run whose every reported loss, or
every parameter at every checkpoint after the first, is such a number held it in the low dtype, whatever it
states. The trajectory may not show it (a bfloat16 loss moves no gradient), so this is judged apart.
"""
from __future__ import annotations

import numpy as np

from harness.running.runs import Run
from harness.truth.tolerances import FINGERPRINT_VALUES

LOSS, MASTER = "loss", "master weights"


def representable(values: np.ndarray, dtype: str) -> np.ndarray:
    """Whether each value is exactly a number of ``dtype``."""
    values = np.asarray(values, np.float64)
    return values.astype(np.dtype(dtype)).astype(np.float64) == values


def policy_rows(run: Run) -> list[dict]:
    """One row per policy value (the loss, the master weights) of a mixed run, in the gradients table's form:
    ``rel`` is the share of the run's distinct nonzero values that are numbers of the low dtype, failing where
    all of at least ``FINGERPRINT_VALUES`` are; [] for a run that is not mixed."""
    spec = run.impl.spec
    if not spec.mixed:
        return []
    losses = np.asarray(run.result.losses, np.float64)
    losses = np.unique(losses[np.isfinite(losses) & (losses != 0)])  # distinct values: a stalled run repeats one
    later = [run.state(k) for k in sorted(run.result.checkpoints) if k > 0]
    weights = np.concatenate([np.ravel(v) for state in later for v in state.values()] or [np.zeros(0)])
    weights = np.unique(weights[np.isfinite(weights) & (weights != 0)])
    rows = []
    for what, values, held in ((LOSS, losses, "float32"), (MASTER, weights, spec.param_dtype)):
        share = float(np.mean(representable(values, spec.dtype))) if values.size else 0.0
        low = values.size >= FINGERPRINT_VALUES.times and share == 1.0
        rows.append({"check": "policy", "impl": run.name, "dtype": run.dtype, "step": 0, "param": what,
                     "max_abs": 0.0, "rel": share, "ulps": 0.0, "allowed": 1.0, "passed": not low,
                     "judged": True, "relu_kink": False, "allowed_by": "", "convention": "",
                     "diagnosis": (f"every one of its {values.size} {what} values is a {spec.dtype} number, so it"
                                   f" holds its {what} in {spec.dtype}; the mixed policy holds them in {held}")
                     if low else ""})
    return rows
