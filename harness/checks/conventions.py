"""Divergences a stated convention explains: the run follows the truth's rule under its framework's conventions.

An implementation states where its optimizer departs from the spec
(``impls.spec.CONVENTIONS``: eps before bias correction, AMSGrad's max over the
corrected v, ...). When its run leaves the truth, the oracle trains again under
exactly those conventions, in longdouble. If the run stays within the allowed
band of that trajectory (the wider of the spec's rounding envelope and that of
reference runs in the run's dtype under the same conventions), the divergence
is the convention's, not a bug:
it is reported by name, with the first step at which each convention alone
moves the truth out of the band. Under ``--framework-defaults`` an implementation
runs with its library's own default hyperparameters, and each that differs from
the shared ones is named the same way. A run that departs from both trajectories
is judged as any other (its replay names the cause).
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from harness.config import FRAMEWORK_DEFAULTS
from harness.checks.trajectory import first_divergence, loss_table, param_table, relu_branch
from harness.running.runs import Run
from harness.truth.optimizers import RELU_CONVENTION, conventions_of, departures
from harness.truth.oracle import EXTENDED, Oracle
from harness.truth.tolerances import UNFOLLOWED
from harness.truth.references import (FD_TWIN, TRUTH, Envelope, Reference, ReferenceJob, envelope, sampled_runs,
                                      wider)
from impls.interface import TrainResult, exact
from impls.spec import LOW_DTYPES, ModelSpec
PHRASES = {  # how the report names each departure
    "eps": "eps is added before bias correction (effective eps = eps / sqrt(1 - beta2^t))",
    "nesterov": "nesterov in velocity form (lr inside the velocity)",
    "weight_decay": "weight decay is decoupled (p -= lr wd p), not L2 added to the gradient",
    "amsgrad_max": "AMSGrad takes the max over the bias-corrected v, not the raw v",
    "momentum_lr": "the momentum buffer holds lr (v = momentum v - lr g), so a changing lr acts late",
    "lr_dtype": "the learning rate is held in float32",
    "bias_grad_sum": "the bias gradient sums over samples in float16, so a partial sum can overflow where the"
                     " whole does not",
    "loss_scale_initial": "float16's dynamic loss scale starts at 2^15, not 2^16, so it skips fewer steps early",
    "schedule_count": "the step schedule counts the optimizer's steps taken, so a step loss scaling skips delays"
                      " every later decay",
}


def phrase(key: str, value: str) -> str:
    """How the report names one stated convention."""
    if key == RELU_CONVENTION:
        return f"relu'(0) = {value} where a relu pre-activation is exactly 0 (the spec's is 0)"
    return PHRASES[key]


def subject(name: str, spec: ModelSpec, key: str) -> str:
    """What a convention belongs to: the optimizer's update rule, or the network's relu."""
    return f"relu derivative of {name}" if key == RELU_CONVENTION else f"update rule of {name} {spec.optimizer}"


@dataclass(frozen=True)
class Shown:
    """One stated convention (or a library default hyperparameter) and the first step at which it alone moves
    the truth beyond what is allowed."""

    subject: str  # "update rule of keras adam", "default of keras adam"
    phrase: str
    step: int | None  # None: it never shows in this run

    def __str__(self) -> str:
        when = f"at step {self.step}" if self.step is not None else "(never shows in this run)"
        return f"{self.subject} {when}: {self.phrase}"


@dataclass(frozen=True)
class Followed:
    """The truth under a run's stated conventions (and its own hyperparameters), with the band allowed around it."""

    truth: Reference
    rounding: Envelope
    stated: tuple[str, ...]  # how the report names each convention it follows (PHRASES)


def explain(run: Run, shared: ModelSpec, truth: Reference, rounding: Envelope, end: int, params, x, y,
            ulps: float | None = None, oracle: Oracle | None = None
            ) -> tuple[list[Shown] | None, Followed | None]:
    """Why the run parts from the truth of the ``shared`` spec, if it stays within what is allowed of the truth
    trained with its own hyperparameters (``--framework-defaults``) under its stated conventions: each stated
    convention and each differing default with the step it shows (else None); and that truth with its band
    (None where nothing is stated), against which a run that leaves it is then judged. With ``ulps`` (its
    kernels' measured error), the runs that measure the rounding under its conventions include
    ``MC_TRAJECTORIES`` in Monte Carlo arithmetic; with ``oracle``, a run that parts from the truth under its
    conventions where the two take different branches of a relu is explained up to there (its one-step checks
    still judge every state the truth visits)."""
    own = run.impl.spec
    departed = departures(own, conventions_of(run.impl))
    changed = {k: getattr(own, k) for k in FRAMEWORK_DEFAULTS if getattr(own, k) != getattr(shared, k)}
    if not departed and not changed:
        return None, None
    under_all = _truth_under(own, departed, truth, params, x, y)
    if departed:  # judged within the rounding of reference runs that follow the same conventions, or the spec's
        job = ReferenceJob(own, run.dtype, tuple(sorted(departed.items())))
        stack = job(params, x, y, len(truth.losses), sorted(truth.checkpoints))
        if not exact(run.impl):  # a finite-difference run: one more that takes its slopes by difference too
            (losses, _, kept), = Oracle(own).train([params], x, y, len(truth.losses), sorted(truth.checkpoints),
                                                   np.dtype(run.dtype).type, textbook=True, fd_slopes=[True],
                                                   conventions=departed)
            stack.append(Reference(FD_TWIN, run.dtype, losses, kept, 0.0))
        if ulps is not None:  # Adam's first steps take sign(g): rounding alone can flip one, under any convention
            stack += sampled_runs(replace(own, dtype=run.dtype), params, x, y, len(truth.losses),
                                  sorted(truth.checkpoints), ulps, not exact(run.impl), departed)
        rounding = wider(rounding, envelope(under_all, stack))
    followed = Followed(under_all, rounding, tuple(phrase(k, v) for k, v in departed.items())
                        + tuple(f"{k} = {v:g} (the library's default)" for k, v in changed.items()))
    apart = first_divergence(run, *_tables(run, under_all, rounding, end)).step
    if apart is not None and (oracle is None or relu_branch(run, under_all.checkpoints, oracle, x, apart) is None):
        return None, followed  # (a run that follows its conventions up to a relu branch rounding chose is explained)
    shown = []
    for key, value in departed.items():
        alone = _truth_under(shared, {key: value}, truth, params, x, y)
        shown.append(Shown(subject(run.name, own, key), phrase(key, value),
                           _first_apart(run, alone, truth, rounding, end)))
    for key, value in changed.items():
        alone = _truth_under(replace(shared, **{key: value}), {}, truth, params, x, y)
        shown.append(Shown(f"default of {run.name} {own.optimizer}",
                           f"{key} = {value:g} (the library's default; shared: {getattr(shared, key):g})",
                           _first_apart(run, alone, truth, rounding, end)))
    return sorted(shown, key=lambda s: (s.step is None, s.step or 0)), followed


def not_followed(run: Run, shared: ModelSpec, truth: Reference, rounding: Envelope, end: int, params, x, y
                 ) -> list[str]:
    """For a run that stayed on the spec's trajectory: why what it states is not what it does, or []. Its stated
    conventions, together (they interact: keras's 2^15 start and its float16 partial sums skip the spec's
    steps between them), move the truth more than ``UNFOLLOWED`` times what is allowed from the spec's truth at
    a checkpoint where the run is within what is allowed of the spec's, so, by the triangle inequality, far from
    the truth under what it states."""
    stated = departures(run.impl.spec, conventions_of(run.impl))
    if not stated:
        return []
    under = _truth_under(shared, stated, truth, params, x, y)
    table = param_table(Run(run.impl, _result(under), 0.0), truth, rounding, end)
    far = table[table.rel_err > UNFOLLOWED.times * table.allowed]
    if not len(far):
        return []
    first = far.iloc[0]
    return [f"it states that {'; '.join(phrase(k, v) for k, v in stated.items())}, yet its run stays on the"
            f" spec's trajectory: at step {int(first.step)} the truth under what it states has moved {first.param}"
            f" {first.rel_err:.1e} from the spec's, {first.rel_err / first.allowed:.0f} times what is allowed, and"
            " the run has not"]


def _truth_under(spec: ModelSpec, conventions: dict[str, str], truth: Reference, params, x, y) -> Reference:
    """The oracle's run of ``spec`` under ``conventions``, with the truth's checkpoints: in longdouble, or where
    the run is judged against the oracle's plain run in a reduced dtype (and its policy), in that dtype."""
    steps, reduced = len(truth.losses), truth.dtype in LOW_DTYPES
    oracle = Oracle(spec)
    (losses, _, checkpoints), = oracle.train([params], x, y, steps, sorted(truth.checkpoints),
                                             np.dtype(truth.dtype).type if reduced else EXTENDED,
                                             textbook=reduced, conventions=conventions)
    return Reference(TRUTH, truth.dtype, losses, checkpoints, 0.0, terms=None if reduced else oracle.loss_terms[0])


def _tables(run: Run, truth: Reference, rounding: Envelope, end: int):
    return loss_table(run, truth, rounding, end), param_table(run, truth, rounding, end)


def _first_apart(run: Run, moved: Reference, truth: Reference, rounding: Envelope, end: int) -> int | None:
    """The first step at which the truth under one convention leaves the band the run is allowed around the truth."""
    as_run = Run(run.impl, _result(moved), 0.0)
    return first_divergence(as_run, *_tables(as_run, truth, rounding, end)).step


def _result(ref: Reference) -> TrainResult:
    return TrainResult(np.asarray(ref.losses), ref.checkpoints[max(ref.checkpoints)], dict(ref.checkpoints))
