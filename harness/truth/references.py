"""The reference runs every trajectory is judged against, all trained by the oracle's own code.

- **The truth**: the oracle's loop in longdouble from the shared initial weights.
- **Plain runs in each dtype**: the same loop in float64 (or float32) with the
  textbook formulas (slopes from the outputs, 1 - tanh^2), three times: from the
  same weights; from weights moved up by one ulp of the dtype; and with every
  activation output moved one ulp toward zero, as a kernel one ulp off rounds
  (torch's and XLA's are, and where tanh saturates that alone moves a float32
  run by a factor of 8 within five steps at ``--lr 10``). All three are runs a
  correct implementation could produce. A finite-difference run (``numpy-fd``)
  that leaves that envelope is judged again within one that also holds a run
  taking the loss derivative and the tanh and sigmoid slopes by the notebook's
  central difference (``harness.running.training.Trained.fd_envelope``). For
  Adam's family, where ``1 - beta`` rounds differently from the exact betas
  than from the betas rounded to the dtype (float32: 1 - 0.999 is 1.3e-5
  apart), one more runs with the complements taken from the exact betas, as
  optax and torch take them.

How far those plain runs stand from the truth, and from each other, is the
**rounding envelope** of the dtype at each step (``envelope``): what
accumulated rounding can explain there, measured on this very run rather than
assumed. A run of an implementation may pass beyond the fixed floors only
within ``ROUNDING_FACTOR`` times it (``harness.truth.tolerances``).
"""
from __future__ import annotations

import time
import zlib
from dataclasses import dataclass
from itertools import combinations
from typing import Mapping

import numpy as np

from harness.truth.optimizers import DECAY_FORMS
from harness.truth.oracle import EXTENDED, Effects, Oracle
from harness.truth.tolerances import MC_TRAJECTORIES
from impls.spec import ORACLE_DTYPE, ModelSpec

TRUTH = "oracle"  # the longdouble run
PLAIN, WEIGHTS_TWIN, KERNEL_TWIN = "reference", "reference, weights +1 ulp", "reference, kernels 1 ulp off"
TWINS = (WEIGHTS_TWIN, KERNEL_TWIN)
SAMPLED = "reference, monte carlo"  # runs in Monte Carlo arithmetic, trained only for a run that parts (training.py)
FD_TWIN = "reference, slopes by the notebook's difference"  # trained only for a finite-difference run that parts
DECAY_TWINS = tuple(f"reference, decay as {form}" for form in DECAY_FORMS[1:])  # AdamW's other rounding forms
COMPLEMENTS_TWIN = "reference, 1 - beta from the exact betas"  # Adam's family in float32: optax, torch round so


@dataclass
class Reference:
    """One of the oracle's runs: per-step losses, checkpoints, the dtype it ran in."""

    name: str
    dtype: str
    losses: np.ndarray
    checkpoints: dict[int, dict[str, np.ndarray]]
    cpu_s: float  # the CPU seconds of the job that trained it: its work, whatever ran beside it
    effects: Effects | None = None  # a plain run in a reduced dtype: what the dtype did to it
    terms: np.ndarray | None = None  # the truth's, for bce: each step's mean of the loss's two terms' magnitudes

    @property
    def loss_scale(self) -> np.ndarray:
        """Per step, what a reported loss's rounding is judged against (``Oracle.loss_scale``): the loss itself,
        or for bce the magnitudes of its two terms, which cancel where the logits saturate the right way: any
        formula of the element (the spec's z + log1p(e^-z) - y z, torch's (1 - y) z - log_sigmoid(z)) rounds to
        a few ulps of those terms, and formulas cancel on different samples, so the truth's own plain runs,
        which share one formula, do not show it."""
        return self.losses if self.terms is None else self.terms

    @property
    def nonfinite_at(self) -> int | None:
        """The first step whose loss is NaN or infinite, or None."""
        return first_nonfinite(self.losses)

    def state(self, step: int) -> dict[str, np.ndarray]:
        return self.checkpoints[step]


def first_nonfinite(losses: np.ndarray) -> int | None:
    """The first step whose loss is NaN or infinite (a run that blew up), or None."""
    bad = np.flatnonzero(~np.isfinite(losses))
    return int(bad[0]) if bad.size else None


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
    dtype: str  # "longdouble" for the truth, else a run dtype (the plain run and its twins, trained as one stack)
    conventions: tuple[tuple[str, str], ...] = ()  # a framework's stated conventions the runs follow (sorted items)

    @property
    def names(self) -> list[str]:
        return [TRUTH] if self.dtype == ORACLE_DTYPE else [PLAIN, *TWINS,
                                                           *([COMPLEMENTS_TWIN] if self.complements_differ else []),
                                                           *(DECAY_TWINS if self.decay_decoupled else ())]

    def __call__(self, params, x, y, steps: int, record) -> list[Reference]:
        start = time.process_time()
        oracle = Oracle(self.spec)
        stated = dict(self.conventions) or None
        if self.dtype == ORACLE_DTYPE:
            trained = oracle.train([params], x, y, steps, record, EXTENDED)
        else:
            starts = [params, one_ulp_up(params, self.spec.param_dtype), params]  # mixed: an ulp of float32
            trained = oracle.train(starts, x, y, steps, record, np.dtype(self.dtype).type, textbook=True,
                                   kernel_ulp=[False, False, True], conventions=stated)
            effects = oracle.effects[0] if oracle.effects else None
            if self.complements_differ:  # a framework may take 1 - beta2 from the double and round it once
                trained += oracle.train([params], x, y, steps, record, np.dtype(self.dtype).type, textbook=True,
                                        complements_exact=True, conventions=stated)
            for form in DECAY_FORMS[1:] if self.decay_decoupled else ():  # torch's, optax's, keras's AdamW decay
                trained += oracle.train([params], x, y, steps, record, np.dtype(self.dtype).type, textbook=True,
                                        decay_form=form, conventions=stated)
        cpu = time.process_time() - start
        found = [Reference(name, self.dtype, losses, checkpoints, cpu)
                 for name, (losses, _, checkpoints) in zip(self.names, trained)]
        if self.dtype == ORACLE_DTYPE:
            found[0].terms = oracle.loss_terms[0]
        if self.dtype != ORACLE_DTYPE and np.dtype(self.dtype).itemsize < 4:
            found[0].effects = effects
        return found

    @property
    def decay_decoupled(self) -> bool:
        """Whether the runs apply AdamW's decoupled decay, whose rounding forms differ by framework (twins)."""
        return self.dtype != ORACLE_DTYPE and self.spec.optimizer == "adamw" and self.spec.weight_decay > 0

    @property
    def complements_differ(self) -> bool:
        """Whether 1 - beta rounds differently from the exact betas than from the betas rounded to the dtype."""
        if self.dtype == ORACLE_DTYPE or self.spec.optimizer not in ("adam", "amsgrad", "adamw"):
            return False
        d = np.dtype(self.spec.param_dtype).type
        return any(d(1) - d(b) != d(1 - b) for b in (self.spec.beta1, self.spec.beta2))


def seed_of(spec: ModelSpec, index: int) -> int:
    """A Monte Carlo seed from the run's spec and an index (a step, a run), so a rerun is byte-identical."""
    return zlib.crc32(repr((spec, index)).encode())


def sampled_runs(spec: ModelSpec, params, x, y, steps: int, record, ulps: float, by_difference: bool,
                 conventions: Mapping[str, str] | None = None) -> list[Reference]:
    """``MC_TRAJECTORIES`` runs of the oracle's loop in ``spec.dtype`` in Monte Carlo arithmetic (every tanh and
    sigmoid output up to ``ulps`` off each step, products by half an ulp of their terms; slopes by the notebook's
    differences where ``by_difference``), under ``conventions`` if given, trained as one stack."""
    seeds = [(seed_of(spec, j), ulps) for j in range(MC_TRAJECTORIES)]
    found = Oracle(spec).train([params] * MC_TRAJECTORIES, x, y, steps, record, np.dtype(spec.dtype).type,
                               textbook=True, fd_slopes=[by_difference] * MC_TRAJECTORIES,
                               conventions=conventions, noise=seeds)
    return [Reference(f"{SAMPLED} {j}", spec.dtype, losses, kept, 0.0) for j, (losses, _, kept) in enumerate(found)]


def loss_error(losses: np.ndarray, target: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """|losses - target| / |truth| on every step, in float64 (inf where ``losses`` is not finite)."""
    with np.errstate(all="ignore"):
        err = np.abs(np.asarray(losses, EXTENDED) - np.asarray(target, EXTENDED)) / np.abs(np.asarray(truth, EXTENDED))
    return np.where(np.isfinite(losses), err.astype(np.float64), np.inf)


def param_errors(state: Mapping[str, np.ndarray], target: Mapping[str, np.ndarray],
                 scale_from: Mapping[str, np.ndarray] | None = None) -> dict[str, float]:
    """Per parameter: max |state - target| over the largest parameter in ``scale_from`` (default: ``target``).

    Relative to the whole network's largest parameter, so a bias crossing 0 stays comparable.
    """
    scale = max(np.max(np.abs(np.asarray(v, EXTENDED))) for v in (scale_from or target).values())
    errors = {}
    for name, goal in target.items():
        value = np.asarray(state[name], EXTENDED)
        errors[name] = float(np.max(np.abs(value - np.asarray(goal, EXTENDED))) / scale) \
            if np.all(np.isfinite(value)) else float("inf")
    return errors


@dataclass(frozen=True)
class Envelope:
    """What rounding in one dtype explains: running maxima over the run so far."""

    loss: np.ndarray  # per step
    params: dict[int, float]  # per checkpoint step (every parameter alike)


def wider(a: Envelope, b: Envelope) -> Envelope:
    """Step by step, the larger of two envelopes over the same run."""
    return Envelope(np.fmax(a.loss, b.loss), {k: max(v, b.params.get(k, 0.0)) for k, v in a.params.items()})


def envelope(truth: Reference, plain: list[Reference]) -> Envelope:
    """The largest distance of the plain runs from the truth and from each other, as a running max."""
    pairs = [(run, truth) for run in plain] + list(combinations(plain, 2))
    loss = np.zeros(len(truth.losses))
    for a, b in pairs:
        loss = np.fmax(loss, np.where(np.isfinite(a.losses), loss_error(a.losses, b.losses, truth.loss_scale),
                                      0.0))
    loss = np.fmax.accumulate(np.where(np.isfinite(loss), loss, 0.0))
    return Envelope(loss, _params_envelope(truth, plain))


ENVELOPE_BLOCK = 1 << 20  # entries of one run's checkpoints taken at once: 16 MiB in longdouble


def _params_envelope(truth: Reference, plain: list[Reference]) -> dict[int, float]:
    """``param_errors`` over the same pairs as ``envelope``, maximised over parameters and pairs and then over
    the steps so far: the same numbers, but with each run's checkpoints read as one array per block of steps
    (one conversion a run, one reduction a pair) instead of one small array per parameter, pair and step."""
    steps = sorted(truth.checkpoints)
    if not steps:
        return {}
    names = list(truth.state(steps[0]))
    starts = np.cumsum([0, *(np.size(truth.state(steps[0])[n]) for n in names)])
    runs = [truth, *plain]
    pairs = [(i, 0) for i in range(1, len(runs))] + list(combinations(range(1, len(runs)), 2))
    rows = max(1, ENVELOPE_BLOCK // int(starts[-1]))
    params, running = {}, 0.0
    for first in range(0, len(steps), rows):
        block = steps[first:first + rows]
        flat = [np.stack([np.concatenate([np.ravel(np.asarray(run.state(step)[n], EXTENDED)) for n in names])
                          for step in block]) for run in runs]
        # as param_errors: the network's largest parameter, by Python's max over the parameters' largest
        scale = np.maximum.reduceat(np.abs(flat[0]), starts[:-1], axis=1)
        scales = np.array([max(row) for row in scale], dtype=EXTENDED)[:, None]
        found = np.full(len(block), -np.inf)
        for a, b in pairs:  # a parameter with a non-finite entry in either run gives NaN or inf: left out
            with np.errstate(over="ignore"):  # as float() of each: past float64's range is inf, left out
                errors = (np.maximum.reduceat(np.abs(flat[a] - flat[b]), starts[:-1], axis=1) / scales).astype(float)
            found = np.fmax(found, np.max(np.where(np.isfinite(errors), errors, -np.inf), axis=1))
        for step, value in zip(block, found):
            running = max(running, float(value))
            params[step] = running
    return params
