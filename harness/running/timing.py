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


def steady(fn: Callable[[], object], repeats: int = 7, number: int = 1, per: int = 1, fit: bool = False) -> Timing:
    """After one warm-up call: ``repeats`` batches of ``number`` calls, per call divided by ``per``. ``fit``: fewer
    calls a batch where the warm-up call shows that fewer last ``TIMING_REPEAT_S`` (asv's rule; at least one)."""
    start = time.perf_counter()
    fn()
    if fit:
        number = int(np.clip(np.ceil(TIMING_REPEAT_S / max(time.perf_counter() - start, 1e-9)), 1, number))
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(number):
            fn()
        samples.append((time.perf_counter() - start) / (number * per))
    q1, median, q3 = np.percentile(samples, [25, 50, 75])
    return Timing(float(median), float(q3 - q1), repeats, number)


# Aim for a timed repeat this long: asv's default sample time since its 0.3 (airspeed-velocity/asv#698),
# long enough for an accurate reading of perf_counter; the median and IQR over repeats absorb the rest.
TIMING_REPEAT_S = 0.01
TIMING_STEPS = (10, 20_000)  # bounds on native-loop steps per timed repeat
AMORTISED_STEPS, AMORTISED_S = 100, 0.1  # and at least this many steps, up to this long: train()'s own cost per
# call (its arguments in and checkpoints out, a millisecond at most) spread below 1 % of a repeat
TIMING_REPEATS = 5
CALL_REPEATS, CALLS_PER_REPEAT = 7, 20
COLUMNS = ["impl", "dtype", "measure", "median_s", "iqr_s", "repeats", "number", "noisy"]


def repeat_steps(per_step: float) -> int:
    """Native-loop steps in one timed repeat: enough to last ``TIMING_REPEAT_S`` and, up to ``AMORTISED_S``,
    ``AMORTISED_STEPS`` (a step slower than a millisecond takes fewer: a wide network's repeat of 100 steps
    lasted a second, six of them in each run's timings)."""
    return int(np.clip(max(TIMING_REPEAT_S / per_step, min(AMORTISED_STEPS, AMORTISED_S / per_step)), *TIMING_STEPS))


def measure(impl, factory: Callable, wall_s: float, steps_run: int, params, x, y) -> list[dict]:
    """First call on a fresh instance, steady loss-and-grads and train-step times, and the whole run's wall time."""
    fresh = factory(impl.spec)
    steps = repeat_steps(wall_s / steps_run)
    measured = {
        "first_call": once(lambda: fresh.loss_and_grads(params, x, y)),
        "loss_and_grads": steady(lambda: impl.loss_and_grads(params, x, y), CALL_REPEATS, CALLS_PER_REPEAT, fit=True),
        "train_step": steady(lambda: impl.train(params, x, y, steps), TIMING_REPEATS, 1, steps),
        "trajectory": Timing(wall_s, 0.0, 1, 1),
    }
    return [{"impl": impl.name, "dtype": impl.spec.dtype, "measure": m, "median_s": t.median_s, "iqr_s": t.iqr_s,
             "repeats": t.repeats, "number": t.number, "noisy": t.noisy} for m, t in measured.items()]

