"""``numpy-fd``: the notebook's loop as written, every derivative by its central difference.

It exists to measure how far the notebook's own method (h = 1e-8) is from exact
gradients. It is float64 only: in float32, ``z + 1e-8 == z`` once |z| > 0.25
(half an ulp there is 1.5e-8), so the difference quotient is zero, and below
that it is a multiple of ulp / 2h, not a derivative.
"""
from __future__ import annotations

import numpy as np

from impls.interface import Unavailable
from impls.np_notebook import ACTIVATION, LOSS, NotebookNumpy, bce_logits, prime
from impls.spec import ModelSpec


class NumpyFiniteDiff(NotebookNumpy):
    """``prime(loss_fn, y_pred)`` and ``prime(activation, z)``, as in In [191]."""

    name = "numpy-fd"
    exact = False
    relu_grad_at_zero = 0.5  # (relu(h) - relu(-h)) / 2h at z = 0

    def __init__(self, spec: ModelSpec) -> None:
        if spec.dtype != "float64":
            raise Unavailable(
                f"numpy-fd runs in float64 only: its step h = 1e-8 is below float32's"
                f" resolution (eps = {np.finfo(np.float32).eps:.1e}), so its differences are zero"
            )
        super().__init__(spec)

    def output_delta(self, z: np.ndarray, out: np.ndarray, y: np.ndarray) -> np.ndarray:
        if self.spec.loss == "bce":  # the spec's bce is a function of the logits, so it is differenced there:
            return prime(lambda v: bce_logits(v, y), z)  # log(1 - y_hat) overflows once y_hat rounds to 1
        loss = LOSS[self.spec.loss]
        return prime(lambda v: loss(v, y), out) * prime(ACTIVATION[self.spec.activations[-1]], z)

    def activation_grad(self, act: str, z: np.ndarray, out: np.ndarray) -> np.ndarray:
        return prime(ACTIVATION[act], z)
