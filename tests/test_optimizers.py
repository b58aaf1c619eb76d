"""Optimizers: every implementation against the oracle's own update rules, conventions named, planted bugs blamed."""
from __future__ import annotations

import pytest

from harness.compare import compare
from harness.config import RunConfig
from harness.truth.optimizers import conventions_of
from impls.registry import create
from impls.spec import ModelSpec, OPTIMIZERS
from tests import broken_optim

pytestmark = [pytest.mark.slow,  # the edit loop leaves this module out: pytest -m 'not slow'
              # keras and the frameworks imported and compiled once per test process, not in fresh workers for each
              # comparison (test_isolation.py and test_reliability.py cover the workers); some plant bugs here too
              pytest.mark.in_process("two dozen comparisons of keras, optax and torch-nn: far cheaper in one process")]

NATIVE = ("numpy", "torch-nn", "jax-optax", "keras")


def _run(**settings):
    # ten checkpoints a run: every one-step check still runs at each (the default would be a hundred)
    settings = {"dtype": ("float64",), "quiet": True, "check_every": settings["steps"] // 10, **settings}
    outcome = compare(RunConfig(**settings), timings=False)
    return outcome, {v.impl: v for v in outcome.verdicts}


def _named(verdict) -> str:
    return " ".join(f.detail for f in verdict.findings if f.check == "convention")


@pytest.mark.parametrize("optimizer", OPTIMIZERS)
def test_each_optimizer_in_each_implementation_matches_the_oracle_over_1000_steps(optimizer):
    # eps = 0: keras adds eps before bias correction, which (with eps 0) is the spec's rule exactly
    outcome, verdicts = _run(impls=NATIVE, steps=1000, optimizer=optimizer, eps=0.0)
    assert set(verdicts) == set(NATIVE), outcome.skipped
    for impl, v in verdicts.items():
        assert v.passed, outcome.failures
        expected = {"convention"} if (impl, optimizer) == ("jax-optax", "amsgrad") else set()
        assert {f.check for f in v.findings} == expected, (impl, v.findings)
    if optimizer == "amsgrad":
        assert "update rule of jax-optax amsgrad at step" in _named(verdicts["jax-optax"])
        assert "bias-corrected v" in _named(verdicts["jax-optax"])


@pytest.mark.parametrize("settings, phrase", [
    ({"optimizer": "adam"}, "update rule of keras adam at step 1: eps is added before bias correction"),
    ({"optimizer": "adam", "weight_decay": 0.01}, "weight decay is decoupled"),
    ({"optimizer": "momentum", "schedule": "step", "decay_every": 20}, "the momentum buffer holds lr"),
    ({"optimizer": "nesterov", "schedule": "step", "decay_every": 20}, "nesterov in velocity form"),
])
def test_a_stated_keras_convention_is_named_not_failed(settings, phrase):
    outcome, verdicts = _run(impls=("keras",), steps=60, **settings)
    keras = verdicts["keras"]
    assert keras.passed, outcome.failures
    assert phrase in _named(keras), keras.findings
    assert outcome.failures == []


def test_lr_held_in_float32_is_named_when_stated_and_fails_when_not():
    planted = {c.name: c for c in (broken_optim.LrInFloat32, broken_optim.LrInFloat32Unstated)}
    config = RunConfig(impls=("numpy",), dtype=("float64",), steps=60, check_every=6, optimizer="adam", quiet=True)
    outcome = compare(config, planted, timings=False)
    verdicts = {v.impl: v for v in outcome.verdicts}
    assert verdicts["lr-in-float32"].passed and verdicts["numpy"].passed, outcome.failures
    assert "the learning rate is held in float32" in _named(verdicts["lr-in-float32"])
    assert not verdicts["lr-in-float32-unstated"].passed
    assert all(line.split(":")[1].strip().startswith("lr-in-float32-unstated") for line in outcome.failures)


def test_a_convention_stated_but_not_followed_fails_and_says_so():
    # keras's eps before bias correction, stated by a run that adds it after (the spec's): a statement the report
    # would otherwise print as fact; keras itself, which follows it, is named as a convention beside it
    planted = {broken_optim.StatesEpsBeforeFollowsSpec.name: broken_optim.StatesEpsBeforeFollowsSpec}
    config = RunConfig(impls=("keras",), dtype=("float64",), steps=60, check_every=6, optimizer="adam", eps=1e-3,
                       lr=0.01, quiet=True)
    outcome = compare(config, planted, timings=False)
    verdicts = {v.impl: v for v in outcome.verdicts}
    assert verdicts["keras"].status == "convention", outcome.failures
    stated = [f for f in verdicts["states-eps-before"].failing if f.check == "stated"]
    assert len(stated) == 1 and "eps is added before bias correction" in stated[0].detail


def test_a_convention_that_does_not_show_is_not_named():
    # momentum at a constant lr: keras's lr inside the buffer is the same rule
    outcome, verdicts = _run(impls=("keras",), steps=60, optimizer="momentum")
    assert verdicts["keras"].passed and verdicts["keras"].findings == ()


def test_framework_defaults_name_each_default_that_differs_and_where_it_shows():
    outcome, verdicts = _run(impls=("torch-nn", "jax-optax", "keras"), steps=60, optimizer="adamw",
                             framework_defaults=True)
    assert all(v.passed for v in verdicts.values()), outcome.failures
    assert verdicts["torch-nn"].findings == ()  # torch's AdamW defaults are the shared ones
    assert "default of jax-optax adamw at step" in _named(verdicts["jax-optax"])
    assert "weight_decay = 0.0001" in _named(verdicts["jax-optax"])
    assert "weight_decay = 0.004" in _named(verdicts["keras"])
    assert "eps = 1e-07" in _named(verdicts["keras"])
    assert outcome.specs[("keras", "float64")].eps == 1e-7


@pytest.mark.parametrize("planted, optimizer", [
    (broken_optim.AdamNoBiasCorrection, "adam"),
    (broken_optim.AdamBetasSwapped, "adam"),
    (broken_optim.MomentumNotReset, "momentum"),
    (broken_optim.TorchOptimizerKept, "adam"),
    (broken_optim.ClaimsKerasEps, "adam"),
])
def test_a_planted_optimizer_bug_fails_that_implementation_and_no_other(planted, optimizer):
    config = RunConfig(impls=("numpy", "torch-nn"), dtype=("float64",), steps=60, check_every=6, optimizer=optimizer,
                       quiet=True)
    outcome = compare(config, {planted.name: planted}, timings=False)
    verdicts = {v.impl: v for v in outcome.verdicts}
    assert not verdicts[planted.name].passed
    assert verdicts["numpy"].passed and verdicts["torch-nn"].passed, outcome.failures
    assert all(line.split(":")[1].strip().startswith(planted.name) for line in outcome.failures), outcome.failures
    assert any(f.check == "update" or f.cause == "update" for f in verdicts[planted.name].findings)


def test_unknown_conventions_are_refused():
    impl = create("numpy", ModelSpec())
    impl.conventions = {"eps": "somewhere else"}
    with pytest.raises(ValueError, match="unknown convention"):
        conventions_of(impl)


def test_hand_rolled_sgd_loops_decline_other_optimizers_with_a_reason():
    from impls.interface import Unavailable

    for name in ("torch", "jax", "numpy-fast"):
        with pytest.raises(Unavailable, match="plain SGD only"):
            create(name, ModelSpec(optimizer="adam"))
