"""The common interface in front of a worker: implementations and the oracle computed in processes of their own."""
from __future__ import annotations

import pickle
import time
from functools import partial
from typing import Any, Callable, Iterable, Iterator, TypeVar

import numpy as np

from harness.running.guard import Fault
from harness.running.spill import Answers, digest
from harness.running.workers import HEAP_KEPT, Worker, libc, may_start

T = TypeVar("T")
ENABLED = True  # False runs every call in this process (tests that monkeypatch code a worker would not see)


def _method(hosted: object, name: str, args: tuple, kwargs: dict) -> tuple[Any, dict]:
    """In the worker: the call's value, and every input array it changed (so the caller's copy can change too)."""
    before = {place: value.copy() for place, value in _arrays(args)}
    result = getattr(hosted, name)(*args, **kwargs)
    changed = {place: value for place, value in _arrays(args)
               if not np.array_equal(value, before[place], equal_nan=True)}
    return result, changed


def _methods(hosted: object, calls: list[tuple[str, tuple]]) -> list[tuple]:
    """In the worker: ``_method``'s (value, changed) for each call in order, up to the first that raises, which
    ends the list as ("raised", its name, the exception's class, its line)."""
    from harness.running.workers import kind_of  # the interface's own class names, as a single call reports them
    from harness.running.guard import one_line

    done: list[tuple] = []
    for name, args in calls:
        try:
            done.append(_method(hosted, name, args, {}))
        except Exception as exc:  # noqa: BLE001 -- reported as the single call would report it
            done.append(("raised", name, kind_of(exc), one_line(exc)))
            break
    return done


def _calls(hosted: object, requests: list[tuple[str, tuple, dict]]) -> list[Any]:
    """In the oracle's worker: each (method, args, kwargs) call's value, in order."""
    return [getattr(hosted, name)(*args, **kwargs) for name, args, kwargs in requests]


def _arrays(args: tuple):
    """((position, key), array) for every array given, directly or in a dict of named arrays."""
    for i, arg in enumerate(args):
        if isinstance(arg, np.ndarray):
            yield (i, None), arg
        elif isinstance(arg, dict):
            yield from (((i, k), v) for k, v in arg.items() if isinstance(v, np.ndarray))


def usable(factory: Callable) -> bool:
    """Whether ``factory`` can build in a worker: it pickles (a lambda does not), and this process may
    start one (a daemonic process, e.g. a multiprocessing.Pool's, may not)."""
    if not ENABLED or not may_start():
        return False
    try:
        pickle.dumps(factory)
        return True
    except Exception:  # noqa: BLE001 -- pickling can raise anything
        return False


class RemoteImpl:
    """An implementation living in its own worker, with the common interface: every call goes there.

    Its plain attributes (name, spec, exact, conventions) were read once, when it was built; a method
    the hosted object lacks is missing here too, so validation sees what the plugin offers."""

    def __init__(self, worker: Worker, seconds: float) -> None:
        self.worker, self.seconds = worker, seconds
        self.environment = worker.attributes["environment"]
        for key, value in worker.attributes.items():
            if key not in ("methods", "environment"):
                setattr(self, key, value)
        for method in worker.attributes["methods"]:
            setattr(self, method, partial(self._remote, method))

    def _remote(self, method: str, *args: Any, **kwargs: Any) -> Any:
        result, changed = self.worker.call(_method, (method, args, kwargs), f"{method}()", self.seconds)
        _write_back(args, changed)
        return result

    def batch(self, calls: Iterable[tuple[str, tuple]]) -> Iterator[Any]:
        """Each (method, args) call's value, in order, as it comes: the calls go in round trips of at most
        ``BATCH_BYTES`` of arrays (all in one for a small network), a call's time limit each."""
        for part in in_round_trips(calls, lambda call: array_bytes(call[1]), BATCH_BYTES):
            names = " and ".join(dict.fromkeys(f"{name}()" for name, _ in part))
            found = self.worker.call(_methods, (part,), f"{names} at {len(part)} points", self.seconds * len(part))
            for (name, args), reply in zip(part, found):
                if len(reply) == 4:  # ("raised", ...); a value comes as (value, changed)
                    raise Fault(f"{name}() raised {reply[2]}: {reply[3]}", kind=reply[2])
                _write_back(args, reply[1])
                yield reply[0]

    def run(self, fn: Callable, *args: Any, label: str) -> Any:
        """``fn(implementation, *args)`` in the worker (e.g. a timed trajectory, or timings)."""
        return self.worker.call(fn, args, label, self.seconds)


def _write_back(args: tuple, changed: dict) -> None:
    """An implementation that writes into its inputs does so here too."""
    for (i, key), value in changed.items():
        target = args[i] if key is None else args[i][key]
        if isinstance(target, np.ndarray) and target.flags.writeable and target.shape == value.shape:
            np.copyto(target, value, casting="unsafe")


def batched(impl, calls: Iterable[tuple[str, tuple]]) -> Iterator[Any]:
    """Each (method, args) call's value, in order, as it comes: in round trips to a worker's implementation
    (``RemoteImpl.batch``), else made here one at a time. ``calls`` may be a generator: no more of them
    are made, or held, than one round trip needs."""
    if isinstance(impl, RemoteImpl):
        return impl.batch(calls)
    return (getattr(impl, name)(*args) for name, args in calls)


BATCH_BYTES = 64 << 20  # arrays sent to a worker in one round trip; the answers are about as large (an
# implementation's gradients or new state), an oracle's truth a few times larger. A check's calls into a large
# network go in round trips of this size, so neither side holds them all at once: a 10-1024-1024-1 network's
# finite-difference check moves 192 copies of its 8.5 MB of parameters, and took 3 GB in each worker at once.


def array_bytes(args: tuple) -> int:
    """The bytes of every array given, directly or in a dict of named arrays (as ``_arrays`` finds them)."""
    return sum(value.nbytes for _, value in _arrays(args))


def in_round_trips(items: Iterable[T], size: Callable[[T], int], limit: int) -> Iterator[list[T]]:
    """``items`` in order, in lists of at most ``limit`` bytes by ``size`` (an item larger than that alone)."""
    part, held = [], 0
    for item in items:
        n = size(item)
        if part and held + n > limit:
            yield part
            part, held = [], 0
        part.append(item)
        held += n
    if part:
        yield part


def where_it_lives(impl, fn: Callable, *args: Any, label: str) -> Any:
    """``fn(impl, *args)`` in the implementation's worker, or here for one built in this process."""
    return impl.run(fn, *args, label=label) if isinstance(impl, RemoteImpl) else fn(impl, *args)


def on_one_blas_thread(factory: Callable, *args: Any) -> Any:
    """In an oracle's worker: the process prepared (``prepare_oracle_process``), then ``factory(*args)``."""
    prepare_oracle_process()
    return factory(*args)


M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters
KEEP_BYTES = 1 << 30  # blocks up to this size stay in the heap when freed, and the heap keeps this much free


def prepare_oracle_process() -> None:
    """This process's BLAS held to one thread, and glibc's malloc told to keep large blocks.

    The oracle's extended products run as float64 BLAS products (``harness.truth.products``) beside other
    processes (the trajectories, a second oracle worker): two BLAS threads a process on two cores wait on each
    other and run slower; one each keeps every core busy. Each product and activation allocates
    arrays of a megabyte or more, which malloc would map fresh and unmap again every time, touching every page
    anew (docs: what checking costs as the network grows); kept in the heap, they are reused. Where mallopt is missing
    (not glibc) only the BLAS limit applies."""
    from threadpoolctl import threadpool_limits

    threadpool_limits(1, user_api="blas")
    HEAP_KEPT[0] = True
    try:
        libc().mallopt(M_MMAP_THRESHOLD, KEEP_BYTES)
        libc().mallopt(M_TRIM_THRESHOLD, KEEP_BYTES)
    except AttributeError:
        pass


ORACLE_BATCH_BYTES = BATCH_BYTES  # arrays sent to an oracle worker in one round trip; its answers are up to four
# times as large (a truth: gradients and their scale, in longdouble)
PARALLEL_PARAMS = 10_000  # a network this large has its truths at many states computed by two workers side by side


class RemoteOracle:
    """The oracle in a worker of its own: its truth, reverse mode and forward pass, computed there. A large
    network's many-state requests are shared with a second worker, started the first time, on the other core."""

    def __init__(self, spec) -> None:
        from harness.truth.oracle import Oracle

        self.spec = spec
        self.worker = Worker("oracle", on_one_blas_thread, (Oracle, spec))
        self._second: Worker | None = None
        self._turns: dict[str, int] = {}  # per method: requests dealt so far (shared out in turn)
        self._cache = Answers()  # by the request's digest; past a budget, in a temporary file
        self.seconds = 0.0  # wall seconds its answers took (the checks' share of the oracle's work)

    def _remote(self, method: str, *args: Any, **kwargs: Any) -> Any:
        key = digest((method, args, kwargs))  # the checks ask for the same states once per implementation
        if key not in self._cache:
            self.prefetch([(method, args, kwargs)])
        return self._cache[key]

    def prefetch(self, requests: Iterable[tuple[str, tuple, dict]]) -> None:
        """Compute each (method, args, kwargs) not yet asked, in as few round trips as ``ORACLE_BATCH_BYTES``
        allows; the calls that follow find it. ``requests`` may be a generator (see ``batched``)."""
        from harness.truth.oracle import Oracle, OracleError

        if self.worker.dead:  # stopped mid-call (an interruption: its state is unknown): a fresh one
            self.worker = Worker("oracle", on_one_blas_thread, (Oracle, self.spec))
        if self._second is not None and self._second.dead:
            self._second = None  # started again when a round trip needs it
        shared = sum(n * m for n, m in self.spec.param_shapes().values()) >= PARALLEL_PARAMS
        missing = ((key, request) for request in requests if (key := digest(request)) not in self._cache)
        for part in in_round_trips(missing, lambda item: array_bytes(item[1][1]),
                                   2 * ORACLE_BATCH_BYTES if shared else ORACLE_BATCH_BYTES):
            if len(part) > 1 and shared and self._second is None:
                # from the fork server, not a plain fork of this process: started this late, a fork would
                # share this process's pages as they are now (a 10-1024-1024-1 run's checkpoints, GBs) and keep
                # each one alive once this process frees or rewrites it
                self._second = Worker("oracle, second", on_one_blas_thread, (Oracle, self.spec))
            workers = [self.worker, self._second] if len(part) > 1 and shared else [self.worker]
            label = f"the oracle's {part[0][1][0]}()" if len(part) == 1 else f"the oracle at {len(part)} points"
            start = time.perf_counter()
            shares: list[list] = [[] for _ in workers]  # each kind of request dealt in turn (truths cost most)
            for item in part:
                turn = self._turns[item[1][0]] = self._turns.get(item[1][0], -1) + 1
                shares[turn % len(workers)].append(item)
            workers, shares = zip(*[(w, share) for w, share in zip(workers, shares) if share])
            try:
                for worker, share in zip(workers, shares):
                    worker.submit(_calls, ([request for _, request in share],), label)
                for worker, share in zip(workers, shares):
                    self._cache.update(zip((key for key, _ in share), worker.result()))
            except Fault as exc:  # the harness's own truth failed: never an implementation's fault
                for worker in workers:  # a call may still be pending: the run ends here
                    worker.stop()
                raise OracleError(str(exc)) from None
            finally:
                self.seconds += time.perf_counter() - start

    def truth(self, params, x, y):
        return self._remote("truth", params, x, y)

    def reverse(self, *args, **kwargs):
        return self._remote("reverse", *args, **kwargs)

    def preactivations(self, params, x):
        return self._remote("preactivations", params, x)

    def loss(self, params, x, y):
        return self._remote("loss", params, x, y)
