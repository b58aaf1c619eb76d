"""``jax``'s fused loop: each matmul form (broadcast-multiply-and-sum, ``@``) against numpy at the float64
floor, the rule that picks between them, and the chunked, unrolled scan's step numbering.

A form is forced by replacing ``impls.jax_grad.matmul_form`` for one test; implementations are built inside
the test, so each traces (and compiles) under the form it is given.
"""
import numpy as np
import pytest

import impls.jax_grad as jax_grad
from harness.checks.arrays import assert_close
from harness.init import initial_params
from harness.truth.tolerances import SAME_MATH, TRAJECTORY
from impls.jax_grad import BROADCAST_MAX_PRODUCT, layer_forms, matmul_form
from impls.spec import ModelSpec
from tests.conftest import make

pytestmark = pytest.mark.slow  # the edit loop leaves this module out: pytest -m 'not slow'

# A hidden 4x4 layer, so a transposed weight still fits; tanh, relu and sigmoid layers.
SQUARE = ModelSpec(layers=(2, 4, 4, 1), activations=("tanh", "relu", "sigmoid"), reduction="mean")
# Segments of 1, 65 and 134 steps: in float64 (chunks of 64 steps) no whole chunk, one and two, each with
# steps left over.
RECORD = [0, 1, 66, 200]


def _force(monkeypatch, form: str) -> None:
    monkeypatch.setattr(jax_grad, "matmul_form", lambda n_in, n_out, batch: form)


def _has_dot(impl, params, x) -> bool:
    """Whether the compiled forward pass calls a dot (``@``) rather than only fused loops."""
    with impl._scope():
        return " dot(" in impl._forward_jit.lower(params, impl._array(x)).compile().as_text()


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("form", ["broadcast", "dot"])
def test_each_form_matches_numpy_teacher_forced(monkeypatch, form, dtype, data):
    _force(monkeypatch, form)
    spec = ModelSpec(**{**SQUARE.__dict__, "dtype": dtype})
    params, (x, y) = initial_params(spec), data
    impl, ref = make("jax", spec), make("numpy", spec)
    assert _has_dot(impl, params, x) == (form == "dot")
    what = f"jax {dtype} {form}"
    assert_close(impl.forward(params, x), ref.forward(params, x), SAME_MATH[dtype], f"{what} predictions")
    loss, grads = impl.loss_and_grads(params, x, y)
    ref_loss, ref_grads = ref.loss_and_grads(params, x, y)
    assert_close(loss, ref_loss, SAME_MATH[dtype], f"{what} loss")
    assert_close(grads, ref_grads, SAME_MATH[dtype], f"{what} gradient")


@pytest.mark.parametrize("form", ["broadcast", "dot"])
def test_each_form_trains_like_numpy(monkeypatch, form, data):
    _force(monkeypatch, form)
    params, (x, y) = initial_params(SQUARE), data
    run = make("jax", SQUARE).train(params, x, y, RECORD[-1], RECORD)
    truth = make("numpy", SQUARE).train(params, x, y, RECORD[-1], RECORD)
    assert sorted(run.checkpoints) == RECORD and run.losses.shape == (RECORD[-1],)
    for step in RECORD:
        assert_close(run.checkpoints[step], truth.checkpoints[step], TRAJECTORY["float64"], f"jax {form} step {step}")
    assert_close(run.losses, truth.losses, TRAJECTORY["float64"], f"jax {form} per-step loss")
    assert np.all(np.diff(run.losses) != 0)  # each entry is its own step's loss, across chunk boundaries


def test_the_rule_picks_each_form_on_each_side_of_the_threshold():
    assert matmul_form(2, 4, 4) == "broadcast"  # the notebook's layers
    assert matmul_form(2, 256, 4) == matmul_form(1, 1, BROADCAST_MAX_PRODUCT) == "broadcast"  # at the threshold
    assert matmul_form(2, 512, 4) == matmul_form(1, 1, BROADCAST_MAX_PRODUCT + 1) == "dot"
    deep = ModelSpec(layers=(2, 64, 64, 1), activations=("tanh", "tanh", "sigmoid"))
    assert layer_forms(deep, 4) == ("broadcast", "dot", "broadcast")
    assert layer_forms(ModelSpec(layers=(2, 1024, 1)), 4) == ("dot", "dot")


def test_the_default_specs_training_loop_compiles_without_a_dot(data, notebook_params):
    """The gradient jax.grad derives from the broadcast form is broadcasts and sums too: no dot anywhere."""
    impl, (x, y) = make("jax", ModelSpec()), data
    with impl._scope():
        compiled = impl._scan.lower(notebook_params, impl._array(x), impl._array(y), 100, 1).compile()
    assert " dot(" not in compiled.as_text()


def test_a_transposed_weight_in_the_broadcast_form_is_caught(monkeypatch, data):
    """Negative control: the square layer's product with w.T still has the right shape, and must fail."""
    right = jax_grad.dense

    def wrong(h, w, b):
        return (h[:, :, None] * w.T[None, :, :]).sum(axis=1) + b if w.shape == (4, 4) else right(h, w, b)

    monkeypatch.setattr(jax_grad, "dense", wrong)
    params, (x, y) = initial_params(SQUARE), data
    _, grads = make("jax", SQUARE).loss_and_grads(params, x, y)
    _, ref = make("numpy", SQUARE).loss_and_grads(params, x, y)
    with pytest.raises(AssertionError, match="relative difference"):
        assert_close(grads, ref, SAME_MATH["float64"], "jax float64 transposed gradient")
