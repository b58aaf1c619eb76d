"""Plugins that take their process down, hang or run long (negative controls for isolation and time limits)."""
from __future__ import annotations

import ctypes
import os
import time
from pathlib import Path

from impls.np_backprop import NumpyBackprop


class ExitsInTrain(NumpyBackprop):
    """train() ends the process with os._exit(3), as a C extension's exit() would."""

    name = "exits"

    def train(self, params, x, y, steps, record=()):
        if steps > 2:  # passes validation's two steps, dies in the trajectory
            os._exit(3)
        return super().train(params, x, y, steps, record)


class SegfaultsInLossAndGrads(NumpyBackprop):
    """loss_and_grads() reads through a null pointer: SIGSEGV."""

    name = "crashy"

    def loss_and_grads(self, params, x, y):
        ctypes.string_at(0)
        return super().loss_and_grads(params, x, y)


ASLEEP = "XOR_HARNESS_TEST_ASLEEP"  # a file HangsInC creates as it goes to sleep, where this names one


class HangsInC(NumpyBackprop):
    """forward() sleeps inside C (libc's sleep), where no Python signal handler can run; first it creates the file
    that the environment variable ASLEEP names, if set (a test waits for that file, not for a guessed time)."""

    name = "hangs-in-c"

    def forward(self, params, x):
        if os.environ.get(ASLEEP):
            Path(os.environ[ASLEEP]).touch()
        ctypes.CDLL(None).sleep(3600)
        return super().forward(params, x)


SLOW_TRAIN_S = 3.0  # past a per-call limit of 2 s that a test sets


class SlowTrain(NumpyBackprop):
    """The trajectory's train() takes SLOW_TRAIN_S longer than it should, in Python (long, not hung); the calls
    that time it afterwards, in the same process, do not."""

    name = "slow-train"
    slept = False

    def train(self, params, x, y, steps, record=()):
        if steps > 2 and not SlowTrain.slept:  # passes validation's two steps
            SlowTrain.slept = True
            time.sleep(SLOW_TRAIN_S)
        return super().train(params, x, y, steps, record)
