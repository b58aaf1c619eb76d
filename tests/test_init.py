"""The shared Glorot weights: the notebook's draws, from the notebook's RNG stream."""
import numpy as np

from harness.init import NOTEBOOK, InitPreset, glorot, initial_params
from impls.spec import ModelSpec


def _notebook_cells(preset_runs: int) -> dict[str, np.ndarray]:
    """Replay the notebook on the global RNG: seed(0), then the training cell's draws, run after run."""
    saved = np.random.get_state()
    try:
        np.random.seed(0)
        for _ in range(preset_runs + 1):
            w0 = glorot((2, 4), np.random)
            w1 = glorot((4, 1), np.random)
        return {"w0": w0, "w1": w1}
    finally:
        np.random.set_state(saved)


def test_notebook_preset_is_the_55th_run_of_the_training_cell():
    params = initial_params(ModelSpec(), NOTEBOOK)
    replayed = _notebook_cells(preset_runs=54)
    np.testing.assert_array_equal(params["w0"], replayed["w0"])
    np.testing.assert_array_equal(params["w1"], replayed["w1"])


def test_fresh_seed_is_the_first_run_after_seeding():
    params = initial_params(ModelSpec(), InitPreset(seed=0))
    replayed = _notebook_cells(preset_runs=0)
    np.testing.assert_array_equal(params["w0"], replayed["w0"])
    np.testing.assert_array_equal(params["w1"], replayed["w1"])


def test_biases_are_zero_and_everything_float64():
    params = initial_params(ModelSpec(layers=(2, 5, 3, 1), activations=("relu", "tanh", "sigmoid")))
    assert list(params) == ["w0", "b0", "w1", "b1", "w2", "b2"]
    assert all(p.dtype == np.float64 for p in params.values())
    assert all(not p.any() for name, p in params.items() if name.startswith("b"))


def test_glorot_stays_within_its_limit():
    w = glorot((5, 7), np.random.RandomState(1))
    limit = np.sqrt(6 / 12)
    assert w.shape == (5, 7) and np.all(np.abs(w) <= limit) and np.abs(w).max() > 0.9 * limit


def test_global_rng_is_left_alone():
    before = np.random.get_state()[1].copy()
    initial_params(ModelSpec())
    np.testing.assert_array_equal(np.random.get_state()[1], before)
