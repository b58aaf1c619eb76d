"""``numpy``: hand-written backprop with the notebook's analytic derivatives."""
from __future__ import annotations

import numpy as np

from impls.np_mixed import MixedPrecision
from impls.np_notebook import ACTIVATION_PRIME, NotebookNumpy, sel_prime


class NumpyBackprop(MixedPrecision, NotebookNumpy):
    """Loss derivative ``sel_prime``; activation derivatives from the layer's output (the mixed policy by hand,
    ``impls.np_mixed``)."""

    name = "numpy"
    relu_grad_at_zero = 0.0  # relu_prime(out) = 1 * (out > 0): H(0) = 0, as in the w and b derivations

    def output_delta(self, z: np.ndarray, out: np.ndarray, y: np.ndarray) -> np.ndarray:
        if self.spec.loss == "bce":  # d/dz [log(1 + e^z) - y z] = sigmoid(z) - y
            return out - y
        return sel_prime(out, y) * ACTIVATION_PRIME[self.spec.activations[-1]](out)

    def activation_grad(self, act: str, z: np.ndarray, out: np.ndarray) -> np.ndarray:
        return ACTIVATION_PRIME[act](out)
