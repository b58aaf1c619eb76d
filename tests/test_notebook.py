"""The notebook's printed run, reproduced to every printed digit (full 100,000 steps, float64)."""
import pytest

from harness import notebook
from harness.init import InitPreset, initial_params
from impls.spec import ModelSpec
from tests.conftest import make

# The issue's record of a fresh run from np.random.seed(0) (no draws skipped).
FRESH_SEED_0 = "Loss: 0.0149, Predictions: [0.14747989 0.83243868 0.8442907  0.21193564]"


def _printed(name: str, params, data) -> str:
    impl = make(name, ModelSpec())
    run = impl.train(params, *data, notebook.STEPS, record=[notebook.PRINTED_STEP])
    state = run.checkpoints[notebook.PRINTED_STEP]
    return notebook.printed_line(run.losses[notebook.PRINTED_STEP], impl.forward(state, data[0]))


@pytest.mark.parametrize("name", ["numpy", "jax"])
def test_notebook_printed_line_is_reproduced(name, data, notebook_params):
    assert _printed(name, notebook_params, data) == notebook.PRINTED


def test_fresh_seed_gives_the_issues_numbers(data):
    params = initial_params(ModelSpec(), InitPreset(seed=0))
    assert _printed("jax", params, data) == FRESH_SEED_0


def test_printed_line_uses_numpys_eight_digits():
    import numpy as np

    assert notebook.printed_line(0.00334, np.array([[0.1], [0.123456789]])) == (
        "Loss: 0.0033, Predictions: [0.1        0.12345679]")
