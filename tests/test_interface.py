"""Every implementation honours the common interface; the registry explains what cannot run."""
import sys

import numpy as np
import pytest

from impls.interface import Implementation, NotInstalled, Unavailable
from impls.registry import create, names
from impls.spec import ModelSpec
from tests.conftest import make

CASES = [(name, dtype) for name in names() for dtype in ("float64", "float32")
         if not (name == "numpy-fd" and dtype == "float32")]


@pytest.fixture(params=CASES, ids=[f"{n}-{d}" for n, d in CASES])
def impl(request) -> Implementation:
    name, dtype = request.param
    return make(name, ModelSpec(dtype=dtype))


def _frozen(params):
    for array in params.values():
        array.flags.writeable = False  # any in-place write to the caller's arrays raises
    return params


def test_satisfies_the_protocol(impl):
    assert isinstance(impl, Implementation)


def test_forward_returns_predictions_in_the_spec_dtype(impl, data, notebook_params):
    x, _ = data
    out = impl.forward(_frozen(notebook_params), x)
    assert out.shape == (4, 1) and out.dtype == np.dtype(impl.spec.dtype)


def test_loss_and_grads_return_every_parameter_in_the_spec_dtype(impl, data, notebook_params):
    x, y = data
    loss, grads = impl.loss_and_grads(_frozen(notebook_params), x, y)
    assert isinstance(loss, float) and np.isfinite(loss)
    assert list(grads) == list(notebook_params)
    for name, grad in grads.items():
        assert grad.shape == notebook_params[name].shape, name
        assert grad.dtype == np.dtype(impl.spec.dtype), name
        assert grad.flags.writeable, name


def test_train_returns_losses_final_params_and_checkpoints(impl, data, notebook_params):
    if impl.name == "torch-loop":
        pytest.skip("compiles for 7-18 s per dtype: tests/test_torch_loop.py checks this on its one compile")
    x, y = data
    original = {k: v.copy() for k, v in notebook_params.items()}
    result = impl.train(_frozen(notebook_params), x, y, steps=5, record=[0, 2, 5])
    assert result.losses.shape == (5,) and np.all(np.isfinite(result.losses))
    assert sorted(result.checkpoints) == [0, 2, 5]
    for name, value in original.items():
        np.testing.assert_array_equal(notebook_params[name], value)  # untouched
        np.testing.assert_array_equal(result.checkpoints[0][name], value.astype(impl.spec.dtype))
        np.testing.assert_array_equal(result.checkpoints[5][name], result.params[name])
        assert not np.shares_memory(result.checkpoints[5][name], result.params[name])  # a copy, not the buffer
    shorter = impl.train(notebook_params, x, y, steps=2)  # checkpoint 2 is the state after two updates
    for name in original:
        np.testing.assert_array_equal(result.checkpoints[2][name], shorter.params[name])
        assert not np.array_equal(result.checkpoints[2][name], result.checkpoints[0][name]) or name.startswith("b")
        assert result.params[name].dtype == np.dtype(impl.spec.dtype)
        assert not np.shares_memory(result.params[name], notebook_params[name])


def test_checkpoint_out_of_range_is_refused(impl, data, notebook_params):
    x, y = data
    with pytest.raises(ValueError, match="checkpoint steps must lie in 0..3"):
        impl.train(notebook_params, x, y, steps=3, record=[4])


def test_unknown_name_gives_the_choices():
    with pytest.raises(Unavailable, match="unknown implementation 'tensorflow'; choose from numpy"):
        create("tensorflow", ModelSpec())


def test_numpy_fd_explains_why_it_has_no_float32():
    with pytest.raises(Unavailable, match="float64 only"):
        create("numpy-fd", ModelSpec(dtype="float32"))


@pytest.mark.parametrize("framework, impl_name, module", [
    ("torch", "torch", "impls.torch_autograd"),
    ("jax", "jax", "impls.jax_grad"),
    ("optax", "jax-optax", "impls.jax_optax"),
    ("keras", "keras", "impls.keras_native"),
])
def test_missing_framework_disables_only_its_own_implementation(monkeypatch, framework, impl_name, module):
    monkeypatch.setitem(sys.modules, framework, None)  # import of it now raises ImportError
    monkeypatch.delitem(sys.modules, module, raising=False)
    with pytest.raises(NotInstalled) as missing:
        create(impl_name, ModelSpec())
    assert str(missing.value).startswith(f"{impl_name}: {framework} is not installed")
    assert "\n" not in str(missing.value)
    assert [create(name, ModelSpec()).name for name in ("numpy", "numpy-fd")] == ["numpy", "numpy-fd"]


def test_jax_x64_does_not_leak_into_the_process(data, notebook_params):
    impl = make("jax", ModelSpec(dtype="float64"))
    import jax
    import jax.numpy as jnp

    before = jax.config.jax_enable_x64
    x, y = data
    _, grads = impl.loss_and_grads(notebook_params, x, y)
    assert grads["w0"].dtype == np.float64
    assert before is False  # nothing in the test process turns x64 on globally
    assert jax.config.jax_enable_x64 is False
    assert jnp.zeros(1).dtype == jnp.float32


def test_jax_runs_equal_segments_as_one_call():
    pytest.importorskip("jax")
    from impls.jax_common import segments

    assert segments([0, 1000, 2000, 2999, 3000], 3000) == [(0, 1000, 2), (2000, 999, 1), (2999, 1, 1)]
    assert segments([], 5) == [(0, 5, 1)]


@pytest.mark.parametrize("name, dtype", CASES, ids=[f"{n}-{d}" for n, d in CASES])
def test_a_relu_network_keeps_the_spec_dtype_inside(name, dtype, data, notebook_params):
    """Found by the fuzzer: numpy's relu' was an int64 array, which made a float32 run compute in float64 past its
    first relu (the worker's cast at the boundary hid it; a plugin built on numpy was called faulty)."""
    impl = make(name, ModelSpec(dtype=dtype, activations=("relu", "relu")))
    x, y = data
    _, grads = impl.loss_and_grads(_frozen(notebook_params), x, y)
    assert {g.dtype for g in grads.values()} == {np.dtype(dtype)}
