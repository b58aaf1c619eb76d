"""Where independent pieces of work run: one interface, local processes or a Dask cluster.

``harness.sweep`` (one grid point a task) and ``harness.fuzz`` (one search shard a
task) submit through ``executor(jobs, scheduler)``:

- ``scheduler=None``: ``jobs`` local worker processes (spawned, not forked:
  forking a process that has started JAX's threads can deadlock), or this
  process alone when ``jobs`` is 1;
- ``scheduler="tcp://HOST:PORT"``: an existing Dask cluster, through
  ``dask.distributed.Client``: each task is one future, collected with
  ``as_completed``. Each worker needs this project installed (with the
  frameworks its tasks use) and the same versions: ``versions`` on every worker
  must equal this process's before anything is submitted (``VersionMismatch``).

On a Dask worker a task runs in a fresh Python process of its own
(``in_own_process``), started with ``subprocess``, which a daemonic Dask worker
may start whatever its configuration. There, as in a local run, every
implementation runs in a worker process of its own and the task's calls run
on that process's main thread: a crash, a memory kill or a hang past
``--time-limit`` is one fault line and the task goes on; the Dask worker never
sees it. The cost is one Python start and this project's imports per task.

Either way ``run(fn, items)`` returns the results in the order of ``items``,
so a run's tables do not depend on where or in which order tasks finished.
Every task also reports where it ran (``where``), so a cluster of mixed
hardware shows which machine a row came from.
"""
from __future__ import annotations

import hashlib
import os
import pickle
import platform
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import uuid
from concurrent.futures import ProcessPoolExecutor, as_completed
from importlib import metadata
from multiprocessing import get_context
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from harness.meta import cpu_model
from harness.running.guard import one_line

VERSION_MISMATCH = 4  # the exit code of harness.fuzz and harness.sweep when the workers' versions differ
# What a task's rows depend on, besides Python and this project's own code: checked on every worker
PACKAGES = ("numpy", "scipy", "ml_dtypes", "pandas", "torch", "jax", "jaxlib", "optax", "keras", "hypothesis",
            "dask", "distributed", "cloudpickle")


class SchedulerError(Exception):
    """The Dask scheduler cannot be used (dask missing, or not reachable); ``str(exc)`` is one line."""


class VersionMismatch(SchedulerError):
    """A Dask worker runs other versions than this process (or cannot import this project); one line."""


class TaskDied(Exception):
    """A task's own process ended without an answer that could be read (code running in that process crashed
    it, or it was killed)."""


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
        try:
            check_versions(self.client)
        except VersionMismatch:
            self.client.close()
            raise

    def run(self, fn: Callable, items: Sequence, *args: Any) -> list:
        """``fn(item, *args)`` for each item, each in a process of its own on some worker, in order."""
        from dask.distributed import as_completed as completed

        futures = [self.client.submit(in_own_process, fn, item, *args, pure=False,
                                      key=f"{getattr(fn, '__name__', 'task')}-{uuid.uuid4().hex}") for item in items]
        index = {f.key: i for i, f in enumerate(futures)}
        return _in_order(((index[f.key], f) for f in completed(futures)), len(items))

    def close(self) -> None:
        self.client.close()

    @property
    def description(self) -> str:
        workers = self.client.scheduler_info().get("workers", {})
        return f"the Dask cluster at {self.address} ({len(workers)} worker(s), a process of its own per task)"


# The task's process: this project imported from the Dask worker's environment, then _child.
CHILD = "import sys; from harness.running.executors import _child; _child(*sys.argv[1:])"
ORPHAN_POLL_S = 1.0  # how often a task's process looks whether its Dask worker is still there


def in_own_process(fn: Callable, item: Any, *args: Any) -> Any:
    """``fn(item, *args)`` in a fresh Python process (on a Dask worker: see the module's docstring), with this
    process's environment, working folder and ``sys.path``. What it raises is raised here, its own traceback
    attached as a note; TaskDied if the process ends without an answer."""
    with tempfile.TemporaryDirectory(prefix="xor-harness-task-") as folder:
        request, reply = Path(folder) / "request.pickle", Path(folder) / "reply.pickle"
        with request.open("wb") as f:
            pickle.dump(sys.path, f)  # first: the call's modules import from these
            pickle.dump((fn, item, args), f)
        done = subprocess.run([sys.executable, "-c", CHILD, str(request), str(reply), str(os.getpid())],
                              stdin=subprocess.DEVNULL, check=False)
        if not reply.exists():
            from harness.running.workers import cause_of_death

            raise TaskDied(f"the process of a {getattr(fn, '__name__', 'task')} task ended without an answer"
                           f" ({cause_of_death(done.returncode)})")
        try:
            answer = pickle.loads(reply.read_bytes())
        except Exception as exc:  # noqa: BLE001 -- e.g. an exception class this process cannot import
            raise TaskDied(f"the answer of a {getattr(fn, '__name__', 'task')} task could not be read"
                           f" ({type(exc).__name__}: {one_line(exc)})") from None
    if answer[0] == "ok":
        return answer[1]
    _, exc, where_raised = answer
    exc.add_note(f"raised in the task's own process:\n{where_raised}")
    raise exc


def _child(request: str, reply: str, parent: str) -> None:
    """In a task's process: run the call in ``request``, pickle ("ok", value) or ("raised", exception,
    traceback) to ``reply``, and end (at once if ``parent``, the Dask worker that started it, is gone)."""
    from harness.running import workers

    threading.Thread(target=_end_if_orphaned, args=(int(parent),), daemon=True).start()
    with open(request, "rb") as f:
        sys.path[:] = list(dict.fromkeys([*pickle.load(f), *sys.path]))
        fn, item, args = pickle.load(f)
    try:
        answer = pickle.dumps(("ok", fn(item, *args)))
    except Exception as exc:  # noqa: BLE001 -- raised again by the caller, as a local task's would be
        where_raised = traceback.format_exc()
        try:
            answer = pickle.dumps(("raised", exc, where_raised))
        except Exception:  # noqa: BLE001 -- an exception that does not pickle: its class and line
            answer = pickle.dumps(("raised", RuntimeError(f"{type(exc).__name__}: {one_line(exc)}"), where_raised))
    finally:
        workers.stop_all()
    Path(f"{reply}.part").write_bytes(answer)
    os.replace(f"{reply}.part", reply)  # whole or not at all: a process killed while writing leaves no answer


def _end_if_orphaned(parent: int) -> None:
    """End this task's process, and every worker it started, once its Dask worker is gone."""
    from harness.running import workers

    while os.getppid() == parent:
        time.sleep(ORPHAN_POLL_S)
    workers.stop_all()
    os._exit(1)


def versions() -> dict[str, str | None]:
    """This process's Python, the version of each package in PACKAGES (None: not installed), and this project's
    version with a digest of its code (what a task's own process imports)."""
    found: dict[str, str | None] = {"python": platform.python_version(),
                                    "xor-harness": f"{_version('xor-harness')} (code {_code()})"}
    found.update({name: _version(name) for name in PACKAGES})
    return found


def _code() -> str:
    """A digest of this project's code (the harness and impls packages) as installed here."""
    import harness
    import impls

    digest = hashlib.sha256()
    for package in (Path(harness.__file__).parent, Path(impls.__file__).parent):
        for path in sorted(package.rglob("*")):
            if path.suffix in (".py", ".cpp") and "__pycache__" not in path.parts:
                digest.update(path.relative_to(package.parent).as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:12]


def _version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def mismatches(here: dict[str, str | None], workers: dict[str, dict | BaseException]) -> list[str]:
    """One phrase per worker and package that differs: from this process's version where it has the package,
    else from the first worker's (so the workers agree among themselves); a worker that could not report
    (``workers`` maps its address to the exception) is one phrase too."""
    found = [f"{address} cannot run this project ({type(got).__name__}: {one_line(got)})"
             for address, got in sorted(workers.items()) if isinstance(got, BaseException)]
    reporting = {address: got for address, got in sorted(workers.items()) if isinstance(got, dict)}
    for name in here:
        if here[name] is not None:
            wanted, source = here[name], "this process"
        elif reporting:
            first = next(iter(reporting))
            wanted, source = reporting[first].get(name), first
        else:
            continue
        found += [f"{address} has {name} {got.get(name) or 'not installed'} where {source} has {wanted or 'none'}"
                  for address, got in reporting.items() if got.get(name) != wanted]
    return found


def check_versions(client: Any) -> None:
    """Raise VersionMismatch (one line) unless the scheduler and every worker of ``client``'s cluster report this
    process's ``versions``."""
    try:
        reported = client.run(versions, on_error="return")
    except Exception as exc:  # noqa: BLE001 -- the cluster could not be asked at all
        raise VersionMismatch(f"the workers' versions could not be read ({type(exc).__name__}: {one_line(exc)})"
                              ) from None
    try:  # the scheduler unpickles every task too
        reported["the scheduler"] = client.run_on_scheduler(versions)
    except Exception as exc:  # noqa: BLE001 -- e.g. a scheduler without this project
        reported["the scheduler"] = exc
    found = mismatches(versions(), reported)
    if found:
        more = f" (and {len(found) - 1} more)" if len(found) > 1 else ""
        raise VersionMismatch(f"{found[0]}{more}; install the same versions on every worker"
                              " (pip install -c constraints.txt -e '.[native,dask]') and this project's code")


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
