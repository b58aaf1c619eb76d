"""Training: the truth, the reference runs in each dtype, and every implementation's native loop."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from harness.running.roster import Roster
from harness.running.plugins import run_faults
from harness.running.runs import Run, checkpoint_steps, train_all
from harness.truth.references import TRUTH, Envelope, Reference, ReferenceJob, envelope
from impls.spec import ORACLE_DTYPE


@dataclass
class Trained:
    """Every trajectory of one comparison."""

    truth: Reference
    references: dict[str, list[Reference]]  # dtype -> the plain run and its twins
    envelopes: dict[str, Envelope]  # dtype -> the rounding envelope
    runs: list[Run]


def train_everything(config, roster: Roster, params, x: np.ndarray, y: np.ndarray) -> Trained:
    """Train all; an implementation whose loop raises or hangs becomes a fault in ``roster`` and has no Run."""
    jobs = [ReferenceJob(config.spec("float64"), ORACLE_DTYPE)]
    jobs += [ReferenceJob(config.spec(dtype), dtype) for dtype in config.dtype]
    trained, oracle_runs = train_all(roster.impls, jobs, params, x, y,
                                     config.steps, config.check_every, config.time_limit)
    runs, record = [], checkpoint_steps(config.steps, config.check_every)
    for impl, run in zip(roster.impls, trained):
        found = run_faults(run.result, impl.spec, config.steps, record) if isinstance(run, Run) else [run]
        for fault in found:
            roster.fault(impl.name, impl.spec.dtype, fault)
        if not found:
            runs.append(run)
    truth = oracle_runs[0][0]
    assert truth.name == TRUTH
    references = dict(zip(config.dtype, oracle_runs[1:]))
    envelopes = {dtype: envelope(truth, plain) for dtype, plain in references.items()}
    return Trained(truth, references, envelopes, runs)
