"""``keras``: Keras 3's own layers, losses and optimizers on its jax backend, against numpy and the oracle."""
from __future__ import annotations

import numpy as np
import pytest

from harness.init import initial_params
from harness.truth.optimizers import conventions_of
from harness.truth.oracle import Oracle
from harness.truth.references import param_errors
from impls.spec import CONVENTIONS, OPTIMIZERS, ModelSpec
from tests.conftest import make

pytestmark = pytest.mark.slow  # the edit loop leaves this module out: pytest -m 'not slow'

TIGHT = 1e-13  # forward and gradients against numpy, float64
TRAINED = 1e-12  # parameters after 200 steps against the oracle under the stated conventions
DEEP = dict(layers=(2, 5, 3, 2), activations=("relu", "tanh", "sigmoid"))


def _relative(a, b) -> float:
    return float(np.max(np.abs(np.asarray(a) - np.asarray(b))) / max(np.max(np.abs(b)), 1e-300))


def _params(spec: ModelSpec, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {k: rng.standard_normal(s).astype(spec.dtype) for k, s in spec.param_shapes().items()}


@pytest.mark.parametrize("extra", [dict(), dict(reduction="mean"), dict(loss="bce"),
                                   dict(loss="bce", reduction="mean", **DEEP), dict(**DEEP)],
                         ids=["sel-sum", "sel-mean", "bce-sum", "bce-mean-deep", "sel-sum-deep"])
def test_forward_loss_and_grads_match_numpy(extra, data):
    spec = ModelSpec(**extra)
    x, y = data
    y = np.repeat(y, spec.layers[-1], axis=1)  # two outputs for the deep net
    keras_impl, numpy_impl = make("keras", spec), make("numpy", spec)
    for params in (initial_params(spec), _params(spec)):
        before = {k: v.copy() for k, v in params.items()}
        assert _relative(keras_impl.forward(params, x), numpy_impl.forward(params, x)) < TIGHT
        loss, grads = keras_impl.loss_and_grads(params, x, y)
        loss_ref, grads_ref = numpy_impl.loss_and_grads(params, x, y)
        assert abs(loss - loss_ref) / loss_ref < TIGHT
        for name, g in grads_ref.items():
            assert grads[name].shape == g.shape and grads[name].dtype == np.float64
            assert _relative(grads[name], g) < TIGHT, name
        assert all(np.array_equal(params[k], before[k]) for k in params)  # the caller's arrays untouched


@pytest.mark.parametrize("optimizer", OPTIMIZERS)
def test_each_optimizer_matches_the_oracle_under_its_conventions(optimizer, data):
    spec = ModelSpec(optimizer=optimizer, lr=0.01, schedule="step", decay_every=70,
                     weight_decay=None if optimizer == "adamw" else 0.02)
    x, y = data
    impl, params = make("keras", spec), _params(spec, 1)
    result = impl.train(params, x, y, 200, [0, 200])
    (losses, _, checkpoints), = Oracle(spec).train([params], x, y, 200, [200], conventions=conventions_of(impl))
    assert max(param_errors(result.checkpoints[200], checkpoints[200]).values()) < TRAINED
    assert all(np.array_equal(result.params[k], result.checkpoints[200][k]) for k in params)
    assert np.max(np.abs(result.losses - losses.astype(np.float64)) / losses.astype(np.float64)) < TRAINED
    assert all(np.array_equal(result.checkpoints[0][k], params[k]) for k in params)
    assert result.losses.shape == (200,) and result.params["b0"].shape == (1, spec.layers[1])


def test_train_twice_gives_identical_results(data):
    """Fresh optimizer state each call: Adam's moments and step count do not carry over."""
    spec = ModelSpec(optimizer="adam", lr=0.01)
    x, y = data
    impl, params = make("keras", spec), _params(spec)
    first, second = impl.train(params, x, y, 50, [25, 50]), impl.train(params, x, y, 50, [25, 50])
    assert np.array_equal(first.losses, second.losses)
    for k in (25, 50):
        assert all(np.array_equal(first.checkpoints[k][n], second.checkpoints[k][n]) for n in params)


def test_adam_without_eps_matches_numpy(data):
    """With eps = 0 where eps goes (before or after the bias correction) no longer matters."""
    spec = ModelSpec(optimizer="adam", eps=0.0, lr=0.01)
    x, y = data
    params = _params(spec, 2)
    ours, ref = make("keras", spec).train(params, x, y, 200), make("numpy", spec).train(params, x, y, 200)
    assert max(param_errors(ours.params, ref.params).values()) < TRAINED


def test_conventions_and_defaults_are_keras_own():
    for optimizer in OPTIMIZERS:
        impl = make("keras", ModelSpec(optimizer=optimizer))
        for key, value in impl.conventions.items():
            assert value in CONVENTIONS[key]
    adam, sgd = make("keras", ModelSpec(optimizer="adam")), make("keras", ModelSpec(optimizer="nesterov"))
    assert adam.conventions == {"eps": "before bias correction", "weight_decay": "decoupled, times lr"}
    assert sgd.conventions["nesterov"] == CONVENTIONS["nesterov"][1]
    assert sgd.conventions["momentum_lr"] == "inside the buffer"
    assert adam.framework_defaults == {"lr": 0.001, "beta1": 0.9, "beta2": 0.999, "eps": 1e-7, "weight_decay": 0.0}
    assert sgd.framework_defaults == {"lr": 0.01, "weight_decay": 0.0}
    assert make("keras", ModelSpec(optimizer="adamw")).framework_defaults["weight_decay"] == 0.004


def test_framework_settings_and_no_global_side_effects(data):
    import jax
    import keras

    impl = make("keras", ModelSpec())
    impl.train(initial_params(impl.spec), *data, 3)
    assert impl.framework_settings["backend"] == "jax" and keras.backend.backend() == "jax"
    assert impl.framework_settings["floatx"] == "float64" and impl.framework_settings["keras"] == keras.__version__
    assert keras.config.floatx() == "float32" and not jax.config.jax_enable_x64


def test_float32_runs_in_float32(data):
    spec = ModelSpec(optimizer="adamw", dtype="float32", loss="bce")
    x, y = data
    impl = make("keras", spec)
    result = impl.train(initial_params(spec), x, y, 20, [20])
    assert all(v.dtype == np.float32 for v in result.params.values())
    assert result.losses.dtype == np.float64 and np.all(np.isfinite(result.losses))
    ref = make("numpy", spec).train(initial_params(spec), x, y, 20)
    assert max(param_errors(result.params, ref.params).values()) < 1e-5
