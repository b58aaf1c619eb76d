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
        bad = np.flatnonzero(~np.isfinite(self.result.losses))
        return int(bad[0]) if bad.size else None

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


def _quiet_worker() -> None:
    """Workers leave Ctrl-C to the parent, which stops them all and writes nothing."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _job(factory: Callable, spec: ModelSpec, params: Params, x, y, steps: int, every: int, limit: float):
    """In a worker: build the implementation and run its trajectory; a fault comes back as text."""
    try:
        impl = guarded("construction", lambda: factory(spec), limit)
        run = guarded("train()", lambda: train(impl, params, x, y, steps, every), limit)
    except Fault as exc:
        return str(exc)
    return run.result, run.wall_s


def train_all(jobs: list[tuple[Implementation, Callable]], params: Params, x: np.ndarray, y: np.ndarray,
              steps: int, every: int, limit: float) -> list[Run | str]:
    """Every trajectory, in order: a Run, or the fault that stopped it.

    Long runs go to two worker processes (spawned, so no JAX threads are forked),
    longest first; each trajectory's wall time is taken inside its worker, beside
    at most one other. Short runs, one core, or a factory that cannot be sent to
    a worker (a lambda) run here, one after another.
    """
    if steps * len(jobs) < PARALLEL_MIN_WORK or (os.cpu_count() or 1) < 2 or not _picklable(jobs):
        return [_here(impl, params, x, y, steps, every, limit) for impl, _ in jobs]
    order = sorted(range(len(jobs)), key=lambda i: -_cost(jobs[i][0]))
    args = [(jobs[i][1], jobs[i][0].spec, dict(params), x, y, steps, every, limit) for i in order]
    with get_context("spawn").Pool(2, initializer=_quiet_worker) as pool:  # exiting terminates the workers
        pending = pool.starmap_async(_job, args, chunksize=1)
        while not pending.ready():
            pending.wait(0.2)  # short waits keep SIGTERM and Ctrl-C deliverable to this process
        done = dict(zip(order, pending.get()))
    return [Run(jobs[i][0], *done[i]) if isinstance(done[i], tuple) else done[i] for i in range(len(jobs))]


def _here(impl: Implementation, params, x, y, steps: int, every: int, limit: float) -> Run | str:
    try:
        return guarded("train()", lambda: train(impl, params, x, y, steps, every), limit)
    except Fault as exc:
        return str(exc)


def _cost(impl: Implementation) -> int:
    """Rough per-step cost rank, to start the slowest trajectories first."""
    return {"torch": 3, "numpy-fd": 2}.get(impl.name, 1)


def _picklable(jobs) -> bool:
    try:
        pickle.dumps([factory for _, factory in jobs])
        return True
    except Exception:
        return False
