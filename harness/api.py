"""The harness from Python, for your own test suite.

    from harness.api import assert_matches_reference

    def test_my_backprop():
        assert_matches_reference("mypkg.mymod:MyImpl", steps=500)

It validates the implementation, checks its loss and gradients at the initial
weights and along the way against the oracle (complex step in extended
precision), runs its own training loop and compares the trajectory. On any
failure it raises AssertionError whose lines name the implementation, dtype,
step and parameter; it also fails when nothing was compared (the
implementation declined every dtype asked for).
"""
from __future__ import annotations

from dataclasses import fields

from harness.pipeline import compare
from harness.config import RunConfig, UsageError, validate
from harness.running.plugins import Factory, load


def assert_matches_reference(impl: Factory | str, *, steps: int = 2_000, check_every: int | None = None,
                             dtype: tuple[str, ...] = ("float64",), strict: bool = False, **model) -> None:
    """Raise AssertionError unless ``impl`` matches the oracle's truth, or when nothing was compared.

    A run that parts from the spec only by a convention ``impl`` states (and the harness checks) passes,
    unless ``strict``.

    ``impl`` is a class or factory taking a ``ModelSpec``, or its ``"module:attr"``.
    ``model`` takes any other ``RunConfig`` field: layers, activations, loss,
    reduction, dataset, lr, seed. Defaults: the notebook's network and weights.
    """
    factory = load(impl) if isinstance(impl, str) else impl
    known = {f.name for f in fields(RunConfig)} - {"impls", "impl", "out", "overwrite", "no_plots", "no_timings",
                                                   "quiet", "strict"}
    unknown = sorted(set(model) - known)
    if unknown:
        raise TypeError(f"unknown settings {unknown}; choose from {sorted(known)}")
    model = {k: tuple(v) if isinstance(v, list) else v for k, v in model.items()}
    config = RunConfig(impls=(), dtype=tuple(dtype), steps=steps, strict=strict,
                       check_every=check_every or max(1, steps // 10), quiet=True, **model)
    try:
        validate(config)
    except UsageError as exc:
        raise ValueError(str(exc)) from None
    label = getattr(factory, "__name__", "impl")
    outcome = compare(config, {label: factory}, timings=False)
    if not outcome.verdicts:
        reasons = "; ".join(f"{k}: {v}" for k, v in outcome.skipped.items()) or "no implementation ran"
        raise AssertionError(f"nothing was compared: {label} ran in none of {', '.join(dtype)} ({reasons})")
    if not all(v.passed for v in outcome.verdicts):  # the verdict's status decides; its lines say why
        raise AssertionError("\n".join(outcome.failures))
