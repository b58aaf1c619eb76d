"""Teacher-forced checks: every implementation, at the same parameters, against numpy.

Forward (predictions, reported loss) and backward (gradients) are asserted
apart, so a failure says which half broke.
"""
import numpy as np
import pytest

from harness.checks.arrays import assert_close, finite_difference_grads
from harness.init import initial_params
from harness.truth.tolerances import FD_CHECK_F64, FD_CHECK_STEP, NOTEBOOK_FD, SAME_MATH
from impls.spec import ModelSpec
from tests.conftest import EXACT, make

SPECS = {
    "notebook": ModelSpec(),
    "mean": ModelSpec(reduction="mean"),
    # relu at the notebook's init hits z == 0 exactly (sample [0, 0], zero biases):
    # all three exact implementations take relu'(0) = 0 there.
    "relu-deep": ModelSpec(layers=(2, 5, 3, 1), activations=("relu", "tanh", "sigmoid")),
    "bce-mean": ModelSpec(loss="bce", reduction="mean"),
    "identity": ModelSpec(layers=(2, 3, 1), activations=("identity", "sigmoid")),
}
DTYPES = ["float64", "float32"]


def _at(spec_name: str, dtype: str):
    spec = ModelSpec(**{**SPECS[spec_name].__dict__, "dtype": dtype})
    return spec, initial_params(spec)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("spec_name", SPECS)
@pytest.mark.parametrize("name", EXACT[1:])
def test_forward_matches_numpy(name, spec_name, dtype, data):
    spec, params = _at(spec_name, dtype)
    x, y = data
    what = f"{name} {dtype} {spec_name} step 0"
    ref, impl = make("numpy", spec), make(name, spec)
    assert_close(impl.forward(params, x), ref.forward(params, x), SAME_MATH[dtype], f"{what} predictions")
    assert_close(impl.loss_and_grads(params, x, y)[0], ref.loss_and_grads(params, x, y)[0],
                 SAME_MATH[dtype], f"{what} loss")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("spec_name", SPECS)
@pytest.mark.parametrize("name", EXACT[1:])
def test_backward_matches_numpy(name, spec_name, dtype, data):
    spec, params = _at(spec_name, dtype)
    x, y = data
    _, grads = make(name, spec).loss_and_grads(params, x, y)
    _, ref = make("numpy", spec).loss_and_grads(params, x, y)
    assert_close(grads, ref, SAME_MATH[dtype], f"{name} {dtype} {spec_name} step 0 gradient")


@pytest.mark.parametrize("spec_name", ["notebook", "mean", "bce-mean", "identity"])
def test_notebook_fd_is_near_exact(spec_name, data):
    spec, params = _at(spec_name, "float64")
    x, y = data
    loss, grads = make("numpy-fd", spec).loss_and_grads(params, x, y)
    ref_loss, ref = make("numpy", spec).loss_and_grads(params, x, y)
    assert loss == ref_loss  # the forward pass is the same code
    assert_close(grads, ref, NOTEBOOK_FD, f"numpy-fd float64 {spec_name} step 0 gradient")


@pytest.mark.parametrize("spec_name", SPECS)
def test_numpy_backprop_matches_finite_differences(spec_name, data):
    spec, params = _at(spec_name, "float64")
    x, y = data
    impl = make("numpy", spec)
    _, grads = impl.loss_and_grads(params, x, y)
    if spec_name == "relu-deep":  # move off relu's kink so the difference quotient is a derivative
        params = {k: v + (0.01 if k.startswith("b") else 0.0) for k, v in params.items()}
        _, grads = impl.loss_and_grads(params, x, y)
    fd = _coordinatewise(impl, params, x, y)
    assert_close(grads, fd, FD_CHECK_F64, f"numpy float64 {spec_name} finite-difference")


def _coordinatewise(impl, params, x, y):
    """Central differences one coordinate at a time, shaped like the parameters."""
    fd = finite_difference_grads(impl, params, x, y, FD_CHECK_STEP)
    return {k: v.reshape(params[k].shape) for k, v in fd.items()}


def test_a_wrong_derivative_is_caught(data, notebook_params, monkeypatch):
    """Negative control: tanh' written as 1 - h must fail the check above, not slip through."""
    import impls.np_notebook as nb

    impl = make("numpy", ModelSpec())
    x, y = data
    fd = _coordinatewise(impl, notebook_params, x, y)
    monkeypatch.setitem(nb.ACTIVATION_PRIME, "tanh", lambda out: 1 - out)
    _, wrong = impl.loss_and_grads(notebook_params, x, y)
    with pytest.raises(AssertionError, match="numpy float64 step 0 gradient w0: relative difference"):
        assert_close(wrong, fd, FD_CHECK_F64, "numpy float64 step 0 gradient")
    assert np.allclose(wrong["w1"], fd["w1"], rtol=FD_CHECK_F64.rel)  # only layer 0 uses tanh'
