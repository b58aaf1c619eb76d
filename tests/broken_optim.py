"""Deliberately wrong optimizers (negative controls): right gradients, wrong steps. The harness must fail each
and blame the implementation that has it."""
from __future__ import annotations

import numpy as np

from impls.np_backprop import NumpyBackprop
from impls.np_optim import NumpyOptimizer
from impls.torch_nn import TorchNN


class _NoBiasCorrection(NumpyOptimizer):
    def update(self, params, grads):
        for name, w in params.items():
            state = self.buffers.setdefault(name, {"m": np.zeros_like(w), "v": np.zeros_like(w)})
            m, v, g = state["m"], state["v"], grads[name]
            m[...] = self.beta1 * m + (1 - self.beta1) * g
            v[...] = self.beta2 * v + (1 - self.beta2) * g * g
            w -= self.lr() * m / (np.sqrt(v) + self.eps)  # m and v used as they are, never divided by 1 - beta^t
        self.t += 1


class AdamNoBiasCorrection(NumpyBackprop):
    """Adam without its bias correction."""

    name = "adam-no-bias-correction"

    def optimizer(self):
        return _NoBiasCorrection(self.spec, self.dtype)


class _SwappedBetas(NumpyOptimizer):
    def __init__(self, spec, dtype):
        super().__init__(spec, dtype)
        self.beta1, self.beta2 = self.beta2, self.beta1


class AdamBetasSwapped(NumpyBackprop):
    """beta1 and beta2 passed the wrong way round."""

    name = "adam-betas-swapped"

    def optimizer(self):
        return _SwappedBetas(self.spec, self.dtype)


class MomentumNotReset(NumpyBackprop):
    """One optimizer for the implementation's life: its momentum buffer carries over from one train() to the next."""

    name = "momentum-not-reset"

    def optimizer(self):
        if not hasattr(self, "_kept"):
            self._kept = super().optimizer()
        return self._kept


class TorchOptimizerKept(TorchNN):
    """torch.optim as users sometimes write it: one optimizer built once and reused by every train(), so its
    momentum buffers and Adam moments carry over from one run to the next."""

    name = "torch-optimizer-kept"

    def _optimizer(self, model):
        if not hasattr(self, "_kept"):
            self._kept = super()._optimizer(model)
        return self._kept


class ClaimsKerasEps(NumpyBackprop):
    """States keras's eps convention but follows the spec's: a stated convention is checked, never trusted."""

    name = "claims-keras-eps"
    conventions = {"eps": "before bias correction"}


class _LrInFloat32(NumpyOptimizer):
    def __init__(self, spec, dtype):
        super().__init__(spec, dtype)
        self.lr0 = dtype.type(np.float32(spec.lr))  # 1e-3 becomes 1.0000000474974513e-3


class LrInFloat32(NumpyBackprop):
    """Keeps lr in float32 whatever the run's dtype (as keras does with a float32 floatx) and says so."""

    name = "lr-in-float32"
    conventions = {"lr_dtype": "float32"}

    def optimizer(self):
        return _LrInFloat32(self.spec, self.dtype)


class LrInFloat32Unstated(LrInFloat32):
    """The same loop, without stating it: a bug like any other."""

    name = "lr-in-float32-unstated"
    conventions = {}


class _CoupledDecay(NumpyOptimizer):
    def update(self, params, grads):
        grads = {name: grads[name] + self.weight_decay * w for name, w in params.items()}  # L2 in the gradient
        decay, self.weight_decay = self.weight_decay, self.weight_decay * 0  # and no decoupled decay
        try:
            super().update(params, grads)
        finally:
            self.weight_decay = decay


class AdamWCoupled(NumpyBackprop):
    """AdamW with its weight decay folded into the gradient (Adam with L2): the decay then passes through
    Adam's normalisation."""

    name = "adamw-coupled"

    def optimizer(self):
        return _CoupledDecay(self.spec, self.dtype)


class StatesEpsBeforeFollowsSpec(NumpyBackprop):
    """States keras's eps before bias correction, but adds it after, as the spec does: a convention stated and
    not followed, which the report would otherwise print as fact."""

    name = "states-eps-before"
    conventions = {"eps": "before bias correction"}
