"""Deliberately wrong implementations (negative controls): the harness must catch each one."""
from __future__ import annotations

from dataclasses import replace

import numpy as np

from impls.interface import TrainResult
from impls.np_backprop import NumpyBackprop


class TanhPrimeWrong(NumpyBackprop):
    """tanh' written as 1 - h instead of 1 - h**2: a one-step gradient error in layer 0."""

    name = "tanh-prime-wrong"

    def activation_grad(self, act, z, out):
        return 1 - out if act == "tanh" else super().activation_grad(act, z, out)


class BiasGradMean(NumpyBackprop):
    """The output bias gradient averaged over samples instead of summed."""

    name = "bias-grad-mean"

    def _backward(self, p, layers, y):
        grads = super()._backward(p, layers, y)
        grads["b1"] = grads["b1"] / len(y)
        return grads


class LrDoubledInLoop(NumpyBackprop):
    """Correct gradients, but the native loop steps with 2 * lr: a training-loop error."""

    name = "lr-doubled-in-loop"

    def train(self, params, x, y, steps, record=()):
        return NumpyBackprop(replace(self.spec, lr=2 * self.spec.lr)).train(params, x, y, steps, record)


def register(monkeypatch, cls) -> str:
    """Make ``cls`` available to the registry under its name for one test."""
    from impls import registry

    monkeypatch.setitem(registry.REGISTRY, cls.name, ("tests.broken", cls.__name__, "numpy"))
    return cls.name


class SignErrorLayer0(NumpyBackprop):
    """The gradient of the first layer with its sign flipped."""

    name = "sign-error-layer0"

    def _backward(self, p, layers, y):
        grads = super()._backward(p, layers, y)
        return {k: -g if k in ("w0", "b0") else g for k, g in grads.items()}


class TransposedWeightGrad(NumpyBackprop):
    """dw1 transposed: the shape still fits when layer 1 is square (e.g. layers 2,4,4,1)."""

    name = "transposed-weight-grad"

    def _backward(self, p, layers, y):
        grads = super()._backward(p, layers, y)
        return {**grads, "w1": grads["w1"].T.copy()}


class MisShapedWeightGrad(NumpyBackprop):
    """dw0 transposed in a 2-4-1 net: the wrong shape, which validation must name."""

    name = "mis-shaped-weight-grad"

    def _backward(self, p, layers, y):
        grads = super()._backward(p, layers, y)
        return {**grads, "w0": grads["w0"].T.copy()}


class UpdateBeforeGradient(NumpyBackprop):
    """The loop applies the update before computing this step's gradient (a stale, one-step-late gradient)."""

    name = "update-before-gradient"

    def train(self, params, x, y, steps, record=()):
        p, x, y = self._own(params), self._cast(x), self._cast(y)
        grads = {k: np.zeros_like(v) for k, v in p.items()}
        losses, checkpoints = np.empty(steps), {}
        for step in range(steps):
            if step in record:
                checkpoints[step] = {k: v.copy() for k, v in p.items()}
            layers = self._layers(p, x)
            losses[step] = np.mean(self._loss(layers, y))
            for k in p:
                p[k] -= self.spec.lr * grads[k]  # the update, before this step's gradient
            grads = self._backward(p, self._layers(p, x), y)
        if steps in record:
            checkpoints[steps] = {k: v.copy() for k, v in p.items()}
        return TrainResult(losses=losses, params=p, checkpoints=checkpoints)


class MutatesInputs(NumpyBackprop):
    """Updates the caller's arrays in place."""

    name = "mutates-inputs"

    def loss_and_grads(self, params, x, y):
        params["b0"] += 1.0
        return super().loss_and_grads(params, x, y)


class RaisesMidRun(NumpyBackprop):
    """Passes the short validation, then raises during the real run."""

    name = "raises-mid-run"

    def train(self, params, x, y, steps, record=()):
        if steps > 10:
            raise RuntimeError("out of cheese")
        return super().train(params, x, y, steps, record)


class HangsMidRun(NumpyBackprop):
    """Passes the short validation, then never returns."""

    name = "hangs-mid-run"

    def train(self, params, x, y, steps, record=()):
        if steps > 10:
            import time

            while True:
                time.sleep(0.05)
        return super().train(params, x, y, steps, record)


class WrongNames(NumpyBackprop):
    """Forgets the output bias's gradient."""

    name = "wrong-names"

    def loss_and_grads(self, params, x, y):
        loss, grads = super().loss_and_grads(params, x, y)
        return loss, {k: v for k, v in grads.items() if k != "b1"}


class ReturnsNaN(NumpyBackprop):
    """Predictions full of NaN."""

    name = "returns-nan"

    def forward(self, params, x):
        return np.full_like(super().forward(params, x), np.nan)


class WrongDtype(NumpyBackprop):
    """Computes in float32 whatever it is asked for."""

    name = "wrong-dtype"

    def loss_and_grads(self, params, x, y):
        loss, grads = super().loss_and_grads(params, x, y)
        return loss, {k: v.astype(np.float32) for k, v in grads.items()}


class SkipsOneUpdate(NumpyBackprop):
    """Correct gradients, but the loop leaves out its 150th update (a bug the replay cannot repeat from a
    later checkpoint, since the loop counts its own steps)."""

    name = "skips-one-update"

    def train(self, params, x, y, steps, record=()):
        p, x, y = self._own(params), self._cast(x), self._cast(y)
        losses, checkpoints = np.empty(steps), {}
        for step in range(steps):
            if step in record:
                checkpoints[step] = {k: v.copy() for k, v in p.items()}
            layers = self._layers(p, x)
            losses[step] = np.mean(self._loss(layers, y))
            grads = self._backward(p, layers, y)
            if step != 150:
                for k in p:
                    p[k] -= self.spec.lr * grads[k]
        if steps in record:
            checkpoints[steps] = {k: v.copy() for k, v in p.items()}
        return TrainResult(losses=losses, params=p, checkpoints=checkpoints)


class InfAtStep20(NumpyBackprop):
    """Sets every parameter to inf after its 20th update: a blow-up of its own, long before the oracle's."""

    name = "inf-at-step-20"

    def train(self, params, x, y, steps, record=()):
        if steps <= 20:
            return super().train(params, x, y, steps, record)
        head = super().train(params, x, y, 20, [k for k in record if k <= 20])
        inf = {k: np.full_like(v, np.inf) for k, v in head.params.items()}
        tail = super().train(inf, x, y, steps - 20, [k - 20 for k in record if k >= 20])
        return TrainResult(np.concatenate([head.losses, tail.losses]), tail.params,
                           {**head.checkpoints, **{k + 20: v for k, v in tail.checkpoints.items()}})


class UpdateScaled(NumpyBackprop):
    """The loop steps with 1.001 * lr * g: 0.1 % off, far below an ulp of p, but 0.1 % of every update."""

    name = "update-scaled"

    def train(self, params, x, y, steps, record=()):
        return NumpyBackprop(replace(self.spec, lr=1.001 * self.spec.lr)).train(params, x, y, steps, record)


class NudgedStart(NumpyBackprop):
    """Every step right, but the loop starts from weights 1e-9 away from those it was given."""

    name = "nudged-start"

    def train(self, params, x, y, steps, record=()):
        return super().train({k: v * (1 + 1e-9) for k, v in params.items()}, x, y, steps, record)


class DeclinesEverything(NumpyBackprop):
    """Raises Unavailable for every spec: nothing can be compared."""

    name = "declines-everything"

    def __init__(self, spec):
        from impls.interface import Unavailable

        raise Unavailable("declines-everything runs nowhere")


class ReluHalfAtKink(NumpyBackprop):
    """Correct, stating relu'(0) = 0.5 and taking it: a convention, not a failure (a failure under --strict)."""

    name = "relu-half-at-kink"
    relu_grad_at_zero = 0.5

    def activation_grad(self, act, z, out):
        return (z > 0) + 0.5 * (z == 0) if act == "relu" else super().activation_grad(act, z, out)


class ReluClaimsHalfTakesOne(NumpyBackprop):
    """States relu'(0) = 0.5 but takes 1 at the kink: a bug that sits on the kink, which the stated convention
    must not excuse."""

    name = "relu-claims-half-takes-one"
    relu_grad_at_zero = 0.5

    def activation_grad(self, act, z, out):
        return 1.0 * (z >= 0) if act == "relu" else super().activation_grad(act, z, out)
