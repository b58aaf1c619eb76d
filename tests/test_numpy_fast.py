"""numpy-fast's plan: calls_per_step counts what a step calls, and every branch of the plan agrees with numpy."""
from __future__ import annotations

import numpy as np
import pytest

from harness.checks.arrays import assert_close
from harness.data import parity, xor
from harness.truth.tolerances import SAME_MATH, SAME_MATH_F64, TRAJECTORY_F32
from impls import np_fast, np_fast_net
from impls.spec import ModelSpec
from tests.conftest import make, random_params

# Every branch the plan takes: each activation in a hidden and in the output layer, sel and bce, sum and mean,
# the fused output multiply (sel, sigmoid output) and float32.
SPECS = {
    "notebook": ModelSpec(),
    "notebook-float32": ModelSpec(dtype="float32"),
    "mixed-bce-mean": ModelSpec(layers=(3, 5, 4, 3, 1), activations=("relu", "sigmoid", "identity", "sigmoid"),
                                loss="bce", reduction="mean"),
    "sigmoid-out-mean": ModelSpec(layers=(3, 3, 2), activations=("tanh", "sigmoid"), reduction="mean"),
    "tanh-out-mean": ModelSpec(layers=(3, 4, 2), activations=("tanh", "tanh"), reduction="mean"),
    "relu-out": ModelSpec(layers=(3, 4, 2), activations=("sigmoid", "relu")),
    "identity-out": ModelSpec(layers=(3, 4, 4, 2), activations=("tanh", "relu", "identity")),
}
STEPS = 37
RECORD = [0, 1, 2, 17, 36, STEPS]


def _data(spec: ModelSpec) -> tuple[np.ndarray, np.ndarray]:
    """xor for two inputs, else parity:3; two outputs get the label and its complement."""
    x, labels = xor() if spec.layers[0] == 2 else parity(3)
    return x, labels if spec.layers[-1] == 1 else np.hstack([labels, 1 - labels])


def _counted(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Route every NumPy function and ufunc in the numpy namespace through a counter; returns the counter."""
    count = [0]

    def wrap(f):
        def counted(*args, **kwargs):
            count[0] += 1
            return f(*args, **kwargs)
        return counted
    functions = ("builtin_function_or_method", "_ArrayFunctionDispatcher")
    for name, obj in list(vars(np).items()):
        if isinstance(obj, np.ufunc) or type(obj).__name__ in functions:
            monkeypatch.setattr(np, name, wrap(obj))
    return count


def _calls_in_a_step(spec: ModelSpec, monkeypatch: pytest.MonkeyPatch) -> float:
    """NumPy calls of train(4 steps) minus those of train(1 step), per step: setup and the loss pass cancel."""
    params, (x, y) = random_params(spec), _data(spec)
    impl = make("numpy-fast", spec)
    count = _counted(monkeypatch)
    made = []
    for steps in (1, 4):
        count[0] = 0
        impl.train(params, x, y, steps)
        made.append(count[0])
    return (made[1] - made[0]) / 3


@pytest.mark.parametrize("name", SPECS)
def test_calls_per_step_counts_the_calls_a_step_makes(name, monkeypatch):
    spec = SPECS[name]
    assert np_fast.calls_per_step(spec) == _calls_in_a_step(spec, monkeypatch)


def test_calls_per_step_at_the_notebook_net():
    """2-4-1: 5 dots, tanh, sigmoid's exp, add and divide, one subtract for 1 - h**2 and 1 - out, the output
    error in three calls, d *= 1 - h**2, h**2 itself, and the update."""
    assert np_fast.calls_per_step(ModelSpec()) == 16


def test_a_planted_extra_call_is_counted(monkeypatch):
    """One more call per tanh layer (a harmless copy): both the plan's length and the counted calls grow by it."""
    spec = ModelSpec(layers=(2, 6, 6, 1), activations=("tanh", "tanh", "sigmoid"))
    before = np_fast.calls_per_step(spec)
    monkeypatch.setattr(np_fast_net, "_square", lambda out, x: [(np.multiply, (out, out, x)), (np.positive, (x, x))])
    assert np_fast.calls_per_step(spec) == before + 2
    assert _calls_in_a_step(spec, monkeypatch) == before + 2


@pytest.mark.parametrize("name", SPECS)
def test_every_call_sees_contiguous_arrays(name):
    """A non-contiguous operand would make np.dot copy it, and a ufunc leave its fast loop."""
    spec = SPECS[name]
    x, _ = _data(spec)
    net = np_fast_net.FastNet(spec, random_params(spec), x, spec.lr)
    for f, args in net.step():
        for arg in args:
            if isinstance(arg, np.ndarray):
                assert arg.flags.c_contiguous or arg.flags.f_contiguous, (f, [np.shape(a) for a in args])


@pytest.mark.parametrize("name", SPECS)
def test_agrees_with_numpy_over_a_few_dozen_steps(name):
    spec = SPECS[name]
    params, (x, y) = random_params(spec), _data(spec)
    fast, ref = make("numpy-fast", spec), make("numpy", spec)
    tol = SAME_MATH_F64 if spec.dtype == "float64" else TRAJECTORY_F32
    run, want = fast.train(params, x, y, STEPS, RECORD), ref.train(params, x, y, STEPS, RECORD)
    assert sorted(run.checkpoints) == RECORD
    for step in RECORD:
        assert_close(run.checkpoints[step], want.checkpoints[step], tol, f"{name} step {step}")
    assert_close(run.params, want.params, tol, f"{name} final params")
    assert_close(run.losses, want.losses, tol, f"{name} per-step loss")
    assert np.all(np.diff(run.losses) != 0)  # each entry is its own step's loss
    moved = max(np.abs(run.params[k] - params[k]).max() for k in params)
    assert moved > 10 * tol.rel, moved  # the run went somewhere the tolerance cannot hide
    loss, grads = fast.loss_and_grads(run.checkpoints[17], x, y)
    ref_loss, ref_grads = ref.loss_and_grads(run.checkpoints[17], x, y)
    assert_close(loss, ref_loss, SAME_MATH[spec.dtype], f"{name} loss at step 17")
    assert_close(grads, ref_grads, SAME_MATH[spec.dtype], f"{name} gradient at step 17")
    assert_close(fast.forward(params, x), ref.forward(params, x), SAME_MATH[spec.dtype], f"{name} predictions")


def test_call_floor_is_one_cheap_call():
    floor = np_fast.call_floor_s(repeats=2, calls=2_000)
    assert 0 < floor < 1e-4
