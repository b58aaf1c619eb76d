"""``numpy``: hand-written backprop with the notebook's analytic derivatives."""
from __future__ import annotations

import numpy as np

from impls.np_notebook import ACTIVATION_PRIME, NotebookNumpy, sel_prime


class NumpyBackprop(NotebookNumpy):
    """Loss derivative ``sel_prime``; activation derivatives from the layer's output."""

    name = "numpy"

    def loss_grad(self, y_hat: np.ndarray, y: np.ndarray) -> np.ndarray:
        return sel_prime(y_hat, y)

    def activation_grad(self, act: str, z: np.ndarray, out: np.ndarray) -> np.ndarray:
        return ACTIVATION_PRIME[act](out)
