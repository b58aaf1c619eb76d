"""The reference runs every trajectory is judged against, all trained by the oracle's own code.

- **The truth**: the oracle's loop in longdouble from the shared initial weights.
- **Plain runs in each dtype**: the same loop in float64 (or float32), from the
  same weights and from weights moved by one ulp of that dtype. Both are runs a
  correct implementation could have produced: they round every step as plainly
  as NumPy does, and they start as far apart as one rounding of the weights.

How far those two plain runs stand from the truth, and from each other, is the
**rounding envelope** of the dtype at each step (``envelope``): what
accumulated rounding can explain there, measured on this very run rather than
assumed. A run of an implementation may pass beyond the fixed floors only
within ``ROUNDING_FACTOR`` times it (``harness.truth.tolerances``).
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Mapping

import numpy as np

from harness.truth.oracle import EXTENDED, Oracle
from impls.spec import ORACLE_DTYPE, ModelSpec

TRUTH = "oracle"  # the longdouble run
PLAIN, TWIN = "reference", "reference+1ulp"  # the plain runs in the run's dtype


@dataclass
class Reference:
    """One of the oracle's runs: per-step losses, checkpoints, the dtype it ran in."""

    name: str
    dtype: str
    losses: np.ndarray
    checkpoints: dict[int, dict[str, np.ndarray]]
    wall_s: float

    @property
    def nonfinite_at(self) -> int | None:
        """The first step whose loss is NaN or infinite, or None."""
        bad = np.flatnonzero(~np.isfinite(self.losses))
        return int(bad[0]) if bad.size else None

    def state(self, step: int) -> dict[str, np.ndarray]:
        return self.checkpoints[step]


def one_ulp_up(params: Mapping[str, np.ndarray], dtype: str) -> dict[str, np.ndarray]:
    """``params`` in ``dtype`` with every nonzero entry moved up by one ulp of ``dtype`` (zeros stay exact)."""
    moved = {}
    for name, value in params.items():
        value = np.asarray(value, dtype)
        moved[name] = np.where(value != 0, np.nextafter(value, np.asarray(np.inf, dtype)), value)
    return moved


@dataclass(frozen=True)
class ReferenceJob:
    """The oracle's runs in one dtype (picklable, so it can train in a worker process)."""

    spec: ModelSpec
    dtype: str  # "longdouble" for the truth, else a run dtype (plain run and its twin, trained as one stack)

    @property
    def names(self) -> list[str]:
        return [TRUTH] if self.dtype == ORACLE_DTYPE else [PLAIN, TWIN]

    def __call__(self, params, x, y, steps: int, record) -> list[Reference]:
        start = time.perf_counter()
        if self.dtype == ORACLE_DTYPE:
            starts, dtype = [params], EXTENDED
        else:
            starts, dtype = [params, one_ulp_up(params, self.dtype)], np.dtype(self.dtype).type
        trained = Oracle(self.spec).train(starts, x, y, steps, record, dtype)
        wall = time.perf_counter() - start
        return [Reference(name, self.dtype, losses, checkpoints, wall)
                for name, (losses, _, checkpoints) in zip(self.names, trained)]


def loss_error(losses: np.ndarray, truth: Reference) -> np.ndarray:
    """|loss - truth| / |truth| on every step, in float64 (inf where the loss is not finite)."""
    ref = truth.losses.astype(EXTENDED)
    with np.errstate(all="ignore"):
        err = (np.abs(np.asarray(losses, EXTENDED) - ref) / np.abs(ref)).astype(np.float64)
    return np.where(np.isfinite(losses), err, np.inf)


def param_error(state: Mapping[str, np.ndarray], target: Mapping[str, np.ndarray], name: str,
                scale_from: Mapping[str, np.ndarray] | None = None) -> float:
    """max |state - target| of one parameter over the largest parameter in ``scale_from`` (default: ``target``).

    Relative to the whole network's largest parameter, so a bias crossing 0 stays comparable.
    """
    value = np.asarray(state[name], EXTENDED)
    if not np.all(np.isfinite(value)):
        return float("inf")
    scale = max(np.max(np.abs(np.asarray(v, EXTENDED))) for v in (scale_from or target).values())
    return float(np.max(np.abs(value - np.asarray(target[name], EXTENDED))) / scale)


@dataclass(frozen=True)
class Envelope:
    """What rounding in one dtype explains: running maxima over the run so far."""

    loss: np.ndarray  # per step
    params: dict[int, float]  # per checkpoint step (every parameter alike)


def envelope(truth: Reference, plain: Reference, twin: Reference) -> Envelope:
    """The larger distance of the two plain runs from the truth and from each other, as a running max."""
    twin_vs_plain = np.abs(twin.losses.astype(np.float64) - plain.losses) / np.abs(truth.losses.astype(np.float64))
    loss = np.fmax(np.fmax(loss_error(plain.losses, truth), loss_error(twin.losses, truth)), twin_vs_plain)
    loss = np.fmax.accumulate(np.where(np.isfinite(loss), loss, 0.0))
    params, running = {}, 0.0
    for step in sorted(truth.checkpoints):
        ref = truth.state(step)
        found = [param_error(run.state(step), ref, k) for run in (plain, twin) for k in ref]
        found += [param_error(twin.state(step), plain.state(step), k, ref) for k in ref]
        finite = [e for e in found if np.isfinite(e)]
        running = max([running, *finite])
        params[step] = running
    return Envelope(loss, params)
