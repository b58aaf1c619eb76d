"""Free-running training of one implementation, with the checkpoints every check needs."""
from __future__ import annotations

import os
import pickle
import signal
import time
from dataclasses import dataclass
from multiprocessing import get_context
from typing import Callable

import numpy as np

from harness.running.guard import Fault, guarded
from harness.truth.references import Reference, ReferenceJob, first_nonfinite
from impls.interface import Implementation, Params, TrainResult
from impls.spec import ModelSpec


@dataclass
class Run:
    """One implementation's whole trajectory in one dtype."""

    impl: Implementation
    result: TrainResult
    wall_s: float  # the whole native loop, first-call compilation included

    @property
    def name(self) -> str:
        return self.impl.name

    @property
    def dtype(self) -> str:
        return self.impl.spec.dtype

    @property
    def nonfinite_at(self) -> int | None:
        """The first step whose loss is NaN or infinite (the run diverged), or None."""
        return first_nonfinite(self.result.losses)

    def state(self, step: int) -> dict[str, np.ndarray]:
        return self.result.checkpoints[step]


def checkpoint_steps(steps: int, every: int) -> list[int]:
    """Every ``every`` steps, plus the last forward's state (steps - 1) and the end."""
    return sorted({*range(0, steps + 1, every), steps - 1, steps})


def train(impl: Implementation, params: Params, x: np.ndarray, y: np.ndarray, steps: int, every: int) -> Run:
    """Run the native loop once, timed, keeping the parameters at every checkpoint."""
    start = time.perf_counter()
    result = impl.train(params, x, y, steps, record=checkpoint_steps(steps, every))
    return Run(impl, result, time.perf_counter() - start)


PARALLEL_MIN_WORK = 200_000  # total steps below which worker processes cost more than they save
US_PER_STEP = {"torch": 150, "numpy-fd": 45, "numpy": 33}  # rough 2-4-1 costs, to start the slowest first
REFERENCE_US_PER_STEP = 15  # the oracle's loop, longdouble or a stack of three in float64 or float32
OTHER_US_PER_STEP = 10


def _quiet_worker() -> None:
    """Workers leave Ctrl-C to the parent, which stops them all and writes nothing."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _impl_job(factory: Callable, spec: ModelSpec, params: Params, x, y, steps: int, every: int, limit: float):
    """In a worker: build the implementation and run its trajectory; a fault comes back as text."""
    try:
        impl = guarded("construction", lambda: factory(spec), limit)
        run = guarded("train()", lambda: train(impl, params, x, y, steps, every), limit)
    except Fault as exc:
        return str(exc)
    return run.result, run.wall_s


def _reference_job(job: ReferenceJob, params: Params, x, y, steps: int, every: int):
    """In a worker: the oracle's runs in one dtype (never time-limited: the truth is not on trial)."""
    return job(params, x, y, steps, checkpoint_steps(steps, every))


def train_all(jobs: list[tuple[Implementation, Callable]], references: list[ReferenceJob], params: Params,
              x: np.ndarray, y: np.ndarray, steps: int, every: int, limit: float
              ) -> tuple[list[Run | str], list[list[Reference]]]:
    """Every implementation's trajectory (a Run, or the fault that stopped it) and the oracle's runs, in order.

    Long runs go to two worker processes (spawned, so no JAX threads are forked),
    slowest first; each trajectory's wall time is taken inside its worker, beside
    at most one other. Short runs, one core, or a factory that cannot be sent to
    a worker (a lambda) run here, one after another.
    """
    count = len(jobs) + len(references)
    if steps * count < PARALLEL_MIN_WORK or (os.cpu_count() or 1) < 2 or not _picklable(jobs):
        runs = [_here(impl, params, x, y, steps, every, limit) for impl, _ in jobs]
        return runs, [_reference_job(job, params, x, y, steps, every) for job in references]
    tasks = [(_impl_job, (factory, impl.spec, dict(params), x, y, steps, every, limit),
              US_PER_STEP.get(impl.name, OTHER_US_PER_STEP)) for impl, factory in jobs]
    tasks += [(_reference_job, (job, dict(params), x, y, steps, every), REFERENCE_US_PER_STEP) for job in references]
    order = sorted(range(len(tasks)), key=lambda i: -tasks[i][2])
    with get_context("spawn").Pool(2, initializer=_quiet_worker) as pool:  # exiting terminates the workers
        pending = {i: pool.apply_async(tasks[i][0], tasks[i][1]) for i in order}
        while not all(p.ready() for p in pending.values()):
            next(p for p in pending.values() if not p.ready()).wait(0.2)  # short waits keep signals deliverable
        done = {i: p.get() for i, p in pending.items()}
    runs = [Run(impl, *done[i]) if isinstance(done[i], tuple) else done[i] for i, (impl, _) in enumerate(jobs)]
    return runs, [done[len(jobs) + j] for j in range(len(references))]


def _here(impl: Implementation, params, x, y, steps: int, every: int, limit: float) -> Run | str:
    try:
        return guarded("train()", lambda: train(impl, params, x, y, steps, every), limit)
    except Fault as exc:
        return str(exc)


def _picklable(jobs) -> bool:
    try:
        pickle.dumps([factory for _, factory in jobs])
        return True
    except Exception:
        return False
