"""Where independent pieces of work run: one interface, local processes or a Dask cluster.

``harness.sweep`` (one grid point a task) and ``harness.fuzz`` (one search shard a
task) submit through ``executor(jobs, scheduler)``:

- ``scheduler=None``: ``jobs`` local worker processes (spawned, not forked:
  forking a process that has started JAX's threads can deadlock), or this
  process alone when ``jobs`` is 1;
- ``scheduler="tcp://HOST:PORT"``: an existing Dask cluster, through
  ``dask.distributed.Client``: each task is one future, collected with
  ``as_completed``. Each worker needs this project installed (with the
  frameworks its tasks use) and the same constraints; nothing else. A Dask
  worker is a daemonic process, which may not start processes of its own, so
  there each implementation runs in the task's process instead of a worker of
  its own (a crash then takes the task down, and Dask reports it).

Either way ``run(fn, items)`` returns the results in the order of ``items``,
so a run's tables do not depend on where or in which order tasks finished.
Every task also reports where it ran (``where``), so a cluster of mixed
hardware shows which machine a row came from.
"""
from __future__ import annotations

import platform
import socket
from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing import get_context
from typing import Any, Callable, Iterator, Sequence

from harness.meta import cpu_model


class SchedulerError(Exception):
    """The Dask scheduler cannot be used (dask missing, or not reachable); ``str(exc)`` is one line."""


def where(device: str = "cpu") -> dict[str, str]:
    """The host a task runs on and the device it computes on (the CPU model, or the GPU's name for cuda)."""
    name = cpu_model() or platform.processor() or "cpu"
    if device == "cuda":
        try:
            import torch

            name = torch.cuda.get_device_name(0)
        except Exception:  # noqa: BLE001 -- no GPU to name: the row says cuda
            name = "cuda"
    return {"host": socket.gethostname(), "device": name}


class Local:
    """``jobs`` spawned processes, or this process alone."""

    def __init__(self, jobs: int) -> None:
        self.jobs = jobs
        self.in_process = jobs == 1  # tasks run here, one after another
        self.pool = ProcessPoolExecutor(jobs, mp_context=get_context("spawn")) if jobs > 1 else None

    def run(self, fn: Callable, items: Sequence, *args: Any) -> list:
        if self.pool is None:
            return [fn(item, *args) for item in items]
        futures = {self.pool.submit(fn, item, *args): i for i, item in enumerate(items)}
        return _in_order(((futures[f], f) for f in as_completed(futures)), len(items))

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(cancel_futures=True)

    @property
    def description(self) -> str:
        return f"{self.jobs} local process(es)"


class DaskCluster:
    """An existing Dask cluster, through ``dask.distributed.Client``."""

    def __init__(self, address: str, timeout_s: float = 5.0) -> None:
        try:
            from dask.distributed import Client
        except ImportError:
            raise SchedulerError("--scheduler needs dask.distributed: pip install -c constraints.txt -e '.[dask]'"
                                 ) from None
        try:
            self.client = Client(address, timeout=timeout_s)
        except (OSError, TimeoutError) as exc:
            raise SchedulerError(f"no Dask scheduler at {address} ({type(exc).__name__}: {exc})") from None
        self.address = address
        self.in_process = False

    def run(self, fn: Callable, items: Sequence, *args: Any) -> list:
        from dask.distributed import as_completed as completed

        futures = [self.client.submit(fn, item, *args, pure=False) for item in items]
        index = {f.key: i for i, f in enumerate(futures)}
        return _in_order(((index[f.key], f) for f in completed(futures)), len(items))

    def close(self) -> None:
        self.client.close()

    @property
    def description(self) -> str:
        workers = self.client.scheduler_info().get("workers", {})
        return f"the Dask cluster at {self.address} ({len(workers)} worker(s))"


# Points that share one local GPU at a time. Each point starts a worker process per implementation and dtype,
# each with its own CUDA context; 12 points at once (about 180 processes) ran an H200's 141 GB out at context
# creation (CUDA_ERROR_OUT_OF_MEMORY) and broke the pool. 4 stays well inside that.
GPU_JOBS = 4


def gpu_capped(jobs: int, device: str, scheduler: str | None) -> tuple[int, str | None]:
    """``jobs`` for local points on ``device``, lowered to GPU_JOBS on one GPU, and a note saying so (or None)."""
    if device != "cuda" or scheduler is not None or jobs <= GPU_JOBS:
        return jobs, None
    return GPU_JOBS, (f"--jobs {jobs} lowered to {GPU_JOBS}: points on one GPU each start their own CUDA "
                      "contexts, and more at once run its memory out")


def executor(jobs: int, scheduler: str | None) -> Local | DaskCluster:
    """Local processes, or the Dask cluster at ``scheduler``; raises SchedulerError (one line) if unusable."""
    if scheduler is None:
        return Local(jobs)
    if not scheduler.startswith("tcp://"):
        raise SchedulerError(f"--scheduler must look like tcp://HOST:PORT, got {scheduler!r}")
    return DaskCluster(scheduler)


def _in_order(done: Iterator[tuple[int, Any]], count: int) -> list:
    results: list = [None] * count
    for i, future in done:
        results[i] = future.result()
    return results
