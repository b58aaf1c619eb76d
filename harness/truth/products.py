"""Matrix products in extended precision at the speed of float64 BLAS (an Ozaki-style split).

NumPy has no BLAS for ``longdouble``: its matmul runs a plain loop, far slower than
float64 BLAS, and the gap grows with width. The oracle's products go through
``matmul`` here instead. Each row of ``a`` (each column of ``b``) is scaled by a
power of two so its largest entry is below 2^bits, then written as

    lead + rest (+ a rounding of rest)

where ``lead`` is an integer-valued float64 of at most ``bits`` bits and ``rest``, at
most 1/2, carries every bit below it (rounded once to float64). The product is then
three float64 products of the operands' size, in two terms:

1. **lead_a @ lead_b, exact.** With |entries| <= 2^bits and 2 bits + log2(k) <= 53
   (k the inner dimension), every partial sum is an integer below 2^53, so float64
   BLAS returns it exactly, whatever its summation order.
2. **lead_a @ rest_b + rest_a @ hi_b, rounded** (hi_b: b's float64 part). This term is
   2^-bits of the first, so float64's rounding of it, k + 4 units of 2^-53 at most,
   falls 2^-bits lower: 2^-66 of the rows' and columns' largest entries times the
   other side's sums, at k = 512 (``error_factor``), 2 bits (``GUARD_BITS``) past
   longdouble's own rounding. What hi_b drops of b (2^-53 of it) is of the same order.

Both are scaled back by powers of two (exact) and added in longdouble. The sum of
the rounded term depends on BLAS's summation order: a rerun in the same process
setup gives the same bits (the oracle's workers hold BLAS to one thread), and a
different order moves them by less than the bound.

An inner dimension past ``CHUNK_INNER`` is cut into chunks whose products are added in
longdouble (one rounding more per chunk), so every chunk keeps 22-bit leads and the
bound. The extended values are first written as two float64s, hi + lo, exact up to
106 bits: where longdouble is IEEE quad (113 bits), the bound above still holds, far
beyond float64. Complex products take four real ones.
A product too thin to pay for its splitting (``worth_splitting``: every product of the
notebook's 2-4-1, the output layer of most networks) stays NumPy's longdouble loop: it
is faster there, and the default run's numbers stay as they were.
"""
from __future__ import annotations

import math
from contextlib import contextmanager
from typing import Iterator, NamedTuple

import numpy as np

EXTENDED = np.longdouble  # 80-bit x87 on x86-64 Linux: 11 more bits than float64
SIGNIFICAND_BITS = 53  # float64's: what an exact integer partial sum must fit, and its unit roundoff 2^-53
EXTENDED_BITS = np.finfo(EXTENDED).nmant + 1  # 64 on x86-64 Linux (x87); 53 where longdouble is a double
GUARD_BITS = 2  # the rounded term's bound stays this many bits below the extended significand's unit
RANGE = 2.0 ** 450  # split rows whose largest entry lies within 2^-450..2^450: scaled back in float64, exactly
OZAKI_MIN_RATIO = 4  # split where multiply-adds per entry of the operands and result reach this (bench: scaling)
OZAKI_MIN_MACS = 1 << 18  # and the product has this many multiply-adds: about a millisecond of NumPy's loop
CHUNK_INNER = 512  # the widest inner dimension whose bound (error_factor) stays GUARD_BITS past the significand
FLOAT64_PRODUCTS = 3  # float64 products of the operands' size per extended one, whatever the inner dimension
# (chunks divide it, not the work): lead @ lead, lead @ rest, rest @ hi


def lead_bits(inner: int) -> int:
    """Bits of each row's (column's) integer lead for an inner dimension ``inner``: narrow enough that ``inner``
    products of two leads (at most 2^bits each) sum exactly in float64."""
    bits = (SIGNIFICAND_BITS - math.ceil(math.log2(max(inner, 2)))) // 2
    if bits < 8:
        raise ValueError(f"an inner dimension of {inner} is too large to split into exact float64 products")
    return bits


def error_factor(inner: int) -> float:
    """The bound on one chunk's error before the extended sum: at most this times (the row's largest |a| x the
    column's sum of |b| + the row's sum of |a| x the column's largest |b|). The rounded term is at most 2^-bits of
    those sums; float64 rounds it by at most (inner + 2) units of 2^-53 (the two GEMMs, their sum), its parts
    by one each, and hi_b drops 2^-53 of b."""
    return (inner + 4) * 2.0 ** -(SIGNIFICAND_BITS + lead_bits(inner))


class Split(NamedTuple):
    """One operand scaled row by row (or column by column) by 2^-exponent and written in float64."""

    lead: np.ndarray  # integers of at most 2^bits
    rest: np.ndarray  # the scaled value minus lead, at most 1/2 (+ 2^(bits - 53)), rounded once
    hi: np.ndarray  # the scaled value's float64 part (lead + rest before rest's rounding, to 53 bits)
    exponent: np.ndarray  # value = 2^exponent (lead + rest), per row or column


Halves = tuple[np.ndarray, np.ndarray]  # an extended array as hi + lo, two float64 arrays, exactly


def halves(a: np.ndarray) -> Halves:
    """``a`` (real, extended) as hi + lo in float64, exactly up to 106 bits: the only extended arithmetic of a split.
    An operand used in two products (the truth's trajectory: each layer's input and weights, forward and back)
    is halved once and the halves given to both (``matmul``'s ``given``), transposed or sliced as it is."""
    hi = a.astype(np.float64)
    return hi, (a - hi).astype(np.float64)


def _split(a: np.ndarray, axis: int, bits: int, given: Halves | None = None) -> Split | None:
    """``a`` split along its rows (``axis`` = -1) or columns (-2); None where a row's scale is outside float64's
    range. ``a`` is first written as hi + lo (``halves``, or ``given``); each is scaled by the same power of
    two (exact), lead = rint(hi) and hi - lead are exact, and rest = (hi - lead) + lo is rounded once, by 2^-53
    of itself. Every array is laid out in C order whatever ``a``'s layout, so BLAS takes the same path and
    returns the same bits."""
    hi, lo = given if given is not None else halves(a)
    hi, lo = np.ascontiguousarray(hi), np.ascontiguousarray(lo)
    top = np.max(np.abs(hi), axis=axis, keepdims=True)
    if not np.all((top < RANGE) & ((top == 0) | (top > 1 / RANGE))):  # also False for inf and NaN
        return None
    _, exponent = np.frexp(top)  # |a| < 2^exponent along the axis
    hi, lo = np.ldexp(hi, bits - exponent), np.ldexp(lo, bits - exponent)  # exact: |hi| < 2^bits
    lead = np.rint(hi)
    rest = hi - lead
    rest += lo
    return Split(lead, rest, hi, exponent - bits)


def _times(a: Split, b: Split) -> np.ndarray:
    """The extended product of a row-split ``a`` and a column-split ``b``: the exact term and the rounded one,
    each scaled back by powers of two (exact) and added in extended precision."""
    exact = a.lead @ b.lead
    rounded = a.lead @ b.rest
    rounded += a.rest @ b.hi
    scale = np.ldexp(1.0, a.exponent + b.exponent)
    return (exact * scale).astype(EXTENDED) + (rounded * scale).astype(EXTENDED)


def worth_splitting(m: int, k: int, n: int) -> bool:
    """Whether an (m x k) @ (k x n) product is faster split. NumPy's loop costs about m k n multiply-adds,
    splitting about m k + k n + m n elementwise steps (the BLAS products are cheap beside them) and a fixed
    cost, so it pays where m k n / (m k + k n + m n) reaches ``OZAKI_MIN_RATIO`` and the product is large
    enough to repay the fixed cost (``OZAKI_MIN_MACS``)."""
    elements = m * k + k * n + m * n
    return elements > 0 and m * k * n >= max(OZAKI_MIN_MACS, OZAKI_MIN_RATIO * elements)


SPLIT = [True]  # [False]: every product by NumPy's loop (``loop_only``: the benchmark's "before")


@contextmanager
def loop_only() -> Iterator[None]:
    """Within the block every extended product in this process takes NumPy's loop, as before splitting."""
    SPLIT[0] = False
    try:
        yield
    finally:
        SPLIT[0] = True


def matmul(a: np.ndarray, b: np.ndarray, given: tuple[Halves | None, Halves | None] = (None, None)) -> np.ndarray:
    """a @ b, exact to extended precision: split into float64 BLAS products where both are extended (real or complex)
    and the product is large enough to pay (``worth_splitting``), else NumPy's own matmul (small products, other
    dtypes, values outside float64's range). An inner dimension past ``CHUNK_INNER`` is cut into chunks, whose
    products are added in extended precision. ``given``: a real operand's ``halves``, where already made."""
    a, b = np.asarray(a), np.asarray(b)
    if (not SPLIT[0] or {a.dtype, b.dtype} - {np.dtype(EXTENDED), np.dtype(np.clongdouble)} or a.ndim < 2 or b.ndim < 2
            or not worth_splitting(a.shape[-2], a.shape[-1], b.shape[-1])):
        return a @ b
    total = None
    left, right = given
    for chunk in inner_chunks(a.shape[-1]):
        found = _by_split(a[..., chunk], b[..., chunk, :], None if left is None else [h[..., chunk] for h in left],
                          None if right is None else [h[..., chunk, :] for h in right])
        if found is None:
            return a @ b
        total = found if total is None else total + found  # one extended rounding per chunk
    return total


def inner_chunks(inner: int) -> list[slice]:
    """The inner dimension cut into equal chunks of at most ``CHUNK_INNER``: each keeps 22-bit leads, and with
    them the bound of ``error_factor``."""
    count = -(-inner // CHUNK_INNER)
    size = -(-inner // count)
    return [slice(start, min(start + size, inner)) for start in range(0, inner, size)]


def _by_split(a: np.ndarray, b: np.ndarray, left_given: Halves | None = None, right_given: Halves | None = None
              ) -> np.ndarray | None:
    """a @ b split (a real operand from its halves where given), or None where a row's or column's scale is out of
    range."""
    bits = lead_bits(a.shape[-1])
    a_parts, b_parts = _parts(a), _parts(b)
    left = [_split(part, -1, bits, left_given if len(a_parts) == 1 else None) for part in a_parts]
    right = [_split(part, -2, bits, right_given if len(b_parts) == 1 else None) for part in b_parts]
    if any(part is None for part in left + right):
        return None
    (ar, ai), (br, bi) = (*left, None)[:2], (*right, None)[:2]
    real = _times(ar, br)
    if ai is None and bi is None:
        return real
    if ai is not None and bi is not None:
        real = real - _times(ai, bi)
    found = real.astype(np.clongdouble)
    found.imag = sum(_times(p, q) for p, q in ((ar, bi), (ai, br)) if p is not None and q is not None)
    return found


def _parts(v: np.ndarray) -> list[np.ndarray]:
    """[real part, imaginary part] of a complex array; [itself] of a real one."""
    return [v.real, v.imag] if np.iscomplexobj(v) else [v]
