"""Free-running training of one implementation, with the checkpoints every check needs."""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Callable, NamedTuple

import numpy as np

from harness.running import timing
from harness.running.guard import Fault, guarded, one_line
from harness.running.remote import RemoteImpl, on_one_blas_thread, usable
from harness.running.workers import POLL_S, Worker, wait
from harness.truth.oracle import OracleError
from harness.truth.references import Reference, ReferenceJob, first_nonfinite
from impls.interface import Implementation, Params, TrainResult


@dataclass
class Run:
    """One implementation's whole trajectory in one dtype."""

    impl: Implementation
    result: TrainResult
    wall_s: float  # the whole native loop, first-call compilation included
    timings: list[dict] | str = field(default_factory=list)  # timing.measure's rows, or why they failed
    cpu_s: float = 0.0  # the CPU seconds of the process that ran the loop, over the same span: its work

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
    start, cpu = time.perf_counter(), time.process_time()
    result = impl.train(params, x, y, steps, record=checkpoint_steps(steps, every))
    return Run(impl, result, time.perf_counter() - start, cpu_s=time.process_time() - cpu)


# Per-step overheads at 2-4-1 on this 2-core machine (us): the scheduler starts the slowest first, and
# harness.running.resources estimates a run's time from them.
US_PER_STEP = {"torch-nn": 200, "torch": 150, "torch-compile": 60, "numpy-fd": 45, "numpy": 33, "jax-step": 30,
               "numpy-fast": 8, "torch-loop": 3, "keras": 2, "jax-optax": 1, "jax": 1}
REFERENCE_US_PER_STEP = 15  # the oracle's loop, longdouble or a stack of three in float64 or float32
OTHER_US_PER_STEP = 33  # a plugin: taken as plain numpy


def timed_train(impl: Implementation, params: Params, x, y, steps: int, every: int,
                factory: Callable | None = None) -> tuple[TrainResult, float, list[dict] | str, float]:
    """In the implementation's worker: its trajectory, the loop's wall time and, given the implementation's
    ``factory``, its per-call timings, taken at once in the same slot (beside at most one other trajectory, as
    the trajectory was), so they never wait for a core of their own after training; a timing that raises
    gives its one-line reason instead of rows, and the trajectory stands; last, the loop's CPU seconds."""
    run = train(impl, params, x, y, steps, every)
    if factory is None:
        return run.result, run.wall_s, [], run.cpu_s
    try:
        rows = timing.measure(impl, factory, run.wall_s, len(run.result.losses), params, x, y)
    except Exception as exc:  # noqa: BLE001 -- reported against the implementation, as a fault of its timing
        rows = f"timing raised {type(exc).__name__}: {one_line(exc)}"
    return run.result, run.wall_s, rows, run.cpu_s


def _reference_run(job: ReferenceJob, params: Params, x, y, steps: int, every: int) -> list[Reference]:
    """In a worker of its own: the oracle's runs in one dtype (never time-limited: the truth is not on trial)."""
    return job(params, x, y, steps, checkpoint_steps(steps, every))


@dataclass
class OracleWorkers:
    """The oracle's workers, one per job, started before the implementations' (plain forks of this process
    where that is safe: they need no framework), the first job (the truth's) given at once: it trains while
    the fork server imports torch and JAX for the implementations, on a core that would otherwise wait."""

    jobs: list[ReferenceJob]
    workers: list[Worker]
    first_running: bool = False

    def close(self) -> None:
        """Ask each worker to finish, once its work is done."""
        for w in self.workers:
            w.close()

    def stop(self) -> None:
        """End each worker now, busy or not."""
        for w in self.workers:
            w.stop()


def oracle_workers(jobs: list[ReferenceJob], params: Params, x, y, steps: int, every: int,
                   first: bool = True) -> OracleWorkers | None:
    """Each job's worker started, and the first job's run given to it (``first``); None where this process may
    not start workers (the oracle then trains here, in ``train_all``)."""
    if not usable(ReferenceJob):
        return None
    found = OracleWorkers(jobs, [Worker(f"oracle {job.dtype}", on_one_blas_thread,
                                        (ReferenceJob, job.spec, job.dtype, job.conventions), numpy_only=True)
                                 for job in jobs])
    if first and found.workers:
        found.workers[0].submit(_reference_run, (dict(params), x, y, steps, every), "the oracle's run")
        found.first_running = True
    return found


def train_all(impls: list[Implementation], references: list[ReferenceJob], params: Params,
              x: np.ndarray, y: np.ndarray, steps: int, every: int, limit: Callable[[Implementation], float],
              factories: dict[str, Callable] | None = None, idle: Callable | None = None,
              oracle: OracleWorkers | None = None) -> tuple[list[Run | str], list[list[Reference]]]:
    """Every implementation's trajectory (a Run, or the fault that stopped it) and the oracle's runs, in order.

    Each trajectory runs in its implementation's worker, and each of the oracle's in
    a worker of its own, at most one per core at a time, slowest first; each wall
    time is taken inside its worker, beside at most one other. An implementation
    built in this process (its factory could not be sent to a worker) trains here. Given ``factories``
    (name -> how to build it again), each is timed right after its trajectory, in the same task. Given
    ``idle(runs, references, tail)`` (the trained runs so far; dtype -> the oracle's runs in hand; whether
    every task has started), it is called whenever a core is free, before the next task starts, to do one
    piece of this process's own work there (it returns whether it found any): so nothing here ever runs
    beside two timed tasks. ``limit(impl)``: the seconds its ``train()`` may take. ``oracle``: the
    oracle's workers for ``references``, started earlier (``oracle_workers``), its first job perhaps running.
    """
    factories = factories or {}
    done: dict[int, object] = {}
    for i, impl in enumerate(impls):
        if not isinstance(impl, RemoteImpl):
            done[i] = _here(impl, params, x, y, steps, every, limit(impl), factories.get(impl.name))
    args = (dict(params), x, y, steps, every)
    oracle = oracle or oracle_workers(references, *args, first=False)
    if oracle is None:  # this process may not start workers (a daemonic one: a Dask worker's)
        done.update({len(impls) + j: _reference_run(job, *args) for j, job in enumerate(references)})
    assert oracle is None or oracle.jobs == references
    hosts = oracle.workers if oracle else []
    running = {len(impls): hosts[0]} if oracle and oracle.first_running else {}
    try:
        tasks = [Task(i, impl.worker, timed_train, "train()", US_PER_STEP.get(impl.name, OTHER_US_PER_STEP), limit(impl),
                      (factories.get(impl.name),)) for i, impl in enumerate(impls) if i not in done]
        tasks += [Task(len(impls) + j, w, _reference_run, "the oracle's run", REFERENCE_US_PER_STEP)
                  for j, w in enumerate(hosts) if len(impls) + j not in running]
        def in_hand(found: dict[int, object], tail: bool) -> bool:
            runs = [Run(impl, *found[i]) for i, impl in enumerate(impls) if isinstance(found.get(i), tuple)]
            hand = {job.dtype: found[len(impls) + j] for j, job in enumerate(references)
                    if isinstance(found.get(len(impls) + j), list)}
            return idle(runs, hand, tail)

        oracles = frozenset(range(len(impls), len(impls) + len(references)))  # a job's worker: one run, then idle
        done.update(schedule(_order(tasks, len(impls)), args, in_hand if idle else None, done, running, oracles))
    except BaseException:  # interrupted, or this process failed: a busy oracle worker is stopped, not waited for
        if oracle:
            oracle.stop()
        raise
    if oracle:
        oracle.close()
    for j in range(len(references)):
        found = done[len(impls) + j]
        if isinstance(found, Fault):
            if found.kind == "OracleError":
                raise OracleError(str(found))
            raise RuntimeError(f"the oracle's {references[j].dtype} run failed: {found}")
    runs = [Run(impl, *done[i]) if isinstance(done[i], tuple) else str(done[i]) for i, impl in enumerate(impls)]
    return runs, [done[len(impls) + j] for j in range(len(references))]


class Task(NamedTuple):
    """One piece of work for ``schedule``: ``fn(hosted, *args, *more)`` in ``worker``."""

    key: int  # where its value goes in ``schedule``'s answer
    worker: Worker
    fn: Callable
    label: str  # the call, as a fault names it
    cost: float  # expected microseconds per step: the longest start first
    seconds: float = 0.0  # its time limit (0: none)
    more: tuple = ()  # arguments after the ones every task shares


def _order(tasks: list[Task], oracle_from: int) -> list[Task]:
    """The longest trajectories first, one per core (longest-first balances the cores), then the oracle's
    (keys from ``oracle_from``): every run's one-step checks wait for its dtype's reference runs, and can then
    fill a free core between the trajectories (``schedule``'s idle) instead of running after the last."""
    trajectories = sorted((t for t in tasks if t.key < oracle_from), key=lambda t: -t.cost)
    return trajectories[:slots()] + [t for t in tasks if t.key >= oracle_from] + trajectories[slots():]


def slots() -> int:
    """How many trajectories run side by side: one per core, at most two (each is timed beside at most one
    other, on any machine, so timings from different machines stay comparable)."""
    return max(1, min(2, os.cpu_count() or 1))


def schedule(tasks: list[Task], args: tuple, idle: Callable[[dict], bool] | None = None,
             before: dict | None = None, running: dict | None = None, done_with: frozenset = frozenset()
             ) -> dict[int, object]:
    """Run ``tasks`` in order, one per core at a time:
    key -> value or Fault. Whenever a core is free, ``idle(done so far, with ``before``; whether every task
    has started)`` first does one
    piece of this process's own work there, if it has any (asked again only once more tasks have ended),
    and the next task starts when it has none: so this process never works beside two tasks. ``running``:
    key -> worker, tasks submitted earlier, each holding a core until it ends. ``done_with``: keys whose
    worker has no more work once its value is in: it is closed then, and what it held goes with it."""
    slots_ = slots()
    queue, running, done = list(tasks), dict(running or {}), {}
    idle_found_nothing_at = -1  # how many tasks had ended when idle last found nothing: asked again on more
    while queue or running:
        if idle is not None and len(running) < slots_ and len(done) != idle_found_nothing_at:
            if idle({**(before or {}), **done}, not queue):
                _collect(running, done, done_with)  # one piece done: look again before starting or waiting
                continue
            idle_found_nothing_at = len(done)
        if queue and len(running) < slots_:
            task = queue.pop(0)
            try:
                task.worker.submit(task.fn, args + task.more, task.label, task.seconds)
                running[task.key] = task.worker
            except Fault as exc:
                done[task.key] = exc
            continue
        wait([w for w in running.values()], POLL_S)
        _collect(running, done, done_with)
    while idle is not None and idle({**(before or {}), **done}, True):  # the last task ended: the rest, now
        pass
    return done


def _collect(running: dict, done: dict, done_with: frozenset = frozenset()) -> None:
    """Move every finished task's value (or Fault) from ``running`` to ``done``."""
    for key, worker in list(running.items()):
        if worker.ready():
            del running[key]
            try:
                done[key] = worker.result()
            except Fault as exc:
                done[key] = exc
            if key in done_with:
                worker.close()


def _here(impl: Implementation, params, x, y, steps: int, every: int, limit: float,
          factory: Callable | None) -> tuple | str:
    try:
        return guarded("train()", lambda: timed_train(impl, params, x, y, steps, every, factory), limit)
    except Fault as exc:
        return str(exc)
