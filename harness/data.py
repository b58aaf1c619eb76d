"""Datasets as float64 arrays (x of shape (k, n), y of shape (k, m)); implementations cast them."""
from __future__ import annotations

import numpy as np


def xor() -> tuple[np.ndarray, np.ndarray]:
    """The notebook's four XOR samples, in its order."""
    x = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=np.float64)
    y = np.array([[0], [1], [1], [0]], dtype=np.float64)
    return x, y
