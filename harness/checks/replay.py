"""Naming the cause of a divergence: replay the native loop from its last good checkpoint, one step at a time.

The replay is believed only once it reproduces the recorded run (losses and
checkpoints within ``REPRODUCE_ULPS``): a loop whose steps depend on more than
its parameters (a step counter, hidden state) does not, and that is named. Then,
at every replayed state, the implementation's loss and gradients are judged
against the truth (a forward or gradient error), and every replayed transition
against the truth's update rule fed its own gradients (an update error;
``harness.checks.updates``). If every single step is right, the run still left the measured rounding envelope: it fails as
"rounding beyond the envelope", naming the parameter that left it first. A
stateful optimizer (or a schedule) cannot resume from a checkpoint of the
parameters, so its run is replayed from step 0, and its first ``STATEFUL_WINDOW``
steps are checked one by one.
"""
from __future__ import annotations

from typing import Mapping

import ml_dtypes
import numpy as np
import pandas as pd

from harness.checks.arrays import rel_diff
from harness.checks.gradcheck import loss_and_grads, teacher_forced
from harness.checks.updates import ExpectedUpdates
from harness.checks.trajectory import RELU_BRANCH, Divergence, branch_apart, relu_branch
from harness.running.runs import Run
from harness.truth.oracle import EXTENDED, Oracle
from harness.truth.optimizers import conventions_of, departures
from harness.truth.tolerances import REPRODUCE_ULPS
from impls.interface import Params

STATEFUL_WINDOW = 1000  # steps checked one by one in a replay from step 0 (about a second at 2-4-1)


def name_cause(found: Divergence, run: Run, losses: pd.DataFrame, params: pd.DataFrame, oracle: Oracle,
               x: np.ndarray, y: np.ndarray, initial: dict[str, np.ndarray],
               truth_states: Mapping[int, Params] | None = None) -> Divergence:
    """``found`` with its cause, the state, the parameter and the error that explain the divergence
    (``truth_states``: the truth's checkpoints, to tell a relu branch taken apart from rounding beyond the envelope)."""
    for name, value in initial.items():  # the loop must start from the weights it was given
        rel = float(rel_diff(run.state(0)[name], np.asarray(value, run.impl.spec.param_dtype)))
        if rel != 0:
            found.cause = "initial state"
            _name(found, 0, name, rel, 0.0)
            return found
    # a stateful optimizer or a schedule cannot resume from parameters alone: replay it from the start
    start = 0 if run.impl.spec.stateful else max((s for s in run.result.checkpoints if s < found.step), default=0)
    span = found.step - start + 1  # the replay's losses reach the divergent step itself
    window = min(span, STATEFUL_WINDOW) if start == 0 and run.impl.spec.stateful else span
    recorded = {k - start for k in run.result.checkpoints if start < k <= start + span}
    replay = run.impl.train(run.state(start), x, y, span, record=sorted(recorded | set(range(window + 1))))
    if _differs(found, run, replay, start, span):
        return found
    states = {start + k: replay.checkpoints[k] for k in range(window + 1)}
    checks = teacher_forced([run.impl], oracle, states, x, y, updates=False)
    rows, expected = [], ExpectedUpdates(run.impl)
    for step in sorted(states)[:-1]:
        truth = oracle.truth(states[step], x, y)
        rows += expected.rows(run.impl, step, states[step], states[step + 1],
                              loss_and_grads(run.impl, states[step], x, y), truth.scale,
                              expected.skips(states[step], x, y))
    checks = pd.concat([checks, pd.DataFrame(rows)], ignore_index=True) if rows else checks
    failed = checks[~checks.passed.astype(bool)]
    if len(failed):
        first = failed[failed.step == failed.step.min()]
        worst = first.loc[(first.rel / first.allowed).idxmax()]
        found.cause = "update" if worst.check == "update" else ("forward" if worst.param == "loss" else "gradient")
        found.relu_kink = bool(worst.relu_kink)  # the state has a relu pre-activation exactly at 0
        diagnosis = worst.get("diagnosis", "")  # e.g. a schedule that acts one step late
        found.diagnosis = diagnosis if isinstance(diagnosis, str) else ""
        _name(found, int(worst.step), str(worst.param), float(worst.rel), float(worst.allowed))
        return found
    # every single step is right, yet the run left what rounding explains (or the steps checked one by one
    # end before the divergence)
    if window == span and truth_states and (branch := relu_branch(run, truth_states, oracle, x, found.step)
                                            or _branch_between(run, states, oracle, x, y, initial, start)):
        found.cause = RELU_BRANCH
        _name(found, *branch)
        return found
    found.cause = "rounding beyond the envelope" if window == span else \
        f"not located (replayed from step 0, its first {window} steps are right)"
    later = params[(params.step >= found.step) & ~(params.rel_err <= params.allowed)]
    if len(later):
        first = later[later.step == later.step.min()]
        worst = first.loc[(first.rel_err / first.allowed).idxmax()]
    else:
        worst = losses[losses.step == found.step].iloc[0].copy()
        worst["param"] = "loss"
    _name(found, int(worst.step), str(worst.param), float(worst.rel_err), float(worst.allowed))
    return found


def _branch_between(run: Run, states: Mapping[int, Params], oracle: Oracle, x: np.ndarray, y: np.ndarray,
                    initial: Mapping[str, np.ndarray], start: int) -> tuple[int, str, float, float] | None:
    """A relu branch taken apart between checkpoints: the replayed states (every step from ``start``) against
    the truth trained again from the same start (``initial`` at step 0, under the conventions the run states),
    step by step. A run resumed from a later checkpoint (plain SGD) starts the truth from the run's own state
    there, so only branches it takes on the way are found."""
    if "relu" not in oracle.spec.activations:
        return None
    spec = run.impl.spec
    steps = max(states) - start
    (_, _, truth), = Oracle(spec).train([initial if start == 0 else states[start]], x, y, steps,
                                        range(steps + 1), EXTENDED,
                                        conventions=departures(spec, conventions_of(run.impl)))
    return branch_apart(states, {start + k: v for k, v in truth.items()}, oracle, x)


def _name(found: Divergence, step: int, param: str, rel: float, allowed: float) -> None:
    found.cause_step, found.param, found.rel, found.allowed = step, param, rel, allowed


def _differs(found: Divergence, run: Run, replay, start: int, span: int) -> bool:
    """Name the first step where the replay departs from the recording (and say so), if it does."""
    dtype = np.dtype(run.dtype)
    recorded = run.result.losses[start:start + span].astype(EXTENDED)
    replayed = np.asarray(replay.losses, EXTENDED)
    with np.errstate(all="ignore"):
        err = np.abs(replayed - recorded) / np.abs(recorded)
    limit = REPRODUCE_ULPS.times * float(ml_dtypes.finfo(dtype).eps)
    bad = np.flatnonzero(~(err <= limit) & ~(np.isnan(recorded) & np.isnan(replayed)))
    if bad.size:
        found.cause = "replay differs"
        _name(found, start + int(bad[0]), "loss", float(err[bad[0]]), limit)
        return True
    for k in sorted(run.result.checkpoints):
        if start < k <= start + span:
            for name, value in run.state(k).items():
                diff = np.max(np.abs(np.asarray(replay.checkpoints[k - start][name], EXTENDED) - value), initial=0.0)
                scale = np.max(np.abs(np.asarray(value, EXTENDED)), initial=0.0)
                rel = float(diff / scale) if scale > 0 else float(diff)
                if not rel <= limit:
                    found.cause = "replay differs"
                    _name(found, k, name, rel, limit)
                    return True
    return False
