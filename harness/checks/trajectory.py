"""Free-running checks: each native loop's whole run against the truth, within the measured rounding envelope.

The loss is compared on every step, the parameters at every checkpoint. What is
allowed at each point is the dtype's floor or ``ROUNDING_FACTOR`` times the
rounding envelope measured on this run (``harness.truth.references``). A run that
leaves it fails; ``harness.checks.replay`` then names the step and parameter, or
the update, that is wrong. Comparisons stop at the first non-finite loss of the
run or of any reference run.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import ml_dtypes
import numpy as np
import pandas as pd

from harness.running.runs import Run
from harness.truth.references import Envelope, Reference, loss_error, param_errors
from harness.truth.oracle import NOTEBOOK_FD_STEP, Oracle
from harness.truth.tolerances import FD_RESOLUTION, OVERFLOW_HEADROOM, trajectory_allowed
from impls.interface import Params, exact
from impls.spec import LOW_DTYPES


RELU_BRANCH = "relu branch"  # a cause: every step right, and the run and the truth on two sides of a relu kink


@dataclass
class Divergence:
    """Where and why a run first left what is allowed; ``step`` is None when it never did."""

    impl: str
    dtype: str
    step: int | None = None  # first step whose loss or parameters are out of tolerance
    detected_by: str = ""  # "loss" or "parameters"
    cause: str = ""  # "gradient", "forward", "update", "replay differs", "rounding beyond the envelope", "convention",
    # RELU_BRANCH
    cause_step: int | None = None  # the state at which the cause was found
    param: str = ""  # the parameter (or "loss") named
    rel: float = 0.0  # its relative error there
    allowed: float = 0.0  # what was allowed there
    nonfinite_at: int | None = None  # first step with a NaN or infinite loss (the run blew up)
    oracle_nonfinite_at: int | None = None  # the same for the truth: the configuration itself diverges
    reference_nonfinite_at: int | None = None  # the earliest of the plain reference runs in the run's dtype
    overflow_explained: bool = False  # at nonfinite_at, what is allowed reaches past the dtype's largest number
    conventions: tuple = ()  # cause "convention": the stated conventions (harness.checks.conventions.Shown)
    relu_kink: bool = False  # the cause was found at a state where a relu pre-activation is exactly 0
    diagnosis: str = ""  # what the failing step is instead (harness.checks.updates: a schedule one step late)
    unresolved_at: int | None = None  # a finite-difference run: compared up to here (resolution_horizon)
    allowed_by: str = ""  # the envelope the run was last judged within (plain, differences, monte carlo)
    # the stated conventions it was judged under: it follows the truth under them up to ``step``, where the spec's
    # truth parts from it earlier (harness.checks.conventions.Followed)
    judged_under: tuple[str, ...] = ()
    unfollowed: tuple[str, ...] = ()  # a run on the spec's trajectory: the stated conventions it does not follow
    # (allowed at the last checkpoint, the truth's movement from its start, the run's own) where the first is at
    # least the second: the trajectory check could not have failed (harness.checks.verdict.INCONCLUSIVE)
    inconclusive: tuple[float, float, float] | None = None
    inconclusive_at: int | None = None  # that last checkpoint


def conclusiveness(run: Run, truth: Reference, params: pd.DataFrame) -> tuple[int, tuple[float, float, float]] | None:
    """(last checkpoint, (allowed there, the truth's movement since step 0, the run's own)) where what is
    allowed reaches how far the truth moves, so no run, however wrong its updates, could fail; None otherwise.

    Judged in the reduced dtypes only, where updates below half an ulp of a weight vanish and the envelope is as
    wide as the run: float64 and float32 runs keep passing on their one-step and update checks, though a short
    float32 run (20 steps at lr 1e-4) or a numpy-fd run meets this rule too."""
    if run.dtype not in LOW_DTYPES or not len(params) or 0 not in truth.checkpoints:
        return None
    last = int(params.step.max())
    allowed = float(params[params.step == last].allowed.max())
    moved = max(param_errors(truth.state(last), truth.state(0)).values())
    if not allowed >= moved:
        return None
    return last, (allowed, moved, max(param_errors(run.state(last), run.state(0)).values()))


def overflow_explained(run: Run, truth: Reference, rounding: Envelope, size: int) -> bool:
    """Whether the run's first non-finite loss lies within what is allowed there: the truth's summed loss,
    grown by the allowed relative error and by the headroom a loss formula's intermediates need
    (``OVERFLOW_HEADROOM``), passes the dtype's largest finite number (so overflow is rounding's)."""
    step = run.nonfinite_at
    if step is None or step >= len(truth.losses) or not np.isfinite(truth.losses[step]):
        return False
    limit = float(trajectory_allowed(run.dtype, rounding.loss[min(step, len(rounding.loss) - 1)], exact(run.impl)))
    biggest = float(ml_dtypes.finfo(np.dtype(run.dtype)).max)
    return float(truth.losses[step]) * size * (1 + limit) * OVERFLOW_HEADROOM.times >= biggest


def horizon(run: Run, references: list[Reference], steps: int) -> int:
    """Steps compared: up to the first non-finite loss of the run or of any reference run."""
    return min([k for k in (run.nonfinite_at, *(r.nonfinite_at for r in references)) if k is not None] + [steps])


def resolution_horizon(losses: np.ndarray, spec) -> int | None:
    """The first step whose loss is so large that the notebook's central difference (h = 1e-8) cannot resolve its
    derivative: rounding in two evaluations of the loss costs u |loss| / h, against a derivative of
    sqrt(2 loss) (sel) or about 1 (bce); past FD_RESOLUTION of it a finite-difference run follows rounding, not
    gradients, so it is compared only up to there. None where that never happens."""
    loss = np.abs(np.asarray(losses, np.float64))
    with np.errstate(all="ignore"):
        size = np.sqrt(2 * loss) if spec.loss == "sel" else np.ones_like(loss)
        lost = ml_dtypes.finfo(np.dtype(spec.dtype)).eps / 2 * loss / NOTEBOOK_FD_STEP
        bad = np.flatnonzero(~(lost <= FD_RESOLUTION.rel * size) & np.isfinite(loss))
    return int(bad[0]) if bad.size else None


def held(run: Run) -> str:
    """The dtype whose free-running floor a run's trajectory gets: where its parameters are held (under the mixed
    policy float32, whose updates do not round away; the measured envelope of its computing dtype still rules)."""
    return run.impl.spec.param_dtype


def loss_table(run: Run, truth: Reference, rounding: Envelope, end: int) -> pd.DataFrame:
    """Per-step loss before ``end``, its relative error vs the truth, and what is allowed there."""
    err = loss_error(run.result.losses[:end], truth.losses[:end], truth.loss_scale[:end])
    return pd.DataFrame({"impl": run.name, "dtype": run.dtype, "step": np.arange(end),
                         "loss": run.result.losses[:end], "rel_err": err,
                         "allowed": trajectory_allowed(held(run), rounding.loss[:end], exact(run.impl))})


def param_table(run: Run, truth: Reference, rounding: Envelope, end: int) -> pd.DataFrame:
    """Error of each parameter vs the truth at every checkpoint before ``end``, with what is allowed."""
    rows = []
    for step in sorted(k for k in run.result.checkpoints if k < end):
        limit = float(trajectory_allowed(held(run), rounding.params[step], exact(run.impl)))
        for name, err in param_errors(run.state(step), truth.state(step)).items():
            rows.append({"impl": run.name, "dtype": run.dtype, "step": step, "param": name, "rel_err": err,
                         "allowed": limit})
    return pd.DataFrame(rows, columns=["impl", "dtype", "step", "param", "rel_err", "allowed"])


def relu_branch(run: Run, truth: Mapping[int, Params], oracle: Oracle, x: np.ndarray, step: int
                ) -> tuple[int, str, float, float] | None:
    """(checkpoint, "layer i", the truth's pre-activation there, 0) where the run's state and the truth's put a
    relu pre-activation on two sides of 0, at the last checkpoint before ``step``, at ``step`` itself or (a
    divergence found by the loss between checkpoints) at the first checkpoint after it; None where they take
    the same branches. Past such a state the two follow different pieces of a piecewise function, so their
    distance says nothing about the implementation (rounding decided the side)."""
    before = max((k for k in run.result.checkpoints if k < step), default=None)
    after = min((k for k in run.result.checkpoints if k >= step), default=None)
    steps = sorted({k for k in (before, after) if k is not None and k in truth})
    return branch_apart({k: run.state(k) for k in steps}, truth, oracle, x)


def branch_apart(states: Mapping[int, Params], truth: Mapping[int, Params], oracle: Oracle, x: np.ndarray
                 ) -> tuple[int, str, float, float] | None:
    """The first step of ``states`` (a run's) at which it and ``truth`` put a relu pre-activation on two sides
    of 0, as ``relu_branch`` names it; None where they take the same branches at every step both hold."""
    relu = [i for i, act in enumerate(oracle.spec.activations) if act == "relu"]
    for k in sorted(set(states) & set(truth)):
        exact, mine = oracle.preactivations(truth[k], x), oracle.preactivations(states[k], x)
        for i in relu:
            apart = (exact[i] > 0) != (mine[i] > 0)
            if np.any(apart):
                return k, f"relu layer {i}", float(np.min(np.abs(exact[i][apart]))), 0.0
    return None


def first_divergence(run: Run, losses: pd.DataFrame, params: pd.DataFrame) -> Divergence:
    """The first step whose loss or parameters are out of tolerance (the cause is named by the replay)."""
    found = Divergence(run.name, run.dtype)
    bad_loss = losses.step[~(losses.rel_err <= losses.allowed)]
    bad_params = params.step[~(params.rel_err <= params.allowed)]
    candidates = [(int(bad.min()), how) for bad, how in ((bad_loss, "loss"), (bad_params, "parameters")) if len(bad)]
    if candidates:
        found.step, found.detected_by = min(candidates)
    return found
