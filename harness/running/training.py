"""Training: the truth, the reference runs in each dtype, and every implementation's native loop."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from harness.running.roster import Roster
from harness.running.plugins import run_faults
from harness.running.runs import Run, checkpoint_steps, train_all
from harness.truth.references import FD_TWIN, TRUTH, Envelope, Reference, ReferenceJob, envelope
from impls.interface import exact
from impls.spec import ORACLE_DTYPE


@dataclass
class Trained:
    """Every trajectory of one comparison."""

    truth: Reference
    references: dict[str, list[Reference]]  # dtype -> the plain run and its twins
    envelopes: dict[str, Envelope]  # dtype -> the rounding envelope
    runs: list[Run]
    fd_envelopes: dict[str, Envelope] = field(default_factory=dict)  # dtype -> with the difference-quotient twin

    def envelope_for(self, run: Run) -> Envelope:
        """The rounding envelope a run is judged within: finite-difference runs also by the notebook's method."""
        return self.envelopes[run.dtype] if exact(run.impl) else self.fd_envelopes.get(run.dtype,
                                                                                       self.envelopes[run.dtype])


def train_everything(config, roster: Roster, params, x: np.ndarray, y: np.ndarray) -> Trained:
    """Train all; an implementation whose loop raises or hangs becomes a fault in ``roster`` and has no Run."""
    jobs = [ReferenceJob(config.spec("float64"), ORACLE_DTYPE)]
    jobs += [ReferenceJob(config.spec(dtype), dtype, any(not exact(i) for i in roster.impls if i.spec.dtype == dtype))
             for dtype in config.dtype]
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
    every = dict(zip(config.dtype, oracle_runs[1:]))
    references = {dtype: [r for r in found if r.name != FD_TWIN] for dtype, found in every.items()}
    envelopes = {dtype: envelope(truth, plain) for dtype, plain in references.items()}
    fd_envelopes = {dtype: envelope(truth, found) for dtype, found in every.items() if len(found) > len(references[dtype])}
    return Trained(truth, references, envelopes, runs, fd_envelopes)
