"""The truth's fused tanh kernel against mpmath at 100 digits: every result within a few longdouble ulps."""
import mpmath
import numpy as np
import pytest

from harness.truth.kernels import FUSED_MIN, HALF_LN2, tanh_and_slope

ULPS = 4  # each result's relative error bound, in longdouble eps: the exponential's ulp and three roundings


def _exact(v: np.longdouble) -> mpmath.mpf:
    mantissa, exponent = np.frexp(v)
    return mpmath.ldexp(int(np.ldexp(mantissa, 64)), int(exponent) - 64)


def _points() -> np.ndarray:
    rng = np.random.default_rng(5)
    switch = HALF_LN2
    edges = [0.0, 1e-300, 1e-12, 0.3, switch, np.nextafter(switch, 0), np.nextafter(switch, 1), 0.5, 1, 5, 20,
             40, 100, 5000]
    return np.concatenate([np.array(edges, np.longdouble), rng.standard_normal(400) * 3,
                           rng.uniform(-1e-3, 1e-3, 100), rng.uniform(-30, 30, 300),
                           switch * (1 + rng.uniform(-1e-3, 1e-3, 100))]).astype(np.longdouble)


def test_tanh_and_its_slope_are_within_a_few_ulps_of_the_exact_values_at_every_magnitude():
    z = _points()
    z = np.concatenate([z, -z])
    out, slope = np.empty_like(z), np.empty_like(z)
    tanh_and_slope(z, out, slope)
    eps = mpmath.mpf(float(np.finfo(np.longdouble).eps))
    with mpmath.workdps(100):
        for v, t, s in zip(z, out, slope):
            exact_t, exact_s = mpmath.tanh(_exact(v)), mpmath.sech(_exact(v)) ** 2
            if exact_t:
                assert abs(_exact(t) - exact_t) <= ULPS * eps * abs(exact_t), (v, t)
            else:
                assert t == 0 and np.signbit(t) == np.signbit(v)
            assert abs(_exact(s) - exact_s) <= ULPS * eps * exact_s, (v, s)


def test_the_edges_saturate_and_propagate_as_tanh_does():
    z = np.array([np.inf, -np.inf, np.nan, -0.0, 20000.0], np.longdouble)
    out, slope = np.empty_like(z), np.empty_like(z)
    with np.errstate(all="raise"):  # nothing overflows or raises
        tanh_and_slope(z, out, slope)
    assert list(out[[0, 1, 4]]) == [1, -1, 1] and list(slope[[0, 1, 4]]) == [0, 0, 0]
    assert np.isnan(out[2]) and np.isnan(slope[2])
    assert out[3] == 0 and np.signbit(out[3]) and slope[3] == 1


@pytest.mark.parametrize("width", [64, 2])  # the fused kernel (64 x 256 entries) and NumPy's calls (2 x 256)
def test_the_truths_trajectory_is_the_same_to_longdouble_rounding_either_way(width, monkeypatch):
    """The loop's fused kernel moves the truth's trajectory only in its last bits: against the loop with NumPy's
    tanh and cosh (FUSED_MIN raised past the layer), 100 steps stay within 1e-16 of each parameter's size."""
    from harness.truth import oracle as oracle_module
    from impls.spec import ModelSpec

    spec = ModelSpec(layers=(8, width, 1), activations=("tanh", "sigmoid"), lr=0.5, reduction="mean")
    rng = np.random.default_rng(3)
    x = rng.integers(0, 2, (256, 8)).astype(float)
    y = x.sum(axis=1, keepdims=True) % 2
    params = {"w0": rng.standard_normal((8, width)), "b0": rng.standard_normal((1, width)) * 0.1,
              "w1": rng.standard_normal((width, 1)), "b1": np.zeros((1, 1))}
    fused = oracle_module.Oracle(spec).train([params], x, y, 100)[0]
    monkeypatch.setattr(oracle_module, "FUSED_MIN", 1 << 60)
    plain = oracle_module.Oracle(spec).train([params], x, y, 100)[0]
    for name, value in fused[1].items():
        assert np.max(np.abs(value - plain[1][name])) <= 1e-16 * np.max(np.abs(value)), name
    assert np.array_equal(fused[1]["w0"], plain[1]["w0"]) == (width * 256 < FUSED_MIN)
