"""Every check of one comparison, run by run: one-step checks, the free-running trajectory, the final state."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import pandas as pd

from harness import notebook
from harness.checks.gradcheck import finite_differences, prefetch_truths, table, teacher_forced
from harness.checks.policy import policy_rows
from harness.checks.conventions import explain, not_followed
from harness.checks.replay import name_cause
from harness.checks.rounding import kernel_ulps
from harness.checks.arrays import cast
from harness.checks.trajectory import (Divergence, conclusiveness, first_divergence, horizon, loss_table,
                                      overflow_explained,
                                      param_table, resolution_horizon)
from harness.running.guard import Fault, guarded
from harness.running.roster import Roster
from harness.running.plugins import run_faults
from harness.running.remote import RemoteImpl
from harness.running.runs import Run, checkpoint_steps
from harness.running.training import Trained
from harness.truth.references import envelope
from harness.truth.oracle import Oracle, OracleError
from harness.truth.tolerances import MC_TRAJECTORIES
from impls.interface import exact
from impls.spec import ORACLE_DTYPE

THE_ORACLES = (OracleError,)  # the truth failing goes through every guard: never an implementation's fault

MAX_PRED_COLUMNS = 16  # final.csv keeps every prediction up to this many outputs (accuracy always)


@dataclass
class Checked:
    """What the checks found, as typed tables and records (the verdict reads these, never text)."""

    gradients: pd.DataFrame
    losses: pd.DataFrame  # every compared step of every run
    parameters: pd.DataFrame
    divergences: list[Divergence] = field(default_factory=list)
    finals: list[dict] = field(default_factory=list)
    runs: list[Run] = field(default_factory=list)  # the runs that came through every check
    compared: dict[tuple[str, str], int] = field(default_factory=dict)  # (impl, dtype) -> steps compared


class WhileTraining:
    """Each run's checks, made while other trajectories still train (``idle``, on a core none of them uses)
    as soon as the run and its dtype's reference runs are in: first its one-step checks (teacher-forced and
    finite differences, at the truth's states), then its trajectory's (``follow``). Whatever is left runs
    when ``check_all`` asks (``take``, ``followed``)."""

    def __init__(self, config, roster: Roster, oracle: Oracle, params, x: np.ndarray, y: np.ndarray) -> None:
        self.config, self.roster, self.oracle, self.params, self.x, self.y = config, roster, oracle, params, x, y
        self.found: dict[tuple[str, str], pd.DataFrame | Fault] = {}
        self.followed: dict[tuple[str, str], tuple | None] = {}  # follow()'s findings, made while training
        self._trained: Trained | None = None  # the truth and the reference runs in hand
        self._visited: dict[str, dict] = {}  # dtype -> the truth's states visited in it (the same for every run)

    def _states(self, truth, references: dict[str, list], dtype: str) -> dict:
        if dtype not in self._visited:
            self._visited[dtype] = _states(truth, references[dtype], dtype)
        return self._visited[dtype]

    def _check(self, run: Run, truth, references: dict[str, list]) -> pd.DataFrame | Fault:
        states = self._states(truth, references, run.dtype)
        end64 = states if run.dtype == "float64" else {}
        fd_states = {0: self.params, **({self.config.steps: end64[self.config.steps]}
                                        if self.config.steps in end64 else {})}
        fd_impls = [run.impl] if run.dtype == "float64" else []
        # The oracle's answers first, on no implementation's clock: a large network's truths at its many states
        # take longer than any one call may (the 2,000-step 10-1024-1024-1 run's took over 10 min; the limit
        # then stopped them mid-way and blamed numpy). A worker's implementation has each call timed there; one
        # built here has the whole check timed, as nothing else can stop it.
        prefetch_truths(self.oracle, [run.impl], states, fd_impls, fd_states, self.x, self.y)
        limit = 0.0 if isinstance(run.impl, RemoteImpl) else self.roster.time_limit
        try:
            return guarded("loss_and_grads()", lambda: pd.concat([
                teacher_forced([run.impl], self.oracle, states, self.x, self.y),
                finite_differences(fd_impls, self.oracle, fd_states, self.x, self.y),
            ], ignore_index=True), limit, THE_ORACLES)
        except Fault as exc:
            return exc

    def idle(self, runs: list[Run], references: dict[str, list]) -> bool:
        """One piece of checking: a trained run's one-step checks, or then its trajectory's (``follow``), once
        its dtype's references are in; whether there was one."""
        if ORACLE_DTYPE not in references:
            return False
        for run in runs:
            key = (run.name, run.dtype)
            if run.dtype not in references:
                continue
            if key not in self.found:
                self.found[key] = self._check(run, references[ORACLE_DTYPE][0], references)
                return True
            if key not in self.followed and not isinstance(self.found[key], Fault) and self._well_formed(run):
                self.followed[key] = follow(self.config, self.roster, self.oracle, self._so_far(references), run,
                                            self.params, self.x, self.y)
                return True
        return False

    def _well_formed(self, run: Run) -> bool:
        """Whether the run's result is what the interface promises (else training records it as a fault)."""
        record = checkpoint_steps(self.config.steps, self.config.check_every)
        return not run_faults(run.result, run.impl.spec, self.config.steps, record)

    def _so_far(self, references: dict[str, list]) -> Trained:
        """The truth and the reference runs in hand, with their envelopes, as ``follow`` reads them."""
        if self._trained is None:
            self._trained = Trained(references[ORACLE_DTYPE][0], {}, {}, [])
        for dtype, stack in references.items():
            if dtype != ORACLE_DTYPE and dtype not in self._trained.references:
                self._trained.references[dtype] = stack
                self._trained.envelopes[dtype] = envelope(self._trained.truth, stack)
        return self._trained

    def take(self, run: Run, truth, references: dict[str, list]) -> pd.DataFrame | None:
        """The run's one-step checks (done now unless ``idle`` did them); None, with the fault recorded."""
        found = self.found.pop((run.name, run.dtype), None)
        if found is None:
            found = self._check(run, truth, {ORACLE_DTYPE: [truth], **references})
        if isinstance(found, Fault):
            self.roster.fault(run.name, run.dtype, str(found))
            return None
        return found


def check_all(config, roster: Roster, trained: Trained, oracle: Oracle, params, x: np.ndarray, y: np.ndarray,
              progress: Callable[[str], None] = lambda label: None, early: WhileTraining | None = None) -> Checked:
    """One-step checks at the truth's checkpoints, then each run's trajectory (those ``early`` made during
    training, and the rest); a call that raises or hangs becomes a fault of that implementation, which is then
    left out."""
    truth = trained.truth
    early = early or WhileTraining(config, roster, oracle, params, x, y)
    grads, runs = [], []
    for run in trained.runs:
        progress(f"checks {run.name} {run.dtype}")
        found = early.take(run, truth, trained.references)
        if found is not None:
            policy = policy_rows(run)  # a mixed run's: where it holds its loss and master weights
            grads.append(pd.concat([found, table(policy)], ignore_index=True) if policy else found)
            runs.append(run)
    checked = Checked(pd.concat(grads, ignore_index=True) if grads else table([]), pd.DataFrame(), pd.DataFrame())
    loss_tables, param_tables = [], []
    for run in runs:
        progress(f"trajectory {run.name} {run.dtype}")
        key = (run.name, run.dtype)
        found = early.followed.pop(key) if key in early.followed else follow(config, roster, oracle, trained, run,
                                                                             params, x, y)
        if found is None:
            continue
        losses, params_err, div, final = found
        loss_tables.append(losses)
        checked.compared[run.name, run.dtype] = len(losses)  # before any blow-up
        param_tables.append(params_err)
        checked.divergences.append(div)
        checked.finals.append(final)
        checked.runs.append(run)
    checked.losses = pd.concat(loss_tables, ignore_index=True) if loss_tables else pd.DataFrame(
        columns=["impl", "dtype", "step", "loss", "rel_err", "allowed"])
    checked.parameters = pd.concat(param_tables, ignore_index=True) if param_tables else pd.DataFrame(
        columns=["impl", "dtype", "step", "param", "rel_err", "allowed"])
    return checked


def follow(config, roster: Roster, oracle: Oracle, trained: Trained, run: Run, params, x: np.ndarray,
           y: np.ndarray) -> tuple[pd.DataFrame, pd.DataFrame, Divergence, dict] | None:
    """The run's free-running trajectory against the truth within its dtype's rounding envelope: its loss and
    parameter tables, its first divergence (with the cause the replay names) and its final state; None where
    a call it needs raised or hung (the fault is recorded on ``roster``)."""
    exact_truth = trained.truth
    plain = trained.references[run.dtype]
    end = horizon(run, [exact_truth, *plain], config.steps)
    unresolved = None if exact(run.impl) else resolution_horizon(exact_truth.losses[:end], run.impl.spec)
    end = end if unresolved is None else unresolved
    truth, rounding = trained.target(run.dtype)  # in a reduced dtype: the oracle's plain run there
    losses, params_err = loss_table(run, truth, rounding, end), param_table(run, truth, rounding, end)
    div = first_divergence(run, losses, params_err)
    source = "the floor or 10x the reference runs' envelope"
    if div.step is not None and not exact(run.impl):  # judged again within its own method's rounding
        rounding = trained.fd_envelope(config.spec(run.dtype), params, x, y)
        losses, params_err = loss_table(run, truth, rounding, end), param_table(run, truth, rounding, end)
        div = first_divergence(run, losses, params_err)
        source = "10x the envelope with a run by the notebook's differences"
    shown, followed = explain(run, config.spec(run.dtype), truth, rounding, end, params, x, y) \
        if div.step is not None else (None, None)
    if div.step is not None and not shown:  # judged again within runs that round as its own kernels do
        ulps = _kernel_ulps(run, oracle, truth, div.step, x)
        if ulps is not None:
            rounding = trained.sampled_envelope(config.spec(run.dtype), params, x, y, ulps, not exact(run.impl))
            losses, params_err = loss_table(run, truth, rounding, end), param_table(run, truth, rounding, end)
            div = first_divergence(run, losses, params_err)
            source = f"10x the envelope with {MC_TRAJECTORIES} runs in monte carlo arithmetic (kernels {ulps:.2g} ulps)"
            shown, followed = explain(run, config.spec(run.dtype), truth, rounding, end, params, x, y, ulps, oracle) \
                if div.step is not None else (None, None)
    states = truth.checkpoints
    if div.step is not None and not shown and followed is not None:
        # it follows its stated conventions for a while: judged (and its cause named) against that truth, from
        # where it leaves it, not from where the conventions first move it off the spec's
        own = loss_table(run, followed.truth, followed.rounding, end), \
            param_table(run, followed.truth, followed.rounding, end)
        later = first_divergence(run, *own)
        if later.step is not None and later.step > div.step:
            (losses, params_err), div, states = own, later, followed.truth.checkpoints
            div.judged_under = followed.stated
    if div.step is None:  # a convention stated is checked, never trusted
        div.unfollowed = tuple(not_followed(run, config.spec(run.dtype), truth, rounding, end, params, x, y))
    div.unresolved_at, div.allowed_by = unresolved, source
    if div.step is None and (found := conclusiveness(run, truth, params_err)) is not None:
        div.inconclusive_at, div.inconclusive = found
    div.nonfinite_at, div.oracle_nonfinite_at = run.nonfinite_at, exact_truth.nonfinite_at
    div.reference_nonfinite_at = min([r.nonfinite_at for r in plain if r.nonfinite_at is not None], default=None)
    div.overflow_explained = overflow_explained(run, truth, rounding, y.size)
    if shown:  # the run follows the truth under its framework's stated conventions
        div.cause, div.conventions = "convention", tuple(shown)
        div.cause_step = next((s.step for s in shown if s.step is not None), div.step)
    elif div.step is not None and roster.attempt(
            run.impl, "train", lambda: name_cause(div, run, losses, params_err, oracle, x, y, params, states),
            THE_ORACLES) is None:
        return None
    final = roster.attempt(run.impl, "forward", lambda: final_row(run, config.steps, x, y))
    return None if final is None else (losses, params_err, div, final)


def _kernel_ulps(run: Run, oracle: Oracle, truth, step: int, x: np.ndarray) -> float | None:
    """The run's kernels' largest error in ulps at the truth's states around ``step`` (the last checkpoint
    before it, and the first one from it), None without a ``kernel`` method."""
    kept = sorted(truth.checkpoints)
    near = {max([k for k in kept if k <= step], default=kept[0]), min([k for k in kept if k >= step],
                                                                      default=kept[-1])}
    found = [kernel_ulps(run.impl, oracle, cast(truth.state(k), run.dtype), x, run.dtype) for k in sorted(near)]
    return None if None in found else max(found)


def _states(truth, plain: list, dtype: str) -> dict[int, dict[str, np.ndarray]]:
    """The truth's checkpoints that the one-step checks visit in ``dtype``: finite once cast, and before any
    reference run in that dtype blew up (beyond it no run in the dtype has a meaningful state to match)."""
    end = min([r.nonfinite_at for r in plain if r.nonfinite_at is not None], default=len(truth.losses) + 1)
    return {k: v for k, v in truth.checkpoints.items()
            if k < end and all(np.all(np.isfinite(a)) for a in cast(v, dtype).values())}


def final_row(run: Run, steps: int, x, y) -> dict:
    """The notebook's printed state: the loop's last forward pass, at step steps - 1."""
    preds = run.impl.forward(run.state(steps - 1), x).ravel()
    loss = float(run.result.losses[steps - 1])
    row = {"impl": run.name, "dtype": run.dtype, "step": steps - 1, "loss": loss}
    if preds.size <= MAX_PRED_COLUMNS:
        row.update({f"pred_{i}": float(p) for i, p in enumerate(preds)})
    correct = np.round(preds) == y.ravel()
    row["solved"], row["accuracy"] = bool(np.all(correct)), float(np.mean(correct))
    row["notebook_line"] = notebook.printed_line(loss, preds)
    return row


def notebook_misses(config, finals: list[dict]) -> dict[tuple[str, str], str]:
    """(impl, "float64") -> the line printed, for each float64 run of the notebook's configuration that
    does not print the notebook's line."""
    if not config.is_notebook_run:
        return {}
    return {(f["impl"], f["dtype"]): f["notebook_line"] for f in finals
            if f["dtype"] == "float64" and f["notebook_line"] != notebook.PRINTED}
