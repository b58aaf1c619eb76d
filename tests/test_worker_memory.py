"""A worker gives back to the system what its calls freed, unless it keeps its heap on purpose (the oracle's)."""
import numpy as np
import pytest

from harness.running import workers


class Host:
    """Holds what a call leaves behind."""


def fragment(hosted: Host) -> None:
    """Allocate 1.2 GB in 4 MB blocks, each followed by a 200 KB one that stays: the large ones are freed, but
    the small ones between them keep malloc from returning the heap's top (the torch worker's pattern)."""
    kept, big = [], []
    for _ in range(3):
        for _ in range(100):
            big.append(np.ones(512 * 1024))
            kept.append(np.ones(25 * 1024))
        big.clear()
    hosted.kept = kept


def keep_heap(hosted: Host) -> None:
    workers.HEAP_KEPT[0] = True


def resident(worker: workers.Worker) -> int:
    with open(f"/proc/{workers.pid_of(worker)}/status") as status:
        return next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmRSS"))


@pytest.mark.skipif(not hasattr(workers.libc(), "malloc_trim"), reason="malloc_trim is glibc's")
def test_a_worker_gives_back_what_its_call_freed_and_an_oracle_worker_keeps_it():
    trimmed, kept = workers.Worker("trimmed", Host), workers.Worker("kept", Host)
    try:
        kept.call(keep_heap, (), "keep_heap()")
        start = {worker: resident(worker) for worker in (trimmed, kept)}
        for worker in (trimmed, kept):
            worker.call(fragment, (), "fragment()")
        grown = {worker: resident(worker) - start[worker] for worker in (trimmed, kept)}
        assert grown[trimmed] < 150e6 < 300e6 < grown[kept]  # 60 MB are left live in each
    finally:
        trimmed.close()
        kept.close()
