"""The scheduler: at most one task per core, and this process's own work only on a core no task uses."""
from __future__ import annotations

import time

import pytest

from harness.running import runs, workers


class Idle:
    """A worker's hosted object that does nothing (the task's function does the waiting)."""


def nap(hosted: Idle, seconds: float) -> tuple[float, float]:
    start = time.monotonic()
    time.sleep(seconds)
    return start, time.monotonic()


def test_this_process_works_only_on_a_free_core_and_before_the_next_task():
    if runs.slots() < 2:
        pytest.skip("one core: no task ever runs beside this process's work, which the overlap check covers")
    hosts = [workers.Worker(f"nap {i}", Idle) for i in range(3)]
    try:
        tasks = [runs.Task(i, hosts[i], nap, "nap()", 0, 0.0, (seconds,))
                 for i, seconds in enumerate((1.5, 0.2, 0.3))]
        pieces: list[tuple[set, float, float]] = []
        tails: list[bool] = []

        def idle(done: dict, tail: bool) -> bool:
            tails.append(tail)
            if not done or len(pieces) >= 3:
                return False  # nothing to do before a task ends; three pieces in all
            start = time.monotonic()
            time.sleep(0.1)
            pieces.append((set(done), start, time.monotonic()))
            return True

        done = runs.schedule(tasks, (), idle)
    finally:
        for host in hosts:
            host.close()
    assert set(done) == {0, 1, 2}
    # tasks 0 and 1 start together; when 1 ends, its core goes to this process's work first (all three pieces,
    # since idle asks again after each), and task 2 starts only after them, while task 0 still runs
    assert [seen for seen, _, _ in pieces] == [{1}] * 3
    assert tails[:4] == [False] * 4 and tails[-1]  # told when the queue is empty (every task has started)
    assert done[2][0] >= pieces[-1][2]
    for _, start, end in pieces:  # never beside two tasks
        assert sum(s < end and start < e for s, e in done.values()) <= runs.slots() - 1
    assert pieces[-1][2] < done[0][1]  # done while the longest task still ran: overlapped, not after it


START_METHODS = """
import sys
from harness.running.workers import Worker
def method(worker):
    return type(worker._process._popen).__module__.rsplit("_", 1)[-1]  # popen_fork -> fork
oracle, other = Worker("oracle", dict, numpy_only=True), Worker("impl", dict)
before = [method(oracle), method(other)]
import torch  # a framework's threads would not survive a plain fork
after = method(Worker("oracle", dict, numpy_only=True))
print(*before, after)
"""


def test_the_oracle_worker_is_a_plain_fork_only_while_no_framework_is_loaded():
    """It then starts at once, while the fork server imports torch and JAX; never a fork of a process with torch."""
    import subprocess
    import sys
    from pathlib import Path

    found = subprocess.run([sys.executable, "-c", START_METHODS], capture_output=True, text=True, timeout=120,
                           cwd=Path(__file__).resolve().parent.parent)
    assert found.returncode == 0, found.stderr
    assert found.stdout.split() == ["fork", "forkserver", "forkserver"]


def test_a_worker_done_with_is_closed_as_soon_as_its_value_is_in_and_the_others_stay():
    """The oracle's job workers hold their runs until sent; the 2,000-step 10-1024-1024-1 run's float64 one then
    kept 3 GB for ten more minutes, idle, until the last trajectory ended."""
    hosts = [workers.Worker(f"nap {i}", Idle) for i in range(2)]
    try:
        done = runs.schedule([runs.Task(i, hosts[i], nap, "nap()", 0, 0.0, (0.05,)) for i in range(2)], (),
                             done_with=frozenset({1}))
        assert set(done) == {0, 1}
        assert hosts[1].dead == "its worker was stopped" and hosts[0].dead is None
    finally:
        for host in hosts:
            host.close()


class Borrower:
    """A hosted object that takes a lent core, as the oracle's workers do (it records when it got it)."""

    def __init__(self) -> None:
        self.lent_at: float | None = None
        workers.on_lent_core(lambda: setattr(self, "lent_at", time.monotonic()))


def wait_for_a_core(hosted: Borrower, seconds: float) -> float | None:
    """Until a core is lent (or ``seconds`` pass): when it was, else None."""
    end = time.monotonic() + seconds
    while hosted.lent_at is None and time.monotonic() < end:
        time.sleep(0.01)
    return hosted.lent_at


def test_a_task_is_lent_the_free_core_once_nothing_else_is_left_to_run_and_only_it():
    if runs.slots() < 2:
        pytest.skip("one core: none is ever free beside a task")
    hosts = [workers.Worker("borrower", Borrower), workers.Worker("nap", Idle), workers.Worker("other", Borrower)]
    try:
        tasks = [runs.Task(0, hosts[0], wait_for_a_core, "wait()", 0, 0.0, (10.0,)),
                 runs.Task(1, hosts[1], nap, "nap()", 0, 0.0, (0.5,)),
                 runs.Task(2, hosts[2], wait_for_a_core, "wait()", 0, 0.0, (0.3,))]
        done = runs.schedule(tasks, (), lend_to=frozenset({0}))
    finally:
        for host in hosts:
            host.close()
    # the nap holds the other core first, then the second borrower (never lent: not in lend_to); task 0 gets
    # the core only once both have ended
    assert done[2] is None
    assert done[0] is not None and done[0] >= done[1][1]


def test_a_lent_core_leaves_the_truths_bits_as_they_were():
    import numpy as np
    from harness.data import load
    from harness.init import initial_params
    from harness.truth import products
    from harness.truth.oracle import Oracle
    from impls.spec import ModelSpec

    rng = np.random.default_rng(3)
    a = rng.standard_normal((300, 257)).astype(np.longdouble) / 3
    b = rng.standard_normal((257, 200)).astype(np.longdouble) / 7
    spec = ModelSpec(layers=(8, 64, 64, 1), activations=("tanh", "tanh", "sigmoid"))
    x, y = load("parity:8")
    params = initial_params(spec)

    def truth():
        losses, final, _ = Oracle(spec).train([params], x, y, 3, [3])[0]
        return products.matmul(a, b), np.concatenate([losses, *(v.ravel() for v in final.values())])
    alone = truth()
    try:
        products.lend(2)
        lent = truth()
    finally:
        products.lend(1)
    assert products.worth_splitting(300, 257, 200) and x.shape[0] * 64 >= products.LENT_MIN_ELEMENTS
    assert np.array_equal(alone[0], lent[0]) and np.array_equal(alone[1], lent[1])
