"""The oracle's extended products by exact float64 slices (harness.truth.products), against exact arithmetic."""
from fractions import Fraction

import numpy as np
import pytest

from harness.truth import products
from harness.truth.products import EXTENDED, EXTENDED_BITS, error_factor, lead_bits, matmul, worth_splitting


def exact(value) -> Fraction:
    """An extended value as an exact fraction: hi + lo in float64, each exact."""
    hi = float(value)
    return Fraction(hi) + Fraction(float(EXTENDED(value) - EXTENDED(hi)))


def exact_product(a: np.ndarray, b: np.ndarray, i: int, j: int) -> Fraction:
    return sum((exact(p) * exact(q) for p, q in zip(a[i], b[:, j])), Fraction(0))


def spread(rng, shape, decades: float) -> np.ndarray:
    """Entries over ``decades`` decades, with every one of the extended significand's bits in use."""
    value = rng.standard_normal(shape) * 10.0 ** rng.uniform(-decades / 2, decades / 2, shape)
    return value.astype(EXTENDED) * (1 + rng.standard_normal(shape).astype(EXTENDED) * EXTENDED(2.0 ** -60))


@pytest.mark.parametrize("m,k,n,decades", [(70, 80, 60, 3), (33, 300, 35, 3), (70, 64, 64, 30), (20, 1100, 20, 3)])
def test_split_products_are_within_the_stated_bound_and_the_loop_over_a_few_decades(m, k, n, decades):
    """The guarantee: each entry within ``error_factor`` of its row's and column's largest entries times the
    other side's absolute sums, plus a few roundings of the last sum. Within a few decades a row, as a trained
    network's activations and gradients are, that is as good as NumPy's extended loop or better."""
    rng = np.random.default_rng(m * k)
    a, b = spread(rng, (m, k), decades), np.tanh(spread(rng, (k, n), decades))
    assert worth_splitting(m, k, n)
    found, loop, scale = matmul(a, b), a @ b, np.abs(a) @ np.abs(b)
    chunks = products.inner_chunks(k)  # past CHUNK_INNER: chunks added in extended precision, a rounding each
    cut = Fraction(error_factor(chunks[0].stop))
    assert cut <= Fraction(1, 2 ** (EXTENDED_BITS + products.GUARD_BITS))
    unit = Fraction(1, 2 ** EXTENDED_BITS)
    for i, j in [(0, 0), (m - 1, n - 1), (m // 2, 3), (5, n // 2)]:
        truth, size = exact_product(a, b, i, j), exact(scale[i, j])
        bound = cut * (exact(np.max(np.abs(a[i]))) * exact(np.abs(b[:, j]).sum())
                       + exact(np.abs(a[i]).sum()) * exact(np.max(np.abs(b[:, j])))) + (3 + len(chunks)) * unit * size
        split_error, loop_error = abs(exact(found[i, j]) - truth), abs(exact(loop[i, j]) - truth)
        assert split_error <= bound, (i, j, float(split_error / size))
        if decades <= 3:
            assert split_error <= max(loop_error, (3 + len(chunks)) * unit * size), (i, j, float(split_error),
                                                                                     float(loop_error))


def test_complex_products_take_four_exact_real_ones():
    rng = np.random.default_rng(7)
    a = spread(rng, (3, 64, 70), 3) + 1j * EXTENDED(1e-30) * spread(rng, (3, 64, 70), 3)
    b = np.tanh(spread(rng, (3, 70, 64), 3)).astype(np.clongdouble)
    b.imag = spread(rng, (3, 70, 64), 3) * EXTENDED(1e-30)
    found, loop = matmul(a, b), a @ b
    assert found.dtype == np.clongdouble
    for got, want, size in [(found.real, loop.real, np.abs(a.real) @ np.abs(b.real)),
                            (found.imag, loop.imag, np.abs(a.real) @ np.abs(b.imag) + np.abs(a.imag) @ np.abs(b.real))]:
        assert np.max(np.abs(got - want) / size) < 2.0 ** -58
    real_b = np.tanh(spread(rng, (3, 70, 64), 3))
    mixed = matmul(a, real_b)
    assert mixed.dtype == np.clongdouble
    assert np.max(np.abs(mixed.imag - (a.imag @ real_b)) / (np.abs(a.imag) @ np.abs(real_b))) < 2.0 ** -58


def test_a_rerun_is_identical_whatever_the_memory_layout():
    rng = np.random.default_rng(3)
    a, b = spread(rng, (64, 80), 3), spread(rng, (80, 70), 3)
    first = matmul(a, b)  # compared by value: an extended array's padding bytes are not part of it
    assert np.array_equal(first, matmul(a, b))
    assert np.array_equal(first, matmul(np.asfortranarray(a), np.asfortranarray(b)))
    assert np.array_equal(first, matmul(a[::-1][::-1], b.T.copy().T))


def test_thin_products_other_dtypes_and_values_out_of_range_take_the_plain_loop():
    rng = np.random.default_rng(4)
    thin = spread(rng, (4, 2), 3), spread(rng, (2, 4), 3)
    assert np.array_equal(matmul(*thin), thin[0] @ thin[1])
    a, b = rng.standard_normal((64, 64)), rng.standard_normal((64, 64))
    assert np.array_equal(matmul(a, b), a @ b)  # float64 is NumPy's
    huge = spread(rng, (64, 64), 3)
    huge[3, 4] = EXTENDED(2.0) ** 600  # beyond the rows float64 can scale back
    assert np.array_equal(matmul(huge, huge), huge @ huge)
    huge[3, 4] = np.nan
    assert np.isnan(matmul(huge, huge)[3]).all()


def test_leads_multiply_exactly_and_split_and_rest_rebuild_the_operand():
    for inner in (32, 257, 512, 1025, 4096):
        assert 2 * lead_bits(inner) + np.ceil(np.log2(inner)) <= 53  # every partial sum of lead @ lead: an integer < 2^53
    rng = np.random.default_rng(5)
    a = spread(rng, (50, 300), 30)
    bits = lead_bits(300)
    split = products._split(a, -1, bits)
    assert np.all(np.abs(split.lead) <= 2.0 ** bits) and np.all(split.lead == np.rint(split.lead))
    assert np.all(np.abs(split.rest) <= 0.5 * (1 + 2.0 ** (bits - 52)))
    scale = np.ldexp(EXTENDED(1), split.exponent)
    rebuilt = (split.lead.astype(EXTENDED) + split.rest.astype(EXTENDED)) * scale
    rows = np.max(np.abs(a), axis=-1, keepdims=True)
    assert np.all(np.abs(rebuilt - a) <= rows * EXTENDED(2.0) ** -(bits + 53))  # rest rounded once, by 2^-53 of it
    assert np.all(split.hi == np.ldexp(a.astype(np.float64), -split.exponent))


def test_the_lead_product_is_exact_and_the_rest_is_within_its_unit_roundoffs():
    """The split's two terms apart, against exact arithmetic: lead @ lead has no error at all; the rounded term
    is within error_factor of the sums (checked as a whole above), here at the widest chunk, where it is
    largest."""
    rng = np.random.default_rng(6)
    k = products.CHUNK_INNER
    a, b = spread(rng, (8, k), 3), np.tanh(spread(rng, (k, 8), 3))
    bits = lead_bits(k)
    left, right = products._split(a, -1, bits), products._split(b, -2, bits)
    lead = left.lead @ right.lead
    for i, j in [(0, 0), (7, 7), (3, 5)]:
        assert Fraction(lead[i, j]) == sum((Fraction(p) * Fraction(q) for p, q in zip(left.lead[i], right.lead[:, j])),
                                           Fraction(0))


def test_a_wide_inner_dimension_is_cut_into_chunks_that_keep_the_bound():
    """Past CHUNK_INNER, leads narrow and the bound would pass GUARD_BITS; equal chunks keep it, added in
    extended precision."""
    assert lead_bits(products.CHUNK_INNER) > lead_bits(products.CHUNK_INNER + 1)  # narrower past it
    assert error_factor(products.CHUNK_INNER + 1) > 2.0 ** -(EXTENDED_BITS + products.GUARD_BITS)
    assert [len(products.inner_chunks(k)) for k in (512, 513, 1024, 1025, 4096)] == [1, 2, 2, 3, 8]
    assert products.inner_chunks(1025) == [slice(0, 342), slice(342, 684), slice(684, 1025)]


def test_halves_given_for_an_operand_and_its_transpose_give_the_same_bits():
    rng = np.random.default_rng(8)
    a, b = spread(rng, (2, 70, 80), 3), spread(rng, (2, 80, 64), 3)
    assert np.array_equal(matmul(a, b, (products.halves(a), products.halves(b))), matmul(a, b))
    at = np.swapaxes(a, -1, -2)  # as the truth's backward pass takes a layer's input
    given = tuple(np.swapaxes(h, -1, -2) for h in products.halves(a))
    c = spread(rng, (2, 70, 64), 3)
    assert np.array_equal(matmul(at, c, (given, None)), matmul(at, c))


def test_the_truths_trajectory_is_the_same_whether_its_operands_are_halved_once_or_per_product(monkeypatch):
    """The training loop halves each layer's input and weights once a step for their forward and backward
    products; made per product instead (as every other caller does), every bit is the same."""
    from harness.data import load
    from harness.init import initial_params
    from harness.truth import oracle
    from impls.spec import ModelSpec

    spec = ModelSpec(layers=(8, 64, 64, 1), activations=("tanh", "tanh", "sigmoid"))
    x, y = load("parity:8")
    start = initial_params(spec)
    assert worth_splitting(x.shape[0], 65, 64)
    shared = oracle.Oracle(spec).train([start], x, y, 5, [0, 5])[0]
    monkeypatch.setattr(oracle, "halves", lambda a: None)  # matmul then halves each operand itself
    apart = oracle.Oracle(spec).train([start], x, y, 5, [0, 5])[0]
    assert np.array_equal(shared[0], apart[0])
    assert all(np.array_equal(shared[1][k], apart[1][k]) for k in shared[1])
