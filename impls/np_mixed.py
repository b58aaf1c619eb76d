"""The spec's mixed-precision policy by hand (``impls.spec``, ``--mixed-precision``), around the notebook's passes.

The parameters and the optimizer live in float32; every step rounds the weights to the run's dtype, runs the
notebook's forward and backward passes there, takes the loss and its derivative in float32, and (float16)
scales the loss dynamically, skipping a step whose gradients overflow.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from impls.interface import Params, TrainResult, check_record
from impls.np_notebook import ACTIVATION_PRIME, bce_logits, sel, sel_prime, sigmoid
from impls.np_optim import NumpyOptimizer
from impls.spec import LossScale


class MixedPrecision:
    """A mixin for ``NotebookNumpy``: under ``spec.mixed`` its calls follow the mixed policy; otherwise they are
    the notebook's own."""

    def _scaling(self) -> LossScale | None:
        """The loss scaling this implementation applies: the policy's."""
        return self.spec.loss_scale

    def _master(self, params: Params) -> dict[str, np.ndarray]:
        return {k: np.array(v, dtype=self.spec.param_dtype) for k, v in params.items()}

    def _mixed(self, p: Params, x: np.ndarray, y: np.ndarray, scale) -> tuple[np.floating, dict[str, np.ndarray]]:
        """(the float32 loss, the float32 gradients divided by ``scale``) at the master weights ``p``."""
        wide = np.dtype(self.spec.param_dtype)
        with np.errstate(over="ignore", invalid="ignore"):  # float16 may overflow: the step is then skipped
            return self._passes(p, x, y, scale)

    def _passes(self, p: Params, x: np.ndarray, y: np.ndarray, scale) -> tuple[np.floating, dict[str, np.ndarray]]:
        wide = np.dtype(self.spec.param_dtype)
        low = {k: v.astype(self.dtype) for k, v in p.items()}  # the master weights rounded to the dtype
        layers = self._layers(low, x)
        _, z, out = layers[-1]
        y_wide = y.astype(wide)
        if self.spec.loss == "bce":
            per_element = bce_logits(z.astype(wide), y_wide)
            first = sigmoid(z.astype(wide)) - y_wide  # d loss / d z
        else:
            per_element = sel(out.astype(wide), y_wide)
            first = sel_prime(out.astype(wide), y_wide)  # d loss / d output
        if self.spec.reduction == "mean":
            first = first / wide.type(y.size)
        top = (first * scale).astype(self.dtype)
        if self.spec.loss != "bce":
            top = top * ACTIVATION_PRIME[self.spec.activations[-1]](out)
        grads = self._backward(low, layers, y, top)
        return np.mean(per_element), {k: g.astype(wide) / scale for k, g in grads.items()}

    def loss_and_grads(self, params: Params, x: np.ndarray, y: np.ndarray) -> tuple[float, dict[str, np.ndarray]]:
        if not self.spec.mixed:
            return super().loss_and_grads(params, x, y)
        p, x, y = self._master(params), self._cast(x), self._cast(y)
        scaling = self._scaling()
        scale = np.float32(scaling.initial if scaling else 1)
        loss, grads = self._mixed(p, x, y, scale)
        while scale > 1 and not all(np.all(np.isfinite(g)) for g in grads.values()):  # the backoff a skip makes
            scale = scale * np.float32(scaling.backoff)
            loss, grads = self._mixed(p, x, y, scale)
        return float(loss), grads

    def train(self, params: Params, x: np.ndarray, y: np.ndarray, steps: int, record: Sequence[int] = ()
              ) -> TrainResult:
        if not self.spec.mixed:
            return super().train(params, x, y, steps, record)
        wanted = set(check_record(steps, record))
        p, x, y = self._master(params), self._cast(x), self._cast(y)
        optimizer = NumpyOptimizer(self.spec, np.dtype(self.spec.param_dtype))
        scaling = self._scaling()
        scale, finite_run = np.float32(scaling.initial if scaling else 1), 0
        losses, checkpoints = np.empty(steps), {}
        for step in range(steps):
            if step in wanted:
                checkpoints[step] = {k: v.copy() for k, v in p.items()}
            losses[step], grads = self._mixed(p, x, y, scale)
            if scaling is not None:
                if not all(np.all(np.isfinite(g)) for g in grads.values()):
                    optimizer.skip()
                    scale, finite_run = scale * np.float32(scaling.backoff), 0
                    continue
                finite_run += 1
                if finite_run == scaling.growth_interval:
                    scale, finite_run = scale * np.float32(scaling.growth), 0
            optimizer.update(p, grads)
        if steps in wanted:
            checkpoints[steps] = {k: v.copy() for k, v in p.items()}
        return TrainResult(losses=losses, params=p, checkpoints=checkpoints)
