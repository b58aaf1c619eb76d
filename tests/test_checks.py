"""The comparison primitives the checks are built on."""
import numpy as np
import pytest

from harness.checks.arrays import error_row, rel_diff
from harness.init import initial_params
from harness.truth.oracle import Oracle
from harness.truth.tolerances import (NOTEBOOK_FD, ROUNDING_FACTOR, SAME_MATH_F32, SAME_MATH_F64, TRAJECTORY_F32,
                                      VS_REFERENCE, allowed, floor, trajectory_allowed)
from impls.spec import ModelSpec


def test_rel_diff_is_normwise_so_zero_biases_do_not_divide_by_zero():
    assert rel_diff(np.array([1e-3, 0.0]), np.array([0.0, 0.0])) == 1e-3
    assert rel_diff(np.array([2.0, 1.0]), np.array([2.0, 1.1])) == pytest.approx(0.1 / 2.0)


def test_ulps_count_units_of_the_runs_dtype():
    ref = np.array([1.0])
    assert error_row(ref + np.finfo(np.float32).eps, ref, "float32")["ulps"] == pytest.approx(1.0)
    assert error_row(ref + np.finfo(np.float64).eps, ref, "float64")["ulps"] == pytest.approx(1.0)


@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_term_scale_is_the_sum_of_per_sample_magnitudes(data, notebook_params, reduction):
    """The truth's scale equals summing each sample's |gradient|, each sample taken alone."""
    oracle = Oracle(ModelSpec(reduction=reduction))
    x, y = data
    scale = oracle.truth(notebook_params, x, y).scale
    per_sample = [oracle.truth(notebook_params, x[i:i + 1], y[i:i + 1]).grads for i in range(len(x))]
    weight = 1.0 if reduction == "sum" else 1.0 / len(x)  # each one-sample mean is over 1/k of the elements
    grads = oracle.truth(notebook_params, x, y).grads
    for name, g in grads.items():
        expected = weight * sum(np.abs(s[name]) for s in per_sample)
        np.testing.assert_allclose(np.asarray(scale[name], float), np.asarray(expected, float), rtol=1e-15)
        assert np.all(scale[name] >= np.abs(g) * (1 - 1e-15)), name  # |sum| <= sum of |terms|


def test_allowed_is_the_floor_or_ten_times_the_oracles_plain_error():
    assert allowed("float64", 1e-16) == SAME_MATH_F64.rel
    assert allowed("float32", 1e-3) == VS_REFERENCE.times * 1e-3
    assert floor("float32") is SAME_MATH_F32 and floor("float64", exact=False) is NOTEBOOK_FD
    np.testing.assert_array_equal(trajectory_allowed("float32", np.array([0.0, 1e-4, 1e-2])),
                                  [TRAJECTORY_F32.rel, ROUNDING_FACTOR.times * 1e-4, ROUNDING_FACTOR.times * 1e-2])


def test_large_parameters_are_probed_along_seeded_random_directions():
    from harness.checks.arrays import fd_directions

    small = fd_directions((2, 4), "w0", 16)
    np.testing.assert_array_equal(small.reshape(8, 8), np.eye(8))  # one coordinate at a time
    large = fd_directions((64, 64), "w1", 16)
    assert large.shape == (16, 64, 64) and set(np.unique(large)) == {-1.0, 1.0}
    np.testing.assert_array_equal(large, fd_directions((64, 64), "w1", 16))  # the same every run


def test_directional_check_catches_a_wrong_gradient_in_a_wide_layer(data):
    """A 2-100-1 net has 200 entries in w0: probed by 16 directions, a tanh' bug still shows."""
    from harness.checks.gradcheck import finite_differences
    from tests.broken import TanhPrimeWrong
    from tests.conftest import make

    spec = ModelSpec(layers=(2, 100, 1))
    params = initial_params(spec)
    x, y = data
    good = finite_differences([make("numpy", spec)], Oracle(spec), {0: params}, x, y)
    bad = finite_differences([TanhPrimeWrong(spec)], Oracle(spec), {0: params}, x, y)
    assert good.passed.all() and good.judged.all()
    assert set(bad[~bad.passed].param) == {"w0", "b0"}
