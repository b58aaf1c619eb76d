"""The rounding envelope's parameter part, read in blocks, against its definition: param_errors pair by pair."""
from __future__ import annotations

from itertools import combinations

import numpy as np
import pytest

from harness.truth import references
from harness.truth.oracle import EXTENDED
from harness.truth.references import Reference, envelope, param_errors

SHAPES = {"W0": (3, 5), "b0": (5,), "W1": (5, 1), "b1": (1,)}
STEPS = range(0, 60, 5)


def by_definition(truth: Reference, plain: list[Reference]) -> dict[int, float]:
    """Per step: the running max over the steps so far of every finite param_errors of every pair."""
    pairs = [(run, truth) for run in plain] + list(combinations(plain, 2))
    params, running = {}, 0.0
    for step in sorted(truth.checkpoints):
        found = [e for a, b in pairs for e in param_errors(a.state(step), b.state(step), truth.state(step)).values()]
        running = max([running, *(e for e in found if np.isfinite(e))])
        params[step] = running
    return params


def run(rng, name: str, dtype, spoil: float) -> Reference:
    """Checkpoints of random parameters over six orders of magnitude; with probability ``spoil`` a step has one
    parameter holding NaN, an infinity, or a value past float64's range."""
    checkpoints = {}
    for step in STEPS:
        state = {k: (rng.standard_normal(s) * 10.0 ** rng.integers(-3, 3)).astype(dtype) for k, s in SHAPES.items()}
        if rng.random() < spoil:
            k = list(SHAPES)[rng.integers(len(SHAPES))]
            state[k].flat[0] = rng.choice([np.nan, np.inf, -np.inf, np.finfo(dtype).max])
        checkpoints[step] = state
    return Reference(name, np.dtype(dtype).name, np.zeros(len(STEPS)), checkpoints, 0.0)


PARAMETERS = sum(int(np.prod(s)) for s in SHAPES.values())


@pytest.mark.parametrize("block", [1, 3 * PARAMETERS + 1, references.ENVELOPE_BLOCK])  # 1, 3 and every step
@pytest.mark.parametrize("seed", range(6))
def test_the_envelope_read_in_blocks_is_its_definition(monkeypatch, seed, block):
    monkeypatch.setattr(references, "ENVELOPE_BLOCK", block)
    rng = np.random.default_rng(seed)
    truth = run(rng, "truth", EXTENDED, 0.05)
    plain = [run(rng, f"plain {i}", dtype, 0.1) for i, dtype in enumerate([np.float64, np.float32, np.float64])]
    with np.errstate(all="ignore"):
        assert envelope(truth, plain).params == by_definition(truth, plain)
