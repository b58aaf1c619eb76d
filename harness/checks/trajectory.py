"""Free-running checks: deviation from the oracle along the trajectory, and the first divergence.

The loss is compared on every step; parameters at every checkpoint. An
implementation diverges at the first step where either leaves what is allowed
(``tolerances.allowed``: the floor, or 10 times plain NumPy's running-max
error in the same dtype). To name the cause, the implementation is replayed
from its last good checkpoint one step at a time, and at each state its loss
and gradients are compared with the oracle's: the first parameter whose
gradient disagrees is named (a one-step error). If every gradient agrees, each
replayed update is checked against p - lr * g from the same state: the first
wrong one is a training-loop error. If every step is right, the
runs part by accumulated rounding that the dynamics amplify: reported, not
failed.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from harness.checks.gradcheck import teacher_forced
from harness.running.runs import Run
from harness.truth.tolerances import VS_PLAIN_NUMPY, floor
from impls.interface import Implementation, exact


@dataclass
class Divergence:
    """Where and why a run first left tolerance; ``step`` is None when it never did."""

    impl: str
    dtype: str
    step: int | None = None  # first step whose loss or parameters are out of tolerance
    detected_by: str = ""  # "loss" or "parameters"
    cause: str = ""  # "gradient", "forward", "training loop" or "accumulated rounding" (not a failure)
    cause_step: int | None = None  # the state at which the gradient (or forward) first disagrees
    param: str = ""  # the parameter (or "loss") named
    rel: float = 0.0  # its relative error there
    allowed: float = 0.0  # what was allowed there
    nonfinite_at: int | None = None  # first step with a NaN or infinite loss (the run blew up)
    oracle_nonfinite_at: int | None = None  # the same for the oracle: the configuration itself diverges
    plain_nonfinite_at: int | None = None  # the same for plain NumPy in the run's dtype


def _allowed(errors: np.ndarray, plain_errors: np.ndarray, dtype: str, is_exact: bool) -> np.ndarray:
    running = np.maximum.accumulate(np.nan_to_num(plain_errors, nan=0.0, posinf=0.0))
    return np.maximum(floor(dtype, is_exact).rel, VS_PLAIN_NUMPY * running)


def loss_errors(run: Run, oracle: Run) -> np.ndarray:
    """Relative error of the per-step loss against the oracle's, on every step (inf where not finite)."""
    ref = oracle.result.losses.astype(np.float64)
    err = np.abs(run.result.losses - ref) / np.abs(ref)
    return np.where(np.isfinite(run.result.losses), err, np.inf)


def loss_table(run: Run, oracle: Run, plain: Run) -> pd.DataFrame:
    """Per-step loss, its relative error vs the oracle and what is allowed (every step)."""
    err = loss_errors(run, oracle)
    return pd.DataFrame({"impl": run.name, "dtype": run.dtype, "step": np.arange(err.size),
                         "loss": run.result.losses, "rel_err": err,
                         "allowed": _allowed(err, loss_errors(plain, oracle), run.dtype, exact(run.impl))})


def param_table(run: Run, oracle: Run, plain: Run, horizon: int | None = None) -> pd.DataFrame:
    """Error of each parameter vs the oracle at every checkpoint before ``horizon``, with what is allowed."""
    steps = sorted(k for k in run.result.checkpoints if horizon is None or k < horizon)
    rows = []
    for name in run.state(steps[0]):
        err = np.array([_param_err(run, oracle, s, name) for s in steps])
        plain_err = np.array([_param_err(plain, oracle, s, name) for s in steps])
        limit = _allowed(err, plain_err, run.dtype, exact(run.impl))
        rows += [{"impl": run.name, "dtype": run.dtype, "step": s, "param": name, "rel_err": e, "allowed": a}
                 for s, e, a in zip(steps, err, limit)]
    return pd.DataFrame(rows, columns=["impl", "dtype", "step", "param", "rel_err", "allowed"])


def _param_err(run: Run, oracle: Run, step: int, name: str) -> float:
    """Error relative to the largest parameter in the network: a bias that crosses zero stays comparable."""
    value, truth = run.state(step)[name], oracle.state(step)
    scale = max(np.max(np.abs(v)) for v in truth.values())
    return float(np.max(np.abs(value - truth[name])) / scale) if np.all(np.isfinite(value)) else np.inf


def first_divergence(run: Run, losses: pd.DataFrame, params: pd.DataFrame, oracle: Implementation,
                     plain: Implementation, x: np.ndarray, y: np.ndarray) -> Divergence:
    """The first step out of tolerance, and the parameter whose gradient (or value) first disagrees."""
    found = Divergence(run.name, run.dtype)
    bad_loss = losses.index[~(losses.rel_err <= losses.allowed)]
    bad_params = params[~(params.rel_err <= params.allowed)]
    candidates = []
    if len(bad_loss):
        candidates.append((int(losses.step[bad_loss[0]]), "loss"))
    if len(bad_params):
        candidates.append((int(bad_params.step.min()), "parameters"))
    if not candidates:
        return found
    found.step, found.detected_by = min(candidates)
    _name_cause(found, run, bad_params, oracle, plain, x, y)
    return found


def _name_cause(found: Divergence, run: Run, bad_params: pd.DataFrame, oracle, plain, x, y) -> None:
    """Replay from the last checkpoint before the divergence; the first disagreeing state names the cause."""
    start = max((s for s in run.result.checkpoints if s < found.step), default=0)
    span = max(found.step - start, 1)
    replay = run.impl.train(run.state(start), x, y, span, record=range(span + 1)).checkpoints
    states = {start + k: state for k, state in replay.items()}
    checks = teacher_forced([run.impl], oracle, {run.dtype: plain}, states, x, y)
    failed = checks[~checks.passed]
    if len(failed):
        first = failed[failed.step == failed.step.min()]
        worst = first.loc[(first.rel / first.allowed).idxmax()]
        found.cause = "forward" if worst.param == "loss" else "gradient"
        found.cause_step, found.param = int(worst.step), str(worst.param)
        found.rel, found.allowed = float(worst.rel), float(worst.allowed)
    elif not _step_by_step(found, run, states, x, y):
        found.cause = "accumulated rounding"  # every single step is right: the dynamics amplify rounding
        later = bad_params[bad_params.step >= found.step]
        if len(later):
            first = later[later.step == later.step.min()]
            worst = first.loc[(first.rel_err / first.allowed).idxmax()]
            found.cause_step, found.param = int(worst.step), str(worst.param)
            found.rel, found.allowed = float(worst.rel_err), float(worst.allowed)


def _step_by_step(found: Divergence, run: Run, states: dict, x, y) -> bool:
    """Check each replayed update against p - lr * (the implementation's own gradient); name the first wrong one.

    Gradients were judged already; this judges only the update rule, whose rounding is
    at most a few units of the dtype relative to max(|p|, lr |g|).
    """
    limit = floor(run.dtype, exact(run.impl)).rel
    lr = run.impl.spec.lr
    for step in sorted(states)[:-1]:
        state = states[step]
        _, grads = run.impl.loss_and_grads(state, x, y)
        for name, value in state.items():
            update = lr * np.asarray(grads[name], np.longdouble)
            expected = np.asarray(value, np.longdouble) - update
            scale = max(np.max(np.abs(value)), np.max(np.abs(update)))
            err = float(np.max(np.abs(states[step + 1][name] - expected)) / scale) if scale > 0 else 0.0
            if not err <= limit:
                found.cause, found.cause_step, found.param, found.rel, found.allowed = (
                    "training loop", step, name, err, limit)
                return True
    return False
