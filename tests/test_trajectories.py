"""Free-running trajectories: each native training loop, 2,000 steps, against numpy's."""
import numpy as np
import pytest

from harness.checks.arrays import assert_close
from harness.truth.tolerances import NOTEBOOK_FD, SAME_MATH_F64, TRAJECTORY_F32
from impls.spec import ModelSpec
from tests.conftest import EXACT, make

pytestmark = pytest.mark.slow  # the edit loop leaves this module out: pytest -m 'not slow'

STEPS = 2_000
RECORD = [0, 1, 10, 100, 1_000, STEPS]
TOLERANCE = {"float64": SAME_MATH_F64, "float32": TRAJECTORY_F32}

_numpy_runs: dict[str, object] = {}


def _reference(dtype, data, params):
    """numpy's run in ``dtype``, computed once per test session."""
    if dtype not in _numpy_runs:
        _numpy_runs[dtype] = make("numpy", ModelSpec(dtype=dtype)).train(params, *data, STEPS, RECORD)
    return _numpy_runs[dtype]


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("name", EXACT[1:])
def test_trajectory_matches_numpy(name, dtype, data, notebook_params):
    ref = _reference(dtype, data, notebook_params)
    run = make(name, ModelSpec(dtype=dtype)).train(notebook_params, *data, STEPS, RECORD)
    tol = TOLERANCE[dtype]
    for step in RECORD:
        assert_close(run.checkpoints[step], ref.checkpoints[step], tol, f"{name} {dtype} step {step}")
    assert_close(run.losses, ref.losses, tol, f"{name} {dtype} per-step loss")


def test_notebook_fd_trajectory_stays_near_exact(data, notebook_params):
    ref = _reference("float64", data, notebook_params)
    run = make("numpy-fd", ModelSpec()).train(notebook_params, *data, STEPS, RECORD)
    for step in RECORD:
        assert_close(run.checkpoints[step], ref.checkpoints[step], NOTEBOOK_FD, f"numpy-fd float64 step {step}")


@pytest.mark.parametrize("name", ["numpy", "torch", "jax", "numpy-fd"])
def test_loss_k_is_the_loss_at_checkpoint_k(name, data, notebook_params):
    """Step numbering is shared: losses[k] is the stateless loss at the state after k updates."""
    impl = make(name, ModelSpec())
    run = impl.train(notebook_params, *data, 20, record=[0, 7, 19])
    for step in (0, 7, 19):
        loss, _ = impl.loss_and_grads(run.checkpoints[step], *data)
        assert_close(run.losses[step], loss, SAME_MATH_F64, f"{name} float64 step {step} loss")


def test_training_lowers_the_loss(data, notebook_params):
    ref = _reference("float64", data, notebook_params)
    assert ref.losses[-1] < ref.losses[0]
    assert np.all(np.diff(ref.losses[-100:]) < 0)
