"""Implementations that are right on the notebook's XOR net and wrong elsewhere: the fuzzer must find each and
shrink it to the configuration that names its trigger."""
from __future__ import annotations

import numpy as np

from impls.np_backprop import NumpyBackprop
from impls.np_optim import NumpyOptimizer

WIDE = 8  # WideLayerBug is wrong in layers wider than this


class WideLayerBug(NumpyBackprop):
    """The weight gradient of a layer wider than 8 units is 1 % too large."""

    name = "wide-layer-bug"

    def _backward(self, p, layers, y):
        grads = super()._backward(p, layers, y)
        return {k: g * g.dtype.type(1.01) if k.startswith("w") and g.shape[1] > WIDE else g for k, g in grads.items()}


class ReluBug(NumpyBackprop):
    """relu's derivative taken as 1 everywhere (the output of relu is never negative, so out >= 0 is always true)."""

    name = "relu-bug"

    def activation_grad(self, act, z, out):
        return np.ones_like(out) * (out >= 0) if act == "relu" else super().activation_grad(act, z, out)


class Float32Bug(NumpyBackprop):
    """In float32 the output layer's bias gradient is 1 % too small."""

    name = "float32-bug"

    def _backward(self, p, layers, y):
        grads = super()._backward(p, layers, y)
        if self.spec.dtype == "float32":
            last = f"b{self.spec.depth - 1}"
            grads[last] = grads[last] * np.float32(0.99)
        return grads


class MeanBug(NumpyBackprop):
    """With reduction mean, the output layer's bias gradient is left as that of the sum."""

    name = "mean-bug"

    def _backward(self, p, layers, y):
        grads = super()._backward(p, layers, y)
        if self.spec.reduction == "mean":
            last = f"b{self.spec.depth - 1}"
            grads[last] = grads[last] * y.size
        return grads


class _LateSchedule(NumpyOptimizer):
    """The staircase schedule one step late: step k * decay_every still takes the undecayed rate."""

    def lr(self) -> np.floating:
        if self.spec.schedule == "step":
            return self.lr0 * self.decay_factor ** (max(self.t - 1, 0) // self.spec.decay_every)
        return self.lr0


class TwoBugs(Float32Bug):
    """Float32Bug's gradient, and a schedule one step late: two bugs of one implementation, two reproducers."""

    name = "two-bugs"

    def optimizer(self) -> NumpyOptimizer:
        return _LateSchedule(self.spec, self.dtype)
