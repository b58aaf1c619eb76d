"""Honest timings: first call apart, then median and IQR over repeats of the steady state.

Implementations return NumPy arrays, so every timed call has already waited
for asynchronous work (JAX dispatch) to finish: the conversion blocks.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

NOISY_SPREAD = 0.10  # IQR / median above which a timing is flagged as noisy (asv's rule of thumb)


@dataclass(frozen=True)
class Timing:
    """Seconds per call: median and interquartile range over ``repeats`` batches of ``number`` calls."""

    median_s: float
    iqr_s: float
    repeats: int
    number: int

    @property
    def spread(self) -> float:
        return self.iqr_s / self.median_s if self.median_s > 0 else 0.0

    @property
    def noisy(self) -> bool:
        return self.spread > NOISY_SPREAD


def once(fn: Callable[[], object]) -> Timing:
    """One call, e.g. the first (tracing and compilation included), or a whole trajectory."""
    start = time.perf_counter()
    fn()
    return Timing(time.perf_counter() - start, 0.0, 1, 1)


def steady(fn: Callable[[], object], repeats: int = 7, number: int = 1, per: int = 1) -> Timing:
    """After one warm-up call: ``repeats`` batches of ``number`` calls, per call divided by ``per``."""
    fn()
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(number):
            fn()
        samples.append((time.perf_counter() - start) / (number * per))
    q1, median, q3 = np.percentile(samples, [25, 50, 75])
    return Timing(float(median), float(q3 - q1), repeats, number)
