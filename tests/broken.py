"""Deliberately wrong implementations (negative controls): the harness must catch each one."""
from __future__ import annotations

from dataclasses import replace

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
