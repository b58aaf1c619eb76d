"""Datasets as float64 arrays (x of shape (k, n), y of shape (k, m)); implementations cast them.

``xor`` is the notebook's; ``parity:N`` is every N-bit pattern (in binary counting
order, so ``parity:2`` is ``xor`` row for row) labelled with its parity.
"""
from __future__ import annotations

import itertools

import numpy as np

MAX_PARITY_BITS = 16  # 65,536 samples: beyond that a full-batch step stops being a quick check


def xor() -> tuple[np.ndarray, np.ndarray]:
    """The notebook's four XOR samples, in its order."""
    return parity(2)


def parity(bits: int) -> tuple[np.ndarray, np.ndarray]:
    """All 2**bits inputs and their parity (1 when an odd number of bits is set)."""
    x = np.array(list(itertools.product((0, 1), repeat=bits)), dtype=np.float64)
    y = (x.sum(axis=1, keepdims=True) % 2).astype(np.float64)
    return x, y


def load(name: str) -> tuple[np.ndarray, np.ndarray]:
    """``xor`` or ``parity:N``; raises ValueError (one line) for anything else."""
    if name == "xor":
        return xor()
    kind, _, bits = name.partition(":")
    if kind == "parity" and bits.isdigit() and 2 <= int(bits) <= MAX_PARITY_BITS:
        return parity(int(bits))
    raise ValueError(f"unknown dataset {name!r}; choose xor or parity:N with N in 2..{MAX_PARITY_BITS}")
