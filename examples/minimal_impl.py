"""A complete implementation written outside the harness: the template for your own.

Compare it with the built-in ones:

    python -m harness.compare --impl examples.minimal_impl:MinimalNumpy --impls numpy,torch

or assert it from your tests (see the docs, "Writing your own implementation"). It needs
only the three methods of ``impls.interface.Implementation`` and a ``name``.
"""
from __future__ import annotations

import numpy as np

from impls.interface import TrainResult, Unavailable
from impls.spec import ModelSpec

ACTIVATIONS = {
    "tanh": (np.tanh, lambda out: 1 - out**2),
    "sigmoid": (lambda z: 1 / (1 + np.exp(-z)), lambda out: out * (1 - out)),
    "relu": (lambda z: np.maximum(z, 0), lambda out: (out > 0).astype(out.dtype)),
    "identity": (lambda z: z, np.ones_like),
}


class MinimalNumpy:
    """Backprop for any dense MLP with the sel loss and plain SGD, in about forty lines."""

    name = "minimal-numpy"  # how the report names it; must differ from the built-in names
    exact = True  # exact gradients (finite-difference ones would say False)
    relu_grad_at_zero = 0.0  # the convention at relu's kink, reported by the harness

    def __init__(self, spec: ModelSpec) -> None:
        if spec.loss != "sel":
            raise Unavailable("minimal-numpy implements the sel loss only")  # a reason, not a crash
        if not spec.plain_sgd:  # its loop is p -= lr g: decline other optimizers, schedules and weight decay
            raise Unavailable(f"minimal-numpy trains by plain SGD only, not {spec.optimizer}")
        self.spec, self.dtype = spec, np.dtype(spec.dtype)

    def _forward(self, p, x):
        outs = [np.asarray(x, self.dtype)]
        for i, act in enumerate(self.spec.activations):
            outs.append(ACTIVATIONS[act][0](outs[-1] @ p[f"w{i}"] + p[f"b{i}"]))
        return outs

    def _grads(self, p, outs, y):
        delta = outs[-1] - y if self.spec.reduction == "sum" else (outs[-1] - y) / y.size
        grads = {}
        for i in reversed(range(self.spec.depth)):
            delta = delta * ACTIVATIONS[self.spec.activations[i]][1](outs[i + 1])
            grads[f"w{i}"], grads[f"b{i}"] = outs[i].T @ delta, delta.sum(axis=0, keepdims=True)
            delta = delta @ p[f"w{i}"].T
        return {k: grads[k] for k in p}

    def forward(self, params, x):
        return self._forward({k: np.asarray(v, self.dtype) for k, v in params.items()}, x)[-1]

    def loss_and_grads(self, params, x, y):
        p, y = {k: np.asarray(v, self.dtype) for k, v in params.items()}, np.asarray(y, self.dtype)
        outs = self._forward(p, x)
        return float(np.mean(0.5 * (y - outs[-1]) ** 2)), self._grads(p, outs, y)

    def train(self, params, x, y, steps, record=()):
        p = {k: np.array(v, self.dtype) for k, v in params.items()}  # our own copies
        y, losses, checkpoints = np.asarray(y, self.dtype), np.empty(steps), {}
        for step in range(steps + 1):
            if step in record:
                checkpoints[step] = {k: v.copy() for k, v in p.items()}
            if step == steps:
                break
            outs = self._forward(p, x)
            losses[step] = np.mean(0.5 * (y - outs[-1]) ** 2)
            for k, g in self._grads(p, outs, y).items():
                p[k] -= self.spec.lr * g
        return TrainResult(losses=losses, params=p, checkpoints=checkpoints)
