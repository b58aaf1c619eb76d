"""Plugins that hang or crash inside C during their trajectory, for the tests that run on a real Dask cluster."""
from __future__ import annotations

import ctypes

from impls.np_backprop import NumpyBackprop

VALIDATION_STEPS = 2  # harness.running.plugins validates train() on 2 steps: these pass it and fail the run


class HangsInTrain(NumpyBackprop):
    """train() sleeps inside C (libc's sleep) for an hour, where no Python signal handler can run."""

    name = "hangs"

    def train(self, params, x, y, steps, record=()):
        if steps > VALIDATION_STEPS:
            ctypes.CDLL(None).sleep(3600)
        return super().train(params, x, y, steps, record)


class SegfaultsInTrain(NumpyBackprop):
    """train() reads through a null pointer: SIGSEGV."""

    name = "segfaults"

    def train(self, params, x, y, steps, record=()):
        if steps > VALIDATION_STEPS:
            ctypes.string_at(0)
        return super().train(params, x, y, steps, record)


def sleep_in_a_worker(seconds: int) -> None:
    """A task whose implementation's worker sleeps inside C: for the test that kills the task's parent."""
    from harness.running.workers import Worker
    from impls.spec import ModelSpec

    Worker("hangs float64", HangsInTrain, (ModelSpec(),)).call(_sleep, (seconds,), "train()")


def _sleep(hosted: object, seconds: int) -> None:
    ctypes.CDLL(None).sleep(seconds)
