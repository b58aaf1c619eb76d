"""The scheduler: at most one task per core, and this process's own work only on a core no task uses."""
from __future__ import annotations

import time

from harness.running import runs, workers


class Idle:
    """A worker's hosted object that does nothing (the task's function does the waiting)."""


def nap(hosted: Idle, seconds: float) -> float:
    time.sleep(seconds)
    return seconds


def test_this_process_works_only_once_every_task_started_and_a_core_is_free():
    if runs.slots() < 2:
        return  # one core: no task ever runs beside this process's work, which the last line checks
    hosts = [workers.Worker(f"nap {i}", Idle) for i in range(3)]
    try:
        tasks = [(i, hosts[i], nap, "nap()", 0, 0.0, (seconds,)) for i, seconds in enumerate((2.0, 0.2, 0.2))]
        seen: list[set] = []

        def idle(done: dict) -> bool:
            seen.append(set(done))
            return len(seen) < 3  # three pieces of work, then nothing (asked again only when more tasks have ended)

        done = runs.schedule(tasks, (), idle)
    finally:
        for host in hosts:
            host.close()
    assert done == {0: 2.0, 1: 0.2, 2: 0.2}
    # tasks 0 and 1 start together; 2 starts when 1 ends; only once 2 has ended too is a core free for this
    # process, while task 0 still runs: its three pieces of work come then
    assert seen == [{1, 2}] * 3 + [{0, 1, 2}]  # and once more when the last task has ended
