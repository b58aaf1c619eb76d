"""Training: the truth, the reference runs in each dtype, and every implementation's native loop."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from harness.running.roster import Roster
from harness.running.plugins import run_faults
from harness.running.runs import OracleWorkers, Run, checkpoint_steps, oracle_workers, slots, train_all
from harness.truth.oracle import Oracle
from harness.truth.references import (FD_TWIN, TRUTH, Envelope, Reference, ReferenceJob, envelope, sampled_runs,
                                      wider)
from impls.spec import LOW_DTYPES, ORACLE_DTYPE


@dataclass
class Trained:
    """Every trajectory of one comparison."""

    truth: Reference
    references: dict[str, list[Reference]]  # dtype -> the plain run and its twins
    envelopes: dict[str, Envelope]  # dtype -> the rounding envelope
    runs: list[Run]
    fd_envelopes: dict[str, Envelope] = field(default_factory=dict)  # dtype -> with the difference-quotient twin
    sampled: dict[tuple, Envelope] = field(default_factory=dict)  # (dtype, ulps, by difference) -> widened
    targets: dict[str, tuple[Reference, Envelope]] = field(default_factory=dict)  # reduced dtype -> target()

    def fd_envelope(self, spec, params, x: np.ndarray, y: np.ndarray) -> Envelope:
        """The envelope of a finite-difference run (numpy-fd): the dtype's reference runs and one more that takes
        the loss derivative and activation slopes by the notebook's central difference. Trained here, and only
        for a finite-difference run that leaves the plain envelope, so runs that stay within it pay nothing."""
        dtype = spec.dtype
        if dtype not in self.fd_envelopes:  # the truth's steps and checkpoints
            (losses, _, checkpoints), = Oracle(spec).train([params], x, y, len(self.truth.losses),
                                                           sorted(self.truth.checkpoints), np.dtype(dtype).type,
                                                           textbook=True, fd_slopes=[True])
            twin = Reference(FD_TWIN, dtype, losses, checkpoints, 0.0)
            self.fd_envelopes[dtype] = envelope(self.truth, [*self.references[dtype], twin])
        return self.fd_envelopes[dtype]

    def sampled_envelope(self, spec, params, x: np.ndarray, y: np.ndarray, ulps: float, by_difference: bool
                         ) -> Envelope:
        """The dtype's envelope widened by ``MC_TRAJECTORIES`` runs in Monte Carlo arithmetic (every tanh and
        sigmoid output up to ``ulps`` off each step, as the run's own kernels measure; products by half an ulp
        of their terms), with slopes by difference where ``by_difference``. Trained only for a run that leaves
        the envelope without them; seeded from the spec, so a rerun is identical."""
        key = (spec.dtype, round(ulps, 3), by_difference)
        if key not in self.sampled:
            runs = sampled_runs(spec, params, x, y, len(self.truth.losses), sorted(self.truth.checkpoints), ulps,
                                by_difference)
            target, rounding = self.target(spec.dtype)
            base = self.fd_envelope(spec, params, x, y) if by_difference else rounding
            self.sampled[key] = wider(base, envelope(target, runs))
        return self.sampled[key]

    def target(self, dtype: str) -> tuple[Reference, Envelope]:
        """What a run in ``dtype`` follows, and the rounding envelope around it: the truth within the dtype's
        envelope; in a reduced dtype, where every correct run is as far from the exact truth as the oracle's own
        run in that dtype (0.35 of the largest parameter after 1,000 bfloat16 steps at lr 0.1, so 10x that
        distance would pass anything), the oracle's plain run there within the spread of its twins."""
        if dtype not in LOW_DTYPES:
            return self.truth, self.envelopes[dtype]
        if dtype not in self.targets:  # asked by every run in the dtype and by its Monte Carlo envelopes
            plain = self.references[dtype]
            self.targets[dtype] = plain[0], envelope(plain[0], plain[1:])
        return self.targets[dtype]


def oracle_jobs(config) -> list[ReferenceJob]:
    """The truth's job first, then one job per dtype for its reference runs."""
    return [ReferenceJob(config.spec("float64"), ORACLE_DTYPE),
            *[ReferenceJob(config.spec(dtype), dtype) for dtype in config.dtype]]


def start_oracle(config, params, x: np.ndarray, y: np.ndarray) -> OracleWorkers | None:
    """The oracle's workers, the truth already training: call it before the implementations' workers are
    built, so the truth uses the core that would wait for their imports (``runs.oracle_workers``)."""
    return oracle_workers(oracle_jobs(config), params, x, y, config.steps, config.check_every)


def train_everything(config, roster: Roster, params, x: np.ndarray, y: np.ndarray, timings: bool = False,
                     idle: Callable | None = None, oracle: OracleWorkers | None = None,
                     train_limits: dict[str, float] | None = None) -> Trained:
    """Train all; an implementation whose loop raises or hangs becomes a fault in ``roster`` and has no Run.
    With ``timings``, each run is timed call by call right after its trajectory (``Run.timings``); ``idle``:
    this process's own work for a free core between the trajectories (``runs.train_all``);
    ``oracle``: the oracle's workers from ``start_oracle``; ``train_limits``: "impl dtype" -> seconds its
    ``train()`` may take, where not ``config.call_limit`` (``resources.train_limits``)."""
    limits = train_limits or {}
    trained, oracle_runs = train_all(roster.impls, oracle_jobs(config), params, x, y,
                                     config.steps, config.check_every,
                                     lambda impl: limits.get(f"{impl.name} {impl.spec.dtype}", config.call_limit),
                                     roster.factories if timings else None, idle, oracle)
    runs, record = [], checkpoint_steps(config.steps, config.check_every)
    for impl, run in zip(roster.impls, trained):
        found = run_faults(run.result, impl.spec, config.steps, record) if isinstance(run, Run) else [run]
        for fault in found:
            roster.fault(impl.name, impl.spec.dtype, fault)
        if not found:
            runs.append(run)
    truth = oracle_runs[0][0]
    assert truth.name == TRUTH
    references = dict(zip(config.dtype, oracle_runs[1:]))
    envelopes = {dtype: envelope(truth, plain) for dtype, plain in references.items()}
    return Trained(truth, references, envelopes, runs)


def work(trained: Trained) -> dict[str, float]:
    """The training's own work (the CPU seconds of each trajectory's loop and of each of the oracle's jobs,
    taken inside its worker) and the run's floor: that work spread over the slots it runs in. No run of these
    trajectories can take less wall time here; meta.json records it and ``python -m harness.bench`` sets the
    whole run's wall time beside it."""
    trajectories = sum(run.cpu_s for run in trained.runs)
    oracle = trained.truth.cpu_s + sum(stack[0].cpu_s for stack in trained.references.values() if stack)
    return {"trajectories_s": trajectories, "oracle_s": oracle, "truth_s": trained.truth.cpu_s, "slots": slots(),
            "floor_s": (trajectories + oracle) / slots()}
