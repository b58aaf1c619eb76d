"""Plugins that take their process down (negative controls for isolation): each must become one fault line."""
from __future__ import annotations

import ctypes
import os
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
