"""Shared fixtures: the XOR data, the notebook's initial weights, and implementations by name."""
from __future__ import annotations

import gc
import os
import queue
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Callable, IO

# `-n 2` runs two test processes on two cores, each running comparisons whose processes keep thread pools; a pool
# thread that spins while it waits for work (libgomp's, under torch; OpenBLAS's) burns time the other process's
# work needs: 8 % of the suite's CPU in a perf profile. Idle threads here sleep at once instead: no result
# changes, only how an idle thread waits. Set before numpy and torch load; the workers and the commands the tests
# start inherit it; a value already in the environment wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")  # 2^4 cycles of spinning (default 2^28, about 0.1 s)

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from harness.data import xor  # noqa: E402
from harness.init import NOTEBOOK, initial_params  # noqa: E402
from impls.interface import Implementation, Unavailable  # noqa: E402
from impls.registry import create  # noqa: E402
from impls.spec import ModelSpec  # noqa: E402

# CI sets this so that a framework missing from the environment fails the run instead of skipping.
REQUIRE_ALL = os.environ.get("XOR_HARNESS_REQUIRE_ALL") == "1"


def distributed_or_skip():
    """dask.distributed, or the calling test module skipped with the reason (an error under REQUIRE_ALL)."""
    try:
        import dask.distributed
    except ImportError as exc:  # the dask extra is optional; CI installs it
        if REQUIRE_ALL:
            raise
        pytest.skip(f"dask.distributed is not installed ({exc})", allow_module_level=True)
    return dask.distributed


def pytest_configure(config):
    """Under -n 2: JAX's persistent compilation cache in this run's temporary folder (pytest rotates it away), so a
    worker that compiles what an earlier test's worker compiled (the same program, shapes and options: the
    notebook's net in each dtype, say) reads the executable instead of compiling it again. No result changes:
    the cache hands back what the compiler would. Set before JAX loads (the test modules import it at
    collection); the workers and the commands the tests start inherit it; a value already set wins."""
    run = getattr(config, "workerinput", None) and config.option.basetemp  # <this run's folder>/popen-gwN
    if run:
        os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", str(Path(run).parent / "jax-cache"))
        os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")  # default: only compiles over 1 s


# How `-n 2` (pytest-xdist) shares the suite out, unless --dist is given: a test at a time to whichever worker is
# free (no queue of tests behind a long one while the other worker idles), but each module whose module-scoped
# fixture costs seconds (a compile, a cluster, a shared run) whole to one worker, so that fixture is built once;
# and the slow modules first, these among them, so that the short tests fill the end. (xdist's own
# `--dist loadgroup` would do the first part by marks, but under pytest 9.2 it does not: xdist 3.8 tags each test's
# node id through `item._nodeid`, which pytest 9.2 no longer reads, so every test was its own group.)
SHARED_FIXTURES = ("test_dask_cluster.py", "test_executors.py", "test_torch_loop.py", "test_compare.py")


def pytest_xdist_make_scheduler(config, log):
    given = [*config.invocation_params.args, *os.environ.get("PYTEST_ADDOPTS", "").split()]
    if config.getvalue("dist") != "load" or config.option.distload or any(a.startswith("--dist") for a in given):
        return None  # xdist's own
    from xdist.scheduler import LoadScopeScheduling

    class ByTestOrModule(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            module = nodeid.split("::", 1)[0]
            return module if module.rsplit("/", 1)[-1] in SHARED_FIXTURES else nodeid

    return ByTestOrModule(config, log)


def pytest_collection_modifyitems(config, items):
    def first(item) -> int:
        return 0 if item.path.name in SHARED_FIXTURES else 1 if item.get_closest_marker("slow") else 2

    items.sort(key=first)  # stable: the order within each rank is the files'


def pytest_collection_finish(session):
    """What collection loaded (torch, JAX, keras, dask: some 360,000 objects) frozen out of the garbage collector's
    reach: each full collection of a test process went over all of it again (0.2 s each; 4 % less CPU frozen)."""
    gc.freeze()


EXACT = ["numpy", "torch", "jax"]  # implementations with exact (non finite-difference) gradients


def make(name: str, spec: ModelSpec) -> Implementation:
    """The implementation, or a skip naming why it is unavailable (a failure under CI)."""
    try:
        return create(name, spec)
    except Unavailable as exc:
        if REQUIRE_ALL and "not installed" in str(exc):
            pytest.fail(str(exc))
        pytest.skip(str(exc))


# For the native implementations' tests: a deeper net with every kind of layer, and a step schedule with a
# factor that is not a power of two plus coupled weight decay (adamw: decoupled).
DEEP = dict(layers=(2, 5, 3, 1), activations=("relu", "tanh", "sigmoid"))
SCHEDULED = dict(schedule="step", decay_every=50, decay_factor=0.7, weight_decay=0.05)


def random_params(spec: ModelSpec, seed: int = 3) -> dict[str, np.ndarray]:
    """Seeded standard-normal parameters of the spec's shapes."""
    rng = np.random.default_rng(seed)
    return {k: rng.standard_normal(s) for k, s in spec.param_shapes().items()}


@pytest.fixture(scope="session", autouse=True)
def fork_server_with_torch_and_jax():
    """The workers' fork server started first, with torch and JAX imported, as a run that compares them starts it.

    The test modules import torch and JAX into this process, so each run's oracle workers start through the fork
    server (no plain fork of a process with a framework loaded) before the run has said which frameworks it
    needs: left to the first run, the fork server would import neither, and every torch or JAX worker of the
    session would import its framework afresh (about 1.5 s of CPU each; 50 s of CPU over the suite)."""
    from harness.running import workers

    workers.preload(["torch", "jax"])
    workers.Worker("warm-up", dict).close()


@pytest.fixture(autouse=True)
def in_process_where_asked(request):
    """A test marked ``@pytest.mark.in_process("why")`` runs every implementation and the oracle in this process,
    where its monkeypatches of harness or implementation code are seen (a worker imports that code afresh and
    would not see them); every other test runs each in its own worker, as users do. The reason is required."""
    marker = request.node.get_closest_marker("in_process")
    if marker is None:
        return
    if not (marker.args or marker.kwargs.get("reason")):
        pytest.fail("@pytest.mark.in_process needs its reason: why this test cannot run in workers", pytrace=False)
    from harness.running import remote

    request.getfixturevalue("monkeypatch").setattr(remote, "ENABLED", False)


def wait_until(ready: Callable[[], object], seconds: float, what: str):
    """``ready()``'s first true value, polled until ``seconds`` have passed (then the test fails naming ``what``):
    how a test waits for a child process to reach a point, instead of sleeping for a time it hopes is enough."""
    deadline = time.monotonic() + seconds
    while not (found := ready()):
        if time.monotonic() > deadline:
            pytest.fail(f"waited {seconds:g} s for {what}", pytrace=False)
        time.sleep(0.02)
    return found


class Lines:
    """The lines a child process writes to a pipe, read on a thread of their own, so that a test can wait for
    one with a deadline (a line the child writes when it reaches a point is a readiness signal)."""

    def __init__(self, stream: IO[str]) -> None:
        self.seen: list[str] = []
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._reader.start()

    def _read(self, stream: IO[str]) -> None:
        for line in stream:
            self._lines.put(line)
        self._lines.put(None)  # the end of the stream

    def wait_for(self, prefix: str, seconds: float, what: str) -> str:
        """The next line that starts with ``prefix`` ("" for any line); the test fails if none comes in time."""
        deadline = time.monotonic() + seconds
        while True:
            try:
                line = self._lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                pytest.fail(f"waited {seconds:g} s for {what}; the child wrote {''.join(self.seen)!r}", pytrace=False)
            if line is None:
                pytest.fail(f"the child's output ended before {what}: {''.join(self.seen)!r}", pytrace=False)
            self.seen.append(line)
            if line.startswith(prefix):
                return line

    def rest(self, seconds: float) -> str:
        """Everything the child wrote, once it has closed its end of the pipe (waited for up to ``seconds``)."""
        self._reader.join(seconds)
        while True:
            try:
                line = self._lines.get_nowait()
            except queue.Empty:
                return "".join(self.seen)
            if line is not None:
                self.seen.append(line)


def kill_group(proc: subprocess.Popen) -> None:
    """Every process left in the process group of ``proc`` (started with ``start_new_session=True``) killed, so a
    test that failed midway leaves no run behind."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:  # the run and everything it started have ended
        pass
    proc.wait()


def descendants(pid: int) -> list[int]:
    """The processes ``pid`` started, and theirs (``ps``)."""
    found = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True).stdout.split()
    return [int(p) for p in found] + [d for p in found for d in descendants(int(p))]


@pytest.fixture
def data() -> tuple[np.ndarray, np.ndarray]:
    return xor()


@pytest.fixture
def notebook_params() -> dict[str, np.ndarray]:
    return initial_params(ModelSpec(), NOTEBOOK)
