"""Free-running training of one implementation, with the checkpoints every check needs."""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from impls.interface import Implementation, Params, TrainResult


@dataclass
class Run:
    """One implementation's whole trajectory in one dtype."""

    impl: Implementation
    result: TrainResult
    wall_s: float  # the whole native loop, first-call compilation included

    @property
    def name(self) -> str:
        return self.impl.name

    @property
    def dtype(self) -> str:
        return self.impl.spec.dtype

    @property
    def nonfinite_at(self) -> int | None:
        """The first step whose loss is NaN or infinite (the run diverged), or None."""
        bad = np.flatnonzero(~np.isfinite(self.result.losses))
        return int(bad[0]) if bad.size else None

    def state(self, step: int) -> dict[str, np.ndarray]:
        return self.result.checkpoints[step]


def checkpoint_steps(steps: int, every: int) -> list[int]:
    """Every ``every`` steps, plus the last forward's state (steps - 1) and the end."""
    return sorted({*range(0, steps + 1, every), steps - 1, steps})


def train(impl: Implementation, params: Params, x: np.ndarray, y: np.ndarray, steps: int, every: int) -> Run:
    """Run the native loop once, timed, keeping the parameters at every checkpoint."""
    start = time.perf_counter()
    result = impl.train(params, x, y, steps, record=checkpoint_steps(steps, every))
    return Run(impl, result, time.perf_counter() - start)
