import numpy as np
import pytest

from harness.data import load, parity, xor


def test_parity_2_is_the_notebooks_xor_row_for_row():
    for a, b in zip(parity(2), xor()):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(xor()[0], [[0, 0], [0, 1], [1, 0], [1, 1]])


def test_parity_n_has_every_pattern_once_with_its_parity():
    x, y = load("parity:4")
    assert x.shape == (16, 4) and len({tuple(row) for row in x}) == 16
    np.testing.assert_array_equal(y.ravel(), x.sum(axis=1) % 2)


@pytest.mark.parametrize("name", ["parity", "parity:1", "parity:x", "parity:17", "mnist"])
def test_unknown_dataset_is_refused_with_the_choices(name):
    with pytest.raises(ValueError, match="choose xor or parity:N"):
        load(name)
