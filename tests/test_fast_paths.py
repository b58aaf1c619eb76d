"""The fastest path in each framework (numpy-fast, jax-step, torch-compile) against numpy.

Each is held to the same tolerances as its eager sibling: teacher-forced forward
and gradients, a free-running 2,000-step trajectory, two non-default specs, and
untouched inputs. Implementations are built once per module, so torch-compile
compiles once per spec.
"""
import numpy as np
import pytest

from harness.checks.arrays import assert_close
from harness.data import parity, xor
from harness.init import initial_params
from harness.truth.tolerances import SAME_MATH, SAME_MATH_F64, TRAJECTORY_F32
from impls.spec import ModelSpec
from tests.conftest import make

pytestmark = pytest.mark.slow  # the edit loop leaves this module out: pytest -m 'not slow'

FAST = ["numpy-fast", "jax-step", "torch-compile"]
DTYPES = ["float64", "float32"]
STEPS = 2_000
RECORD = [0, 1, 10, 100, 1_000, STEPS]
TRAJECTORY = {"float64": SAME_MATH_F64, "float32": TRAJECTORY_F32}
NON_DEFAULT = {
    # relu at the notebook's init hits z == 0 exactly (sample [0, 0], zero biases): relu'(0) = 0 everywhere
    "relu-deep-mean": ModelSpec(layers=(2, 5, 3, 1), activations=("relu", "tanh", "sigmoid"), reduction="mean"),
    "bce": ModelSpec(loss="bce"),
}

_built: dict[tuple[str, ModelSpec], object] = {}
_runs: dict[tuple[str, ModelSpec], object] = {}


def _impl(name: str, spec: ModelSpec):
    """One instance per (name, spec) for the whole module: compiling and jitting happen once."""
    if (name, spec) not in _built:
        _built[name, spec] = make(name, spec)
    return _built[name, spec]


def _train(name: str, spec: ModelSpec, params, data):
    if (name, spec) not in _runs:
        _runs[name, spec] = _impl(name, spec).train(params, *data, STEPS, RECORD)
    return _runs[name, spec]


def _spec(dtype: str, base: ModelSpec = ModelSpec()) -> ModelSpec:
    return ModelSpec(**{**base.__dict__, "dtype": dtype})


def _frozen(arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    for array in arrays.values():
        array.flags.writeable = False  # any in-place write raises
    return arrays


def _assert_teacher_forced(name, spec, params, data, tol, what):
    x, y = data
    impl, ref = _impl(name, spec), _impl("numpy", spec)
    assert_close(impl.forward(params, x), ref.forward(params, x), tol, f"{what} predictions")
    loss, grads = impl.loss_and_grads(params, x, y)
    ref_loss, ref_grads = ref.loss_and_grads(params, x, y)
    assert isinstance(loss, float)
    assert_close(loss, ref_loss, tol, f"{what} loss")
    assert list(grads) == list(ref_grads)
    assert all(g.dtype == np.dtype(spec.dtype) for g in grads.values())
    assert_close(grads, ref_grads, tol, f"{what} gradient")


def _assert_trajectory(name, spec, params, data, tol, what):
    run, ref = _train(name, spec, params, data), _train("numpy", spec, params, data)
    assert sorted(run.checkpoints) == RECORD and run.losses.shape == (STEPS,)
    for step in RECORD:
        assert_close(run.checkpoints[step], ref.checkpoints[step], tol, f"{what} step {step}")
    assert_close(run.params, ref.checkpoints[STEPS], tol, f"{what} final params")
    assert_close(run.losses, ref.losses, tol, f"{what} per-step loss")
    assert run.losses[-1] < run.losses[0]  # it trained


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", FAST)
def test_teacher_forced_matches_numpy(name, dtype, data, notebook_params):
    _assert_teacher_forced(name, _spec(dtype), notebook_params, data, SAME_MATH[dtype], f"{name} {dtype} step 0")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", FAST)
def test_trajectory_matches_numpy(name, dtype, data, notebook_params):
    _assert_trajectory(name, _spec(dtype), notebook_params, data, TRAJECTORY[dtype], f"{name} {dtype}")


@pytest.mark.parametrize("spec_name", NON_DEFAULT)
@pytest.mark.parametrize("name", FAST)
def test_non_default_spec_matches_numpy(name, spec_name, data):
    spec = NON_DEFAULT[spec_name]
    params = initial_params(spec)
    what = f"{name} float64 {spec_name}"
    _assert_teacher_forced(name, spec, params, data, SAME_MATH_F64, f"{what} step 0")
    _assert_trajectory(name, spec, params, data, SAME_MATH_F64, what)


@pytest.mark.parametrize("name", FAST)
def test_loss_k_is_the_loss_at_checkpoint_k(name, data, notebook_params):
    impl = _impl(name, _spec("float64"))
    run = impl.train(notebook_params, *data, 20, record=[0, 7, 19, 20])
    for step in (0, 7, 19):
        loss, _ = impl.loss_and_grads(run.checkpoints[step], *data)
        assert_close(run.losses[step], loss, SAME_MATH_F64, f"{name} float64 step {step} loss")
    assert_close(run.params, run.checkpoints[20], SAME_MATH_F64, f"{name} float64 final params")


@pytest.mark.parametrize("name", FAST)
def test_inputs_are_not_mutated(name, data, notebook_params):
    x, y = data
    originals = {k: v.copy() for k, v in notebook_params.items()}
    params = _frozen(notebook_params)
    arrays = _frozen({"x": x, "y": y})
    impl = _impl(name, _spec("float64"))
    impl.forward(params, arrays["x"])
    impl.loss_and_grads(params, arrays["x"], arrays["y"])
    run = impl.train(params, arrays["x"], arrays["y"], 5, record=[0, 5])
    for k, v in originals.items():
        np.testing.assert_array_equal(params[k], v)
        assert not np.shares_memory(run.params[k], params[k])
        assert not np.shares_memory(run.checkpoints[0][k], params[k])
    fresh_x, fresh_y = xor()
    np.testing.assert_array_equal(arrays["x"], fresh_x)
    np.testing.assert_array_equal(arrays["y"], fresh_y)


def test_numpy_fast_keeps_step_numbering_across_loss_chunks(monkeypatch):
    """Losses are computed a chunk of steps at a time: chunk ends and checkpoints must not shift them."""
    import impls.np_fast

    monkeypatch.setattr(impls.np_fast, "HISTORY_ELEMENTS", 3 * 8 * 2)  # 3 steps per chunk: 8 samples, 2 outputs
    spec = ModelSpec(layers=(3, 4, 2), activations=("sigmoid", "identity"), reduction="mean")
    x, labels = parity(3)
    y = np.hstack([labels, 1 - labels])
    params = initial_params(spec)
    record = [0, 2, 3, 4, 9, 11]
    run = make("numpy-fast", spec).train(params, x, y, 11, record)
    ref = make("numpy", spec).train(params, x, y, 11, record)
    for step in record:
        assert_close(run.checkpoints[step], ref.checkpoints[step], SAME_MATH_F64, f"numpy-fast step {step}")
    assert_close(run.losses, ref.losses, SAME_MATH_F64, "numpy-fast per-step loss")
    assert np.all(np.diff(run.losses) != 0)  # each entry is its own step's loss, not a repeat


def test_a_wrong_derivative_in_numpy_fast_is_caught(monkeypatch, data, notebook_params):
    """Negative control: tanh' written as 1 - out must fail the teacher-forced check."""
    import impls.np_fast_net

    monkeypatch.setattr(impls.np_fast_net, "_square", lambda out, x: [(np.positive, (out, x))])
    spec = _spec("float64")
    _, grads = make("numpy-fast", spec).loss_and_grads(notebook_params, *data)
    _, ref = _impl("numpy", spec).loss_and_grads(notebook_params, *data)
    with pytest.raises(AssertionError, match="gradient w0: relative difference"):
        assert_close(grads, ref, SAME_MATH_F64, "numpy-fast float64 step 0 gradient")
    assert_close({k: grads[k] for k in ("w1", "b1")}, {k: ref[k] for k in ("w1", "b1")}, SAME_MATH_F64,
                 "numpy-fast float64 step 0 gradient")  # only layer 0 goes through tanh'
