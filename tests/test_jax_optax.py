"""jax-optax (JAX with optax's losses, optimizers and schedule) against numpy and, where a declared
convention departs from the spec, against the oracle following that convention."""
import inspect

import numpy as np
import pytest

from harness.data import xor
from harness.truth.oracle import Oracle
from impls.registry import create
from impls.spec import CONVENTIONS, OPTIMIZERS, ModelSpec
from tests.conftest import DEEP, SCHEDULED, make, random_params as _params

pytestmark = pytest.mark.slow  # the edit loop leaves this module out: pytest -m 'not slow'

MODELS = {"sel-sum": {}, "sel-mean": dict(reduction="mean"), "bce": dict(loss="bce"), "deep": DEEP}
STEPS = 200


def _rel(got: dict[str, np.ndarray], want: dict[str, np.ndarray]) -> float:
    """Largest elementwise relative difference (absolute where ``want`` is exactly 0, e.g. a dead relu)."""
    assert got.keys() == want.keys()
    return max(float(np.max(np.abs(got[k] - want[k]) / np.where(want[k] == 0, 1, np.abs(want[k])))) for k in want)


@pytest.mark.parametrize("model", MODELS)
def test_forward_loss_and_grads_match_numpy(model):
    spec = ModelSpec(**MODELS[model])
    impl, ref = make("jax-optax", spec), create("numpy", spec)
    x, y = xor()
    params = _params(spec)
    np.testing.assert_allclose(impl.forward(params, x), ref.forward(params, x), rtol=1e-13, atol=0)
    (loss, grads), (ref_loss, ref_grads) = impl.loss_and_grads(params, x, y), ref.loss_and_grads(params, x, y)
    assert loss == pytest.approx(ref_loss, rel=1e-13, abs=0)
    assert _rel(grads, ref_grads) < 1e-13


@pytest.mark.parametrize("extra", [{}, SCHEDULED], ids=["constant", "step-wd"])
@pytest.mark.parametrize("optimizer", OPTIMIZERS)
def test_optax_optimizers_match_numpy_or_the_declared_convention(optimizer, extra):
    spec = ModelSpec(optimizer=optimizer, **extra)
    impl = make("jax-optax", spec)
    x, y = xor()
    params = _params(spec)
    got = impl.train(params, x, y, STEPS, [STEPS])
    assert got.losses.shape == (STEPS,) and got.checkpoints[STEPS].keys() == got.params.keys()
    numpy_run = create("numpy", spec).train(params, x, y, STEPS)
    if optimizer != "amsgrad":
        assert impl.conventions == {}
        assert _rel(got.params, numpy_run.params) < 1e-12
        return
    # optax's amsgrad keeps the max of the bias-corrected v: numpy (the spec's raw v) parts from it ...
    assert impl.conventions == {"amsgrad_max": "over bias-corrected v"}
    assert _rel(got.params, numpy_run.params) > 1e-9
    # ... and the oracle following the declared convention agrees with it.
    (_, _, truth), = Oracle(spec).train([params], x, y, STEPS, [STEPS], conventions=impl.conventions)
    assert _rel(got.params, {k: np.asarray(v, np.float64) for k, v in truth[STEPS].items()}) < 1e-12


def test_train_twice_gives_identical_results_from_fresh_state():
    spec = ModelSpec(optimizer="adam", **SCHEDULED)
    impl = make("jax-optax", spec)
    x, y = xor()
    params = _params(spec)
    first, second = (impl.train(params, x, y, 60, [0, 20, 40, 60]) for _ in range(2))
    np.testing.assert_array_equal(first.losses, second.losses)
    assert sorted(first.checkpoints) == [0, 20, 40, 60]
    for k in first.checkpoints:
        for name in params:
            np.testing.assert_array_equal(first.checkpoints[k][name], second.checkpoints[k][name])
    for name in params:
        np.testing.assert_array_equal(first.params[name], first.checkpoints[60][name])
        np.testing.assert_array_equal(first.checkpoints[0][name], params[name])


def test_float32_runs_in_float32():
    spec = ModelSpec(optimizer="momentum", dtype="float32", **SCHEDULED)
    impl = make("jax-optax", spec)
    x, y = xor()
    params = _params(spec)
    got = impl.train(params, x, y, 100, [50])
    assert all(v.dtype == np.float32 for v in (*got.params.values(), *got.checkpoints[50].values()))
    assert _rel(got.params, create("numpy", spec).train(params, x, y, 100).params) < 1e-4


def test_declared_conventions_and_framework_defaults():
    import optax

    for optimizer in OPTIMIZERS:
        impl = make("jax-optax", ModelSpec(optimizer=optimizer))
        assert all(value in CONVENTIONS[key] for key, value in impl.conventions.items())
        assert "lr" not in impl.framework_defaults  # optax has no default learning rate
    adamw = inspect.signature(optax.adamw).parameters
    assert make("jax-optax", ModelSpec(optimizer="adamw")).framework_defaults == {
        "beta1": adamw["b1"].default, "beta2": adamw["b2"].default, "eps": adamw["eps"].default,
        "weight_decay": adamw["weight_decay"].default}
    assert make("jax-optax", ModelSpec(optimizer="sgd")).framework_defaults == {"weight_decay": 0.0}
