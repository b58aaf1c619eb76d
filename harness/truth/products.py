"""Matrix products in extended precision at the speed of float64 BLAS (the Ozaki scheme).

NumPy has no BLAS for ``longdouble``: its matmul runs a plain loop, far slower than
float64 BLAS, and the gap grows with width. The oracle's products go through
``matmul`` here instead:

1. **Split** (error-free): each row of ``a`` (each column of ``b``) is scaled by a
   power of two so its largest entry is below 2^bits, then cut into ``slices``
   integer-valued float64 matrices of at most ``bits`` bits each, the next slice
   carrying the rounding remainder of the one before, times 2^bits:
   a = 2^(e_row - bits) * (A_0 + A_1 2^-bits + A_2 2^-2 bits + ...).
2. **Multiply** (exact): with |entries| <= 2^bits and 2 bits + log2(k) <= 53
   (k the inner dimension), every partial sum of A_i @ B_j is an integer below
   2^53, so float64 BLAS returns it exactly, whatever its summation order,
   blocking or thread count: the result is deterministic. Only the pairs that
   reach above the guard are formed (i + j < ``slices``): one GEMM per column
   slice j, the row slices that pair with it stacked above each other.
3. **Sum**: the first level (i + j = 0) is exact; the levels below it, 2^-bits
   of it and less, are summed in float64 from the smallest up, which rounds
   them by 2^-(53 + bits) of the first level, below the guard. Both are scaled
   back by powers of two (exact) and added in longdouble.

An inner dimension past ``CHUNK_INNER`` is cut into chunks whose products are added in
longdouble: one rounding more per chunk, and 6 float64 products a chunk where the
whole would need 10.

The only rounding is the slices' truncation, below 2^-(bits x slices) of each row's
(column's) largest entry, the float64 sum of the lower levels, and the final sum
in longdouble. The split writes each extended value as two float64s first, which is
exact up to 106 bits: where longdouble is IEEE quad (113 bits), the split keeps
about 106 of them, still far beyond float64.
``SLICE_BITS_MIN`` x ``slices`` >= 64 + ``GUARD_BITS`` keeps that beyond
longdouble's own 64-bit significand. Complex products take four real ones.
A product too thin to pay for its splitting (``worth_splitting``: every product of the
notebook's 2-4-1, the output layer of most networks) stays NumPy's longdouble loop: it
is faster there, and the default run's numbers stay as they were.
"""
from __future__ import annotations

import math
from contextlib import contextmanager
from typing import Iterator

import numpy as np

EXTENDED = np.longdouble  # 80-bit x87 on x86-64 Linux: 11 more bits than float64
SIGNIFICAND_BITS = 53  # float64's: what an exact integer partial sum must fit
EXTENDED_BITS = np.finfo(EXTENDED).nmant + 1  # 64 on x86-64 Linux (x87); 53 where longdouble is a double
GUARD_BITS = 2  # slices reach this many bits past the extended significand, so truncation is below its rounding
RANGE = 2.0 ** 450  # split rows whose largest entry lies within 2^-450..2^450: scaled back in float64, exactly
OZAKI_MIN_RATIO = 4  # split where multiply-adds per entry of the operands and result reach this (bench: scaling)
OZAKI_MIN_MACS = 1 << 18  # and the product has this many multiply-adds: about a millisecond of NumPy's loop
CHUNK_INNER = 512  # the widest inner dimension with 22-bit slices: past it they narrow, and 66 bits take 4, not 3


def slicing(inner: int) -> tuple[int, int]:
    """(bits per slice, slices) for an inner dimension ``inner``: each slice narrow enough that ``inner``
    products of two slices (at most 2^bits each) sum exactly in float64, and enough of them to carry
    ``EXTENDED_BITS`` + ``GUARD_BITS`` bits below each row's largest entry."""
    bits = (SIGNIFICAND_BITS - math.ceil(math.log2(max(inner, 2)))) // 2
    if bits < 8:
        raise ValueError(f"an inner dimension of {inner} is too large to split into exact float64 products")
    return bits, math.ceil((EXTENDED_BITS + GUARD_BITS) / bits)


def products_per_product(inner: int) -> int:
    """float64 products of the operands' size behind one extended product of inner dimension ``inner``: the
    slice pairs (i, j) with i + j < slices (the pairs below them fall under the guard bits), in chunks of at
    most ``CHUNK_INNER`` (``inner_chunks``)."""
    count = slicing(-(-inner // len(inner_chunks(inner))))[1]
    return count * (count + 1) // 2


Sliced = tuple[np.ndarray, np.ndarray]  # (slices stacked on a first axis, the exponent of each row or column)


def _split(a: np.ndarray, axis: int, bits: int, count: int) -> Sliced | None:
    """``count`` float64 integer slices of at most 2^bits, stacked on a new first axis, and the exponent e of each
    row (``axis`` = -1) or column (``axis`` = -2): a = 2^e sum_j slices[j] 2^(-bits j) + rest, where |rest| is
    at most 2^(-bits count) of the row's largest entry. None where a row's scale is outside float64's range.

    The extended values are first written as two float64s, hi + lo exactly (the only extended arithmetic);
    each is cut at the same places in float64, where taking the integer part and the remainder is exact.
    The first slice is at most 2^bits; after it each part's remainder is at most half of 2^bits, so the slice
    the two give together is too."""
    hi = a.astype(np.float64)
    top = np.max(np.abs(hi), axis=axis, keepdims=True)
    if not np.all((top < RANGE) & ((top == 0) | (top > 1 / RANGE))):  # also False for inf and NaN
        return None
    lo = (a - hi).astype(np.float64)
    _, exponent = np.frexp(top)  # |a| < 2^exponent along the axis
    hi, lo = np.ldexp(hi, bits - exponent), np.ldexp(lo, bits - exponent)  # exact: |hi| < 2^bits
    found = np.empty((count, *a.shape), np.float64)
    unit = 2.0 ** bits
    for j in range(count):
        top, bottom = np.rint(hi), np.rint(lo)
        np.add(top, bottom, out=found[j])  # an integer of at most 2^bits: exact
        if j < count - 1:
            hi, lo = (hi - top) * unit, (lo - bottom) * unit  # the remainders, exact
    return found, exponent - bits


def _times(a: Sliced, b: Sliced, bits: int) -> np.ndarray:
    """The extended product of a row-sliced ``a`` and a column-sliced ``b``."""
    (sa, ea), (sb, eb) = a, b
    count, m = len(sa), sa.shape[-2]
    # Slice j of b against the rows of every slice of a that pairs with it above the guard: one GEMM per j
    # gives A_i @ B_j for all i < count - j, each exact (integers below 2^53).
    by_level = [None] * count
    for j in range(count):
        rows = np.concatenate(list(sa[:count - j]), axis=-2) if count - j > 1 else sa[0]
        found = rows @ sb[j]
        for i in range(count - j):
            block = found[..., i * m:(i + 1) * m, :]
            by_level[i + j] = block if by_level[i + j] is None else by_level[i + j] + block
    # The first level is exact; the rest (2^-bits of it and below) is summed in float64, which rounds it by
    # 2^-(53 + bits) of the first level: below the guard. Powers of two scale both back exactly.
    tail = by_level[-1]
    for level in reversed(by_level[1:-1]):
        tail = level + tail * 2.0 ** -bits
    exponents = ea + eb
    return (by_level[0] * np.ldexp(1.0, exponents)).astype(EXTENDED) + \
        (tail * np.ldexp(2.0 ** -bits, exponents)).astype(EXTENDED)


def worth_splitting(m: int, k: int, n: int) -> bool:
    """Whether an (m x k) @ (k x n) product is faster by slices. NumPy's loop costs about m k n multiply-adds,
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


def matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a @ b, exact to extended precision: by slices through float64 BLAS where both are extended (real or complex)
    and the product is large enough to pay (``worth_splitting``), else NumPy's own matmul (small products, other
    dtypes, values outside float64's range). An inner dimension past ``CHUNK_INNER`` is cut into chunks, each
    product by 3 slices, added in extended precision."""
    a, b = np.asarray(a), np.asarray(b)
    if (not SPLIT[0] or {a.dtype, b.dtype} - {np.dtype(EXTENDED), np.dtype(np.clongdouble)} or a.ndim < 2 or b.ndim < 2
            or not worth_splitting(a.shape[-2], a.shape[-1], b.shape[-1])):
        return a @ b
    total = None
    for chunk in inner_chunks(a.shape[-1]):
        found = _by_slices(a[..., chunk], b[..., chunk, :])
        if found is None:
            return a @ b
        total = found if total is None else total + found  # one extended rounding per chunk
    return total


def inner_chunks(inner: int) -> list[slice]:
    """The inner dimension cut into equal chunks of at most ``CHUNK_INNER``: past it every chunk's product
    still takes 3 slices (6 float64 products) where the whole would take 4 (10)."""
    count = -(-inner // CHUNK_INNER)
    size = -(-inner // count)
    return [slice(start, min(start + size, inner)) for start in range(0, inner, size)]


def _by_slices(a: np.ndarray, b: np.ndarray) -> np.ndarray | None:
    """a @ b by slices, or None where a row's or column's scale is out of range."""
    bits, count = slicing(a.shape[-1])
    left = [_split(part, -1, bits, count) for part in _parts(a)]
    right = [_split(part, -2, bits, count) for part in _parts(b)]
    if any(part is None for part in left + right):
        return None
    (ar, ai), (br, bi) = (*left, None)[:2], (*right, None)[:2]
    real = _times(ar, br, bits)
    if ai is None and bi is None:
        return real
    if ai is not None and bi is not None:
        real = real - _times(ai, bi, bits)
    found = real.astype(np.clongdouble)
    found.imag = sum(_times(p, q, bits) for p, q in ((ar, bi), (ai, br)) if p is not None and q is not None)
    return found


def _parts(v: np.ndarray) -> list[np.ndarray]:
    """[real part, imaginary part] of a complex array; [itself] of a real one."""
    return [v.real, v.imag] if np.iscomplexobj(v) else [v]
