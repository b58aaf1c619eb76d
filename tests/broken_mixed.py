"""Planted mixed-precision bugs (negative controls): each must fail, blamed on it alone."""
from __future__ import annotations

import numpy as np

from impls.np_backprop import NumpyBackprop
from impls.np_notebook import sel


class MasterWeightsInLowDtype(NumpyBackprop):
    """States the mixed policy but keeps its weights in the low dtype: each update lands on a bfloat16 weight,
    so one below half its ulp vanishes (the notebook's lr 1e-3 moves most weights by less)."""

    name = "master-weights-low"

    def _mixed(self, p, x, y, scale):
        for value in p.values():
            value[...] = value.astype(self.dtype).astype(value.dtype)
        return super()._mixed(p, x, y, scale)


class LossInLowDtype(NumpyBackprop):
    """Reports the loss computed and averaged in the low dtype, where the policy says float32."""

    name = "loss-low"

    def _mixed(self, p, x, y, scale):
        _, grads = super()._mixed(p, x, y, scale)
        out = self._layers({k: v.astype(self.dtype) for k, v in p.items()}, x)[-1][2]
        return np.mean(sel(out, y), dtype=self.dtype), grads


class NoLossScaling(NumpyBackprop):
    """float16 without the policy's loss scaling: it never skips a step and its small gradients underflow."""

    name = "no-loss-scaling"

    def _scaling(self):
        return None


class StatesScaleItSkips(NumpyBackprop):
    """States keras's initial loss scale, 2^15, and starts from the spec's 2^16: a convention stated, not
    followed."""

    name = "states-2-15"
    conventions = {"loss_scale_initial": "2^15"}
