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

