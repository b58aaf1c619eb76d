"""What rounding can do at one state, measured there: each framework's kernels, and Monte Carlo arithmetic.

A one-step value that exceeds both its floor and what the oracle's plain evaluations allow is judged once more
before it fails, at that very state: the implementation's own activation kernels (its optional ``kernel``
method, run in its worker) are measured against the truth's longdouble ones on the pre-activations the state
visits, and the oracle's plain evaluation in the run's dtype is rerun ``MC_SAMPLES`` times with every
activation output moved at random by up to that many ulps and every product by up to half an ulp of its
absolute terms (Monte Carlo arithmetic, as CADNA and Verrou perturb every operation). Where the state is
ill-conditioned (a saturated tanh feeding a one-unit layer) the samples spread as far as another kernel moves
a correct implementation; elsewhere they stay at the unit roundoff, so nothing widens where nothing needs to.
Every sample is seeded from the spec and the state's step, so a rerun gives the same allowance, and only rows
that would fail pay for it. An implementation without ``kernel`` (a plugin) keeps the fixed floors.
"""
from __future__ import annotations

from typing import Mapping

import numpy as np

from harness.checks.arrays import along, error_row, fd_directions, finite_difference_grads
from harness.running.remote import batched
from harness.truth.oracle import ACTIVATIONS, EXTENDED, NOTEBOOK_FD_STEP, Oracle
from harness.truth.references import seed_of
from harness.truth.tolerances import KERNEL_ULPS, MC_SAMPLES, MONTE_CARLO, VS_REFERENCE
from impls.interface import Implementation, Params, exact

MEASURED = ("tanh", "sigmoid")  # relu and identity are exact in every framework
FLOOR_ULPS = 1.0  # a correctly rounded kernel is half an ulp off, NumPy's about one: never assume less


def kernel_ulps(impl: Implementation, oracle: Oracle, params: Params, x: np.ndarray, dtype: str) -> float | None:
    """The largest error, in ulps of the result, of the implementation's tanh and sigmoid kernels on this
    state's pre-activations (rounded to ``dtype``) against longdouble; None where it has no ``kernel``, or
    where a kernel is more than ``KERNEL_ULPS`` off: that is no rounding to allow for, but a wrong activation,
    and the fixed floors judge it (recall wins)."""
    if not callable(getattr(impl, "kernel", None)):
        return None
    layers = [(i, act) for i, act in enumerate(oracle.spec.activations) if act in MEASURED]
    zs = oracle.preactivations(params, x) if layers else []
    inputs = [np.asarray(zs[i], dtype) for i, _ in layers]
    got = list(batched(impl, [("kernel", (act, z)) for (_, act), z in zip(layers, inputs)]))
    worst = FLOOR_ULPS
    for (_, act), z, value in zip(layers, inputs, got):
        exact = ACTIVATIONS[act](z.astype(EXTENDED))
        spacing = np.spacing(np.abs(exact).astype(dtype)).astype(EXTENDED)
        with np.errstate(all="ignore"):
            ulps = np.abs(np.asarray(value, EXTENDED) - exact) / spacing
        worst = max(worst, float(np.nanmax(ulps, initial=0.0)))
    return worst if worst <= KERNEL_ULPS.times else None


def monte_carlo(oracle: Oracle, params: Params, x: np.ndarray, y: np.ndarray, dtype: str, ulps: float, seed: int,
                truth, exact_grads: bool = True) -> dict[str, float]:
    """Per value (loss, each gradient): the largest error from the truth over ``MC_SAMPLES`` perturbed plain
    evaluations in ``dtype`` (``Oracle.reverse``'s ``noise``); for finite-difference gradients, evaluations
    that take their slopes by the notebook's differences, whose rounding the noise samples too."""
    key = (oracle.spec, dtype, round(ulps, 3), seed, exact_grads,
           *(np.asarray(params[k]).tobytes() for k in sorted(params)))
    if key in _SAMPLED:
        return _SAMPLED[key]
    worst: dict[str, float] = {}
    for sample in range(MC_SAMPLES):
        loss, grads, _ = oracle.reverse(params, x, y, np.dtype(dtype).type, textbook=True,
                                        noise=(seed + sample, ulps),
                                        fd_step=None if exact_grads else NOTEBOOK_FD_STEP)
        for name, value in {"loss": loss, **grads}.items():
            ref = truth.loss if name == "loss" else truth.grads[name]
            worst[name] = max(worst.get(name, 0.0), error_row(value, ref, dtype, truth.scale[name])["rel"])
    if len(_SAMPLED) > 1024:
        _SAMPLED.clear()
    _SAMPLED[key] = worst
    return worst


_SAMPLED: dict[tuple, dict[str, float]] = {}


def allowance(impl: Implementation, oracle: Oracle, params: Params, x, y, dtype: str, step: int, truth,
              kernels: dict) -> tuple[dict[str, float], str] | None:
    """(per value, what Monte Carlo arithmetic allows at this state; where it came from), or None without a
    measured kernel. ``kernels`` caches each (implementation, step)'s measured ulps."""
    if (impl.name, step) not in kernels:
        kernels[impl.name, step] = kernel_ulps(impl, oracle, params, x, dtype)
    ulps = kernels[impl.name, step]
    if ulps is None:
        return None
    spread = monte_carlo(oracle, params, x, y, dtype, ulps, seed_of(oracle.spec, step), truth, exact(impl))
    return ({k: MONTE_CARLO.times * v for k, v in spread.items()},
            f"monte carlo: {MC_SAMPLES} samples, kernels {ulps:.2g} ulps off (measured), x{MONTE_CARLO.times:g}")


class _PlainForward:
    """The oracle's plain float64 forward pass, as an implementation's forward (for finite differences)."""

    def __init__(self, spec) -> None:
        self.spec, self._oracle = spec, Oracle(spec)

    def forward(self, params: Params, x: np.ndarray) -> np.ndarray:
        return self._oracle.predict(params, x, np.float64)


def difference_allowance(spec, params: Params, x: np.ndarray, y: np.ndarray, truth, steps: tuple[float, ...],
                         max_directions: int) -> tuple[dict[str, float], str]:
    """(per parameter, what a finite-difference check may allow at this state; where it came from): how far
    central differences of the oracle's own plain float64 forward pass, at each of ``steps``, land from the
    truth here, times VS_REFERENCE. That is the method's truncation and rounding at this very state (a
    saturated unit whose output change is below float64's resolution costs the same to any correct forward
    pass), whatever the implementation's gradients are."""
    plain, worst = _PlainForward(spec), {}
    for h in steps:
        estimate = finite_difference_grads(plain, params, x, y, h, max_directions)
        for name, found in estimate.items():
            directions = fd_directions(np.shape(params[name]), name, max_directions)
            size = along(np.abs(directions), truth.scale[name])
            rel = error_row(along(directions, truth.grads[name]), found, "float64", size)["rel"]
            worst[name] = max(worst.get(name, 0.0), rel)
    return ({k: VS_REFERENCE.times * v for k, v in worst.items()},
            f"central differences of the oracle's float64 forward here (h = {', '.join(f'{h:g}' for h in steps)})"
            f", x{VS_REFERENCE.times:g}")
