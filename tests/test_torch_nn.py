"""torch-nn (nn.Sequential, torch.nn losses, torch.optim and StepLR) against the numpy implementation, which
follows the spec exactly. torch.optim declares no convention departure, so every optimizer is held to numpy."""
import numpy as np
import pytest
import torch

from harness.data import xor
from harness.truth.optimizers import conventions_of
from impls.interface import Unavailable
from impls.registry import create
from impls.spec import OPTIMIZERS, ModelSpec
from tests.conftest import DEEP, SCHEDULED, make, random_params as _params

pytestmark = pytest.mark.slow  # the edit loop leaves this module out: pytest -m 'not slow'

MODELS = {"sel-sum": {}, "sel-mean": dict(reduction="mean"), "bce": dict(loss="bce"),
          "bce-mean": dict(loss="bce", reduction="mean"), "deep": DEEP,
          "deep-bce-mean": dict(DEEP, loss="bce", reduction="mean")}
STEPS = 200


def _rel(got: dict[str, np.ndarray], want: dict[str, np.ndarray]) -> float:
    """Largest elementwise relative difference (0 where both are exactly 0)."""
    assert got.keys() == want.keys()
    worst = 0.0
    for k in want:
        assert got[k].shape == want[k].shape and got[k].dtype == want[k].dtype, k
        diff, scale = np.abs(got[k] - want[k]), np.abs(want[k])
        worst = max(worst, float(np.max(np.divide(diff, scale, out=np.where(diff > 0, np.inf, 0.0), where=scale > 0))))
    return worst


def _rel_to_scale(got: dict[str, np.ndarray], want: dict[str, np.ndarray]) -> float:
    """Largest difference relative to each array's largest magnitude: a gradient element that is a sum with
    cancellation can sit near 0, where an elementwise ratio measures the cancellation, not the implementation."""
    assert got.keys() == want.keys()
    worst = 0.0
    for k in want:
        assert got[k].shape == want[k].shape and got[k].dtype == want[k].dtype, k
        diff, scale = float(np.max(np.abs(got[k] - want[k]))), float(np.max(np.abs(want[k])))
        worst = max(worst, diff / scale if scale else (np.inf if diff else 0.0))
    return worst


def test_layout_round_trip():
    """Weights go into nn.Linear transposed and come back in the spec's layout, bit for bit."""
    spec = ModelSpec(**DEEP)
    impl, ref = make("torch-nn", spec), create("numpy", spec)
    x, y = xor()
    params = _params(spec)
    np.testing.assert_allclose(impl.forward(params, x), ref.forward(params, x), rtol=1e-15, atol=0)
    model = impl._model(params)
    assert model[0].weight.shape == (5, 2) and model[0].bias.shape == (5,)
    back = impl.train(params, x, y, 1, record=[0]).checkpoints[0]
    assert all(np.array_equal(back[k], params[k]) and back[k].shape == params[k].shape for k in params)


@pytest.mark.parametrize("model", MODELS)
def test_loss_and_grads_match_numpy(model):
    spec = ModelSpec(**MODELS[model])
    impl, ref = make("torch-nn", spec), create("numpy", spec)
    x, y = xor()
    params = _params(spec)
    (loss, grads), (ref_loss, ref_grads) = impl.loss_and_grads(params, x, y), ref.loss_and_grads(params, x, y)
    assert loss == pytest.approx(ref_loss, rel=1e-13, abs=0)
    assert _rel_to_scale(grads, ref_grads) < 1e-13


@pytest.mark.parametrize("loss", ["sel", "bce"])
def test_mean_reduction_follows_the_gradient_of_the_mean(loss):
    """0.5 * MSELoss(mean) and BCEWithLogitsLoss(mean): the gradient of the sum over the element count, and the
    same reported (mean) loss as reduction sum."""
    x, y = xor()
    params = _params(ModelSpec())
    sum_loss, sum_grads = make("torch-nn", ModelSpec(loss=loss)).loss_and_grads(params, x, y)
    mean_loss, mean_grads = make("torch-nn", ModelSpec(loss=loss, reduction="mean")).loss_and_grads(params, x, y)
    assert mean_loss == pytest.approx(sum_loss, rel=1e-15)
    assert _rel_to_scale(mean_grads, {k: g / y.size for k, g in sum_grads.items()}) < 1e-14


def test_relu_grad_at_zero_is_declared():
    """A hidden unit at exactly z = 0 (zero weights and bias) gets nn.ReLU's derivative there."""
    spec = ModelSpec(layers=(2, 3, 1), activations=("relu", "sigmoid"))
    impl = make("torch-nn", spec)
    params = _params(spec)
    params["w0"][:, 0], params["b0"][0, 0] = 0.0, 0.0
    _, grads = impl.loss_and_grads(params, *xor())
    assert impl.relu_grad_at_zero == 0.0 and grads["b0"][0, 0] == 0.0 and np.all(grads["w0"][:, 0] == 0.0)


def test_train_twice_is_identical_and_leaves_the_inputs_alone():
    spec = ModelSpec(optimizer="adam", schedule="step", decay_every=20)
    impl = make("torch-nn", spec)
    x, y = xor()
    params = _params(spec)
    before = {k: v.copy() for k, v in params.items()}
    first, second = (impl.train(params, x, y, 60, record=[0, 30, 60]) for _ in range(2))
    assert all(np.array_equal(params[k], before[k]) for k in params)
    assert np.array_equal(first.losses, second.losses) and first.losses.dtype == np.float64
    pairs = [(first.params, second.params)] + [(first.checkpoints[k], second.checkpoints[k]) for k in (0, 30, 60)]
    for got, want in pairs:
        assert all(np.array_equal(got[k], want[k]) for k in want)
    assert all(np.array_equal(first.params[k], first.checkpoints[60][k]) for k in params)


@pytest.mark.parametrize("extra", [{}, SCHEDULED], ids=["constant", "step-wd"])
@pytest.mark.parametrize("optimizer", OPTIMIZERS)
def test_torch_optimizers_match_numpy(optimizer, extra):
    """torch.optim follows the spec on every convention key, so numpy (the spec exactly) is its reference."""
    spec = ModelSpec(optimizer=optimizer, **extra)
    impl = make("torch-nn", spec)
    assert impl.conventions == {} and conventions_of(impl)  # no departure declared: nothing skipped
    x, y = xor()
    params = _params(spec)
    got = impl.train(params, x, y, STEPS, [STEPS])
    want = create("numpy", spec).train(params, x, y, STEPS)
    assert got.losses.shape == (STEPS,) and got.checkpoints[STEPS].keys() == got.params.keys()
    assert _rel(got.params, want.params) < 1e-12
    np.testing.assert_allclose(got.losses, want.losses, rtol=1e-12, atol=0)


@pytest.mark.parametrize("optimizer", OPTIMIZERS)
def test_float32_runs_in_float32(optimizer):
    spec = ModelSpec(optimizer=optimizer, dtype="float32")
    x, y = xor()
    params = _params(spec)
    got = make("torch-nn", spec).train(params, x, y, 50)
    want = create("numpy", spec).train(params, x, y, 50)
    assert _rel(got.params, want.params) < 1e-4  # same dtypes asserted inside


def test_framework_defaults_come_from_torch_optim():
    defaults = {opt: make("torch-nn", ModelSpec(optimizer=opt)).framework_defaults for opt in OPTIMIZERS}
    assert defaults["sgd"] == defaults["nesterov"] == {"lr": 1e-3, "weight_decay": 0.0}
    assert defaults["adam"] == defaults["amsgrad"] == {"lr": 1e-3, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8,
                                                       "weight_decay": 0.0}
    assert defaults["adamw"]["weight_decay"] == 0.01


def test_cuda_without_a_gpu_is_unavailable(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(Unavailable, match="CUDA"):
        create("torch-nn", ModelSpec(device="cuda"))
