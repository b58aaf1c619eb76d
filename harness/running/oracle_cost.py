"""Where the oracle's time goes in one run, part by part, with its extended products split or by NumPy's loop.

The parts, as ``harness.compare`` runs them: the truth's trajectory (extended
precision, every step), the reference runs in the run's dtype (float64 BLAS), the
truth at every checkpoint (reverse mode in extended precision, checked by complex
step), and, within that, the complex-step checks alone. Each is timed here, in this
process, one after the other, so the two ways of taking the products can be set
side by side in one run (``python -m harness.bench --only-scaling``).
"""
from __future__ import annotations

import time
from contextlib import nullcontext
from dataclasses import dataclass

import numpy as np

from harness.running.remote import prepare_oracle_process
from harness.running.runs import checkpoint_steps
from harness.truth import products
from harness.truth.oracle import Oracle
from harness.truth.references import ReferenceJob
from impls.spec import ORACLE_DTYPE


@dataclass(frozen=True)
class OracleCost:
    """Wall seconds of each part of the oracle's work on one run."""

    truth_s: float  # the truth's trajectory
    references_s: float  # the reference runs in each dtype (float64 BLAS either way)
    states_s: float  # the truth at every checkpoint, complex step included
    complex_step_s: float  # of which the complex-step checks
    states: int
    final: dict  # the truth's parameters at the end of the run

    @property
    def extended_s(self) -> float:
        """The work in extended precision: the truth's trajectory and the truths at the checkpoints."""
        return self.truth_s + self.states_s


def oracle_cost(config, params, x: np.ndarray, y: np.ndarray, split: bool = True) -> OracleCost:
    """Time the oracle's parts on ``config`` from ``params``; ``split=False`` takes every product by NumPy's loop."""
    record = checkpoint_steps(config.steps, config.check_every)
    prepare_oracle_process()  # as the oracle's workers are: one BLAS thread, large blocks kept by malloc
    with nullcontext() if split else products.loop_only():
        start = time.perf_counter()
        truth = ReferenceJob(config.spec("float64"), ORACLE_DTYPE)(params, x, y, config.steps, record)[0]
        truth_s = time.perf_counter() - start
        start = time.perf_counter()
        for dtype in config.dtype:
            ReferenceJob(config.spec(dtype), dtype)(params, x, y, config.steps, record)
        references_s = time.perf_counter() - start
        oracle = Oracle(config.spec("float64"))
        start = time.perf_counter()
        for step in record:
            state = {name: np.asarray(value, config.dtype[0]) for name, value in truth.state(step).items()}
            oracle.truth(state, x, y)
        states_s = time.perf_counter() - start
    return OracleCost(truth_s, references_s, states_s, oracle.complex_step_s, len(record), truth.state(config.steps))


def split_against_loop(spec, states: list, x: np.ndarray, y: np.ndarray) -> float:
    """The largest gap between the truth's gradients with products split and by NumPy's loop at ``states``,
    relative to each entry's term scale (what the checks divide by): how far the faster truth moved."""
    worst = 0.0
    for state in states:
        split = Oracle(spec).reverse(state, x, y, with_scale=True)
        with products.loop_only():
            loop = Oracle(spec).reverse(state, x, y)
        for name, grad in split[1].items():
            gap = np.abs(grad - loop[1][name]) / np.maximum(split[2][name], np.finfo(np.longdouble).tiny)
            worst = max(worst, float(np.max(gap)))
    return worst
