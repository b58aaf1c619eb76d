"""The ``python -m harness.compare`` entry point: its output and exit codes."""
import numpy as np
import pytest

from harness import compare, config, notebook
from harness.data import xor
from harness.init import initial_params
from impls.spec import ModelSpec
from tests.conftest import make


def test_prints_a_row_per_implementation_and_dtype(capsys):
    assert compare.main(["--steps", "2100", "--impls", "numpy,numpy-fd,jax"]) == 0
    out = capsys.readouterr().out
    assert out.count("\nnumpy ") == 2 and out.count("\njax ") == 2
    assert "numpy-fd  skipped: numpy-fd runs in float64 only" in out
    assert "Loss: " in out and "@2000" in out


@pytest.mark.parametrize("argv, message", [
    (["--steps", "0"], "--steps must be >= 1, got 0"),
    (["--steps", "ten"], "argument --steps: invalid int value: 'ten'"),
    (["--lr", "-1"], "lr must be a finite number > 0, got -1.0"),
    (["--impls", "numpy,tf"], "unknown implementation 'tf'"),
    (["--dtypes", "float16"], "unknown dtype 'float16'"),
    (["--activations", "tanh,gelu"], "unknown activation 'gelu'"),
    (["--layers", "2,4,4,1"], "need 3 activations"),
    (["--reduction", "max"], "unknown reduction 'max'"),
    (["--seed", "-3"], "--seed must be in 0..2**32-1, got -3"),
    (["--bogus"], "unrecognized arguments: --bogus"),
])
def test_bad_usage_is_one_line_and_exit_2(capsys, argv, message):
    assert compare.main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == f"harness.compare: error: {captured.err.split('error: ', 1)[1]}"
    assert message in captured.err and captured.err.count("\n") == 1


def _line_after(steps: int) -> str:
    impl = make("numpy", ModelSpec())
    x, y = xor()
    run = impl.train(initial_params(ModelSpec()), x, y, steps, record=[steps - 1])
    return notebook.printed_line(run.losses[-1], impl.forward(run.checkpoints[steps - 1], x))


def test_exit_1_when_the_notebook_is_not_reproduced(monkeypatch, capsys):
    """Shrink the notebook run to 30 steps: the real line passes, a wrong one fails."""
    monkeypatch.setattr(config, "STEPS", 30)
    monkeypatch.setattr(notebook, "PRINTED", _line_after(30))
    assert compare.main(["--steps", "30", "--impls", "numpy,jax", "--dtypes", "float64"]) == 0
    monkeypatch.setattr(notebook, "PRINTED", _line_after(31))
    assert compare.main(["--steps", "30", "--impls", "numpy,jax", "--dtypes", "float64"]) == 1
    assert "did not reproduce the notebook's printed line" in capsys.readouterr().out
