"""One worker process per implementation: a crash, an abort or a hang inside it becomes a one-line fault.

A ``Worker`` builds one object (an implementation, or the oracle's jobs) from a
picklable factory in a process of its own and serves calls on it, one at a time,
for as long as the run lasts, so the implementation keeps its compiled state
between calls. The main process only sends arguments and waits in short polls,
so Ctrl-C and SIGTERM reach it at once; whatever stops a call (an exception, a
signal, ``os._exit``, the kernel's OOM killer, a hang past the time limit) comes
back as ``Fault`` with one line naming the call and the cause, and a worker that
died or hung is killed and stays dead. ``stop_all`` ends every worker. A worker
asks the kernel's OOM killer to take it first, so an implementation that runs
memory out loses its own process, not the run's (nor a Dask worker's).
``harness.running.remote`` puts the common interface in front of one.
"""
from __future__ import annotations

import functools
import inspect
import multiprocessing
import os
import signal
import sys
import time
import warnings
from multiprocessing import connection, get_context
from multiprocessing.connection import Connection
from typing import Any, Callable

import numpy as np

from harness.forking import fork_context
from harness.meta import framework_info
from harness.running.guard import Fault, one_line
from harness.running.transport import receive, send

POLL_S = 0.05  # longest wait for a reply before the main process looks at signals and the clock again
_LIVE: set["Worker"] = set()
_FORKED: set["Worker"] = set()  # the live workers that are plain forks of this process, not the fork server's
# A fork server imports the harness once, without torch or JAX, and forks each worker from that clean
# process: a worker starts in milliseconds, where a spawned one imports the harness again (about 0.8 s).
# No plain fork of this process once it has a framework loaded: JAX's and torch's threads do not survive one.
PRELOAD = ["numpy", "scipy.special", "pandas", "harness.running.workers", "harness.truth.references",
           "impls.interface", "impls.registry"]
_CONTEXT = get_context("forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn")
PRELOAD_LAST = ["harness.running.forkserver_exit"]  # after the frameworks: see that module
RUN_MODULES: list[str] = []  # the run's implementation modules, imported once by the fork server (see preload)
NOT_IN_WORKERS = ("harness.reporting",)  # tables and plots (matplotlib): drawn here or in plain forks, never there
_PEAKS: dict[str, int] = {}  # label -> the largest peak resident bytes of the stopped workers of that label


def preload(modules: list[str]) -> None:
    """Have the fork server import these modules (the run's implementations and so their frameworks) before it
    forks the first worker: imported, not yet used, none has started a thread; each worker then starts with
    them loaded instead of importing them again. A module that fails to import is left to the worker."""
    RUN_MODULES[:] = list(dict.fromkeys(modules))


def _preload() -> None:
    """Before the fork server starts: what it imports once for every worker, with every harness module
    this process has loaded that a worker may use (a worker runs its main module's body again, cheap once
    those are imported)."""
    main = getattr(sys.modules["__main__"], "__spec__", None)
    loaded = [m for m in list(sys.modules) if m.startswith("harness.") and (main is None or m != main.name)
              and not m.startswith(NOT_IN_WORKERS)]
    _CONTEXT.set_forkserver_preload(PRELOAD + loaded + RUN_MODULES + PRELOAD_LAST)


class WorkerError(Exception):
    """The object could not be built in the worker; ``kind`` is the exception's class name."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


PARENT_GONE = (EOFError, BrokenPipeError, ConnectionResetError)  # what a worker's pipe raises once its parent ended


def _serve(conn: Connection, factory: Callable, args: tuple, name: str, parents_end: Connection | None = None) -> None:
    """In the worker: build the object, then answer (function, args) calls until told to stop. A plain fork
    is handed the parent's end of the pipe, which it inherited, to close: held open here, it would keep this
    worker waiting for ever once the parent ended without stopping it (a signal between fork and bookkeeping)."""
    if parents_end is not None:
        parents_end.close()
    _first_to_go()
    _name_process(name)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle: it ends every worker
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a plain fork inherits the parent's handler: not the worker's
    np.seterr(all="ignore")  # overflow to inf or NaN is a result here, reported per run, as in the main process
    warnings.simplefilter("ignore", RuntimeWarning)
    try:
        _answer(conn, factory, args)
    except PARENT_GONE:  # it failed or was stopped: it reports that, not each of its workers
        return


def _answer(conn: Connection, factory: Callable, args: tuple) -> None:
    """Build the object and answer calls on it; a send or receive fails once the parent is gone."""
    try:
        hosted = factory(*args)
        send(conn, ("ok", _describe(hosted)))
    except BaseException as exc:  # noqa: BLE001 -- whatever stops construction is reported, by class name
        send(conn, ("raised", kind_of(exc), one_line(exc)))
        return
    while True:
        message = receive(conn)
        if message is None:
            return
        fn, call_args = message
        try:
            result = fn(hosted, *call_args)
        except BaseException as exc:  # noqa: BLE001
            send(conn, ("raised", type(exc).__name__, one_line(exc)))
            continue
        try:
            send(conn, ("ok", result))
        except PARENT_GONE:
            raise
        except Exception as exc:  # noqa: BLE001 -- e.g. a result that cannot be pickled
            send(conn, ("raised", type(exc).__name__, f"its result could not be sent back: {one_line(exc)}"))
        del result
        if not HEAP_KEPT[0]:
            give_back_freed_memory()


HEAP_KEPT = [False]  # True in a process that keeps its freed memory for reuse (the oracle's: ``remote``)


@functools.lru_cache(maxsize=1)
def libc():
    """The C library, through ctypes, or None where it cannot be loaded."""
    try:
        import ctypes

        return ctypes.CDLL(None)
    except OSError:
        return None


def give_back_freed_memory() -> None:
    """Return the memory this process has freed to the system (glibc's ``malloc_trim``; elsewhere nothing).

    A worker holds what its calls allocate until it ends: malloc keeps freed blocks for reuse, and glibc's
    threshold for mapping a block on its own rises with the blocks freed. The 2,000-step 10-1024-1024-1 run's
    torch worker stayed at 4.4 GB after its ``train()`` had returned its 0.9 GB of checkpoints, through every
    check after. Trimming after a call costs little beside it (about a millisecond a GB of freed heap)."""
    found = libc()
    try:
        found.malloc_trim(0)
    except AttributeError:  # not glibc, or no C library at all
        pass


def _name_process(name: str) -> None:
    """Give this process the worker's name where the system shows one (Linux: ``ps``, ``top`` and the kernel's
    OOM-killer log print it, truncated to 15 bytes), instead of the parent's "python"."""
    import ctypes

    try:
        libc().prctl(PR_SET_NAME, ctypes.c_char_p(name.encode()[:15]), 0, 0, 0)
    except AttributeError:  # no prctl (not Linux), or no C library: the name stays the parent's
        pass


PR_SET_NAME = 15  # prctl(2)


def peak_bytes(pid: int | None) -> int | None:
    """A live process's peak resident memory so far (Linux's VmHWM), or None where the system does not say.
    A plain fork's counts the pages it still shares with its parent."""
    try:
        with open(f"/proc/{pid}/status") as f:
            return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmHWM:"))
    except (OSError, StopIteration, ValueError):
        return None


def _first_to_go() -> None:
    """Have the kernel's OOM killer take this process before any other (Linux; raising it needs no privilege)."""
    try:
        with open("/proc/self/oom_score_adj", "w") as f:
            f.write("1000")
    except OSError:  # no /proc, or not allowed: the kernel then picks by size alone
        pass


PLAIN = (str, int, float, bool, type(None))
METHODS = ("forward", "loss_and_grads", "train", "kernel")  # the common interface's calls (kernel: optional)


def kind_of(exc: BaseException) -> str:
    """The class name, or the interface's own class an implementation's exception derives from."""
    from impls.interface import NotInstalled, Unavailable

    return next((c.__name__ for c in (NotInstalled, Unavailable) if isinstance(exc, c)), type(exc).__name__)


def _plain_dict(value: object) -> bool:
    """A dict of plain keys and values (conventions, framework_defaults, framework_settings)."""
    return isinstance(value, dict) and all(isinstance(v, PLAIN) for kv in value.items() for v in kv)


def _describe(hosted: object) -> dict[str, Any]:
    """The plain attributes the main process reads without a call (name, spec, exact, conventions, ...)."""
    found = {}
    for k in dir(hosted):
        if not k.startswith("_"):
            value = inspect.getattr_static(hosted, k, None)  # never runs a property
            if isinstance(value, PLAIN) or k == "spec" or _plain_dict(value):
                found[k] = value
    found["methods"] = [m for m in METHODS if callable(getattr(hosted, m, None))]
    found["environment"] = framework_info(set(sys.modules))  # torch's and jax's settings, where they run
    return found


def cause_of_death(exitcode: int | None) -> str:
    """'killed by SIGSEGV', 'exited with code 3', ... for a worker that ended on its own."""
    if exitcode is not None and exitcode < 0:
        try:
            return f"killed by {signal.Signals(-exitcode).name}"
        except ValueError:
            return f"killed by signal {-exitcode}"
    return f"exited with code {exitcode}"


def _death(exitcode: int | None, label: str) -> str:
    why = f"{cause_of_death(exitcode)} during {label}"
    if exitcode == -signal.SIGKILL:  # nothing in the harness sends it to a busy worker
        why += " (the kernel's OOM killer sends SIGKILL when memory runs out)"
    return why


class Worker:
    """A process hosting ``factory(*args)``; ``call`` runs ``fn(hosted, *call_args)`` there."""

    def __init__(self, label: str, factory: Callable, args: tuple = (), seconds: float = 0.0,
                 numpy_only: bool = False) -> None:
        """``numpy_only``: the hosted object imports no framework, so a plain fork of this process may
        host it where one is safe (``fork_context``)."""
        self.dead: str | None = None  # why no further call can be made
        context = (numpy_only and fork_context()) or _CONTEXT
        if context is _CONTEXT and _CONTEXT.get_start_method() == "forkserver" and not _LIVE - _FORKED:
            _preload()
        self._conn, child = context.Pipe()
        inherited = self._conn if context is not _CONTEXT else None  # a plain fork's copy of this end
        self.label = label
        self._process = context.Process(target=_serve, args=(child, factory, args, process_name(label), inherited),
                                        daemon=True, name=f"xor-harness {label}")
        self._process.start()
        child.close()
        _LIVE.add(self)
        if context is not _CONTEXT:
            _FORKED.add(self)
        self._pending: str | None = None
        self._started = time.perf_counter()
        self._seconds = seconds
        self._attributes: dict[str, Any] | None = None

    @property
    def attributes(self) -> dict[str, Any]:
        """The hosted object's plain attributes, once it is built (waits for it; WorkerError or Fault if
        building it raised, died or hung). Workers started together build side by side."""
        if self._attributes is None:
            reply = self._wait("construction", self._seconds, self._started)
            if reply[0] != "ok":
                self.stop()
                raise WorkerError(reply[1], reply[2])
            self._attributes = reply[1]
        return self._attributes

    def submit(self, fn: Callable, args: tuple, label: str, seconds: float = 0.0) -> None:
        """Start ``fn(hosted, *args)`` in the worker; collect it with ``result``."""
        self.attributes  # noqa: B018 -- built first
        if self.dead:
            raise Fault(f"{label} not run: {self.dead}")
        try:
            send(self._conn, (fn, args))
        except OSError:  # BrokenPipeError: the worker died since its last answer (the OOM killer, say)
            self._died(label)
        self._pending, self._started, self._seconds = label, time.perf_counter(), seconds

    def ready(self) -> bool:
        """Whether the pending call has an answer, or the worker died, or the call ran out of time."""
        return (self._conn.poll() or not self._process.is_alive()
                or 0 < self._seconds < time.perf_counter() - self._started)

    def result(self) -> Any:
        """The pending call's value; Fault if it raised, hung or the worker died."""
        label, self._pending = self._pending, None
        reply = self._wait(label, self._seconds, self._started)
        if reply[0] == "ok":
            return reply[1]
        raise Fault(f"{label} raised {reply[1]}: {reply[2]}", kind=reply[1])

    def call(self, fn: Callable, args: tuple, label: str, seconds: float = 0.0) -> Any:
        self.submit(fn, args, label, seconds)
        return self.result()

    def _wait(self, label: str, seconds: float, started: float | None = None) -> tuple:
        started = time.perf_counter() if started is None else started
        try:
            while not self._conn.poll(POLL_S):
                if not self._process.is_alive():
                    self._process.join()
                    if self._conn.poll():  # it answered, then ended
                        break
                    self._die(_death(self._process.exitcode, label))
                if 0 < seconds < time.perf_counter() - started:
                    self._die(f"{label} ran past the {seconds:g} s time limit and was stopped")
            return receive(self._conn)
        except (EOFError, OSError):
            self._died(label)
        except BaseException:  # Ctrl-C, SIGTERM or a limit from outside: the call's state is unknown
            self.stop()
            raise

    def _died(self, label: str):
        """The worker ended on its own during ``label``: Fault naming how."""
        self._process.join(1)
        self._die(_death(self._process.exitcode, label))

    def _die(self, why: str):
        self.stop()
        self.dead = why
        raise Fault(why)

    def stop(self) -> None:
        """End the worker now (it holds nothing that needs saving)."""
        _LIVE.discard(self)
        _FORKED.discard(self)
        _keep_peak(self.label, peak_bytes(self._process.pid) if self._process.is_alive() else None)
        if self._process.is_alive():
            self._process.kill()
        self._process.join()
        self._conn.close()
        self.dead = self.dead or "its worker was stopped"

    def close(self) -> None:
        """Ask the worker to finish, then make sure it has."""
        if self._process.is_alive() and not self.dead:
            _keep_peak(self.label, peak_bytes(self._process.pid))  # before it ends
            try:
                send(self._conn, None)
                self._process.join(2)
            except (OSError, BrokenPipeError):
                pass
        self.stop()


def wait(workers: list[Worker], timeout: float) -> None:
    """Return when one of ``workers`` answers or ends, or after ``timeout`` seconds."""
    handles = [h for w in workers for h in (w._conn, w._process.sentinel)]  # noqa: SLF001
    if handles:
        connection.wait(handles, timeout)
    else:
        time.sleep(timeout)


def may_start() -> bool:
    """Whether this process may start workers (a daemonic one, e.g. a multiprocessing.Pool's, may not)."""
    return not _CONTEXT.current_process().daemon


def stop_all() -> None:
    """End every live worker (on Ctrl-C, SIGTERM, or the end of a run)."""
    for worker in list(_LIVE):
        worker.stop()


def process_name(label: str) -> str:
    """What ``ps`` and the OOM killer's log call a worker: 'xh ' and its label, short words first."""
    return "xh " + label.replace("float", "f").replace("oracle", "orcl").replace(", second", "2")


def _keep_peak(label: str, found: int | None) -> None:
    if found is not None:
        _PEAKS[label] = max(found, _PEAKS.get(label, 0))


def forget_peaks() -> None:
    """Start the record of ``peak_memory`` afresh (a new run)."""
    _PEAKS.clear()


def peak_memory() -> dict[str, int]:
    """Peak resident bytes by worker label, of the live workers and of those stopped since ``forget_peaks``,
    where the system says (Linux); a worker that was killed is missing."""
    for worker in list(_LIVE):
        _keep_peak(worker.label, peak_bytes(worker._process.pid))  # noqa: SLF001
    return dict(sorted(_PEAKS.items()))


def pid_of(worker: Worker) -> int | None:
    return worker._process.pid  # noqa: SLF001 -- for tests that kill a worker from outside
