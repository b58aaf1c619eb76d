"""The notebook's NumPy building blocks, and the loop both NumPy implementations share.

The functions keep the notebook's names and formulas. The two NumPy
implementations differ only in how they differentiate the loss and the
activations: ``numpy`` uses the analytic derivatives below, ``numpy-fd`` the
notebook's central difference ``prime``.
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from impls.interface import Params, TrainResult, check_record
from impls.np_optim import NumpyOptimizer
from impls.spec import ModelSpec

FD_STEP = 1e-8  # the notebook's h in prime()


def prime(fn: Callable[[np.ndarray], np.ndarray], x: np.ndarray) -> np.ndarray:
    """The notebook's central difference, h = 1e-8."""
    return (fn(x + FD_STEP) - fn(x - FD_STEP)) / (2 * FD_STEP)


def sel(y_hat: np.ndarray, y: np.ndarray) -> np.ndarray:
    return 0.5 * (y - y_hat) ** 2


def sel_prime(y_hat: np.ndarray, y: np.ndarray) -> np.ndarray:
    return -(y - y_hat)


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-x))


def sigmoid_prime(y: np.ndarray) -> np.ndarray:
    """Derivative in terms of the output y = sigmoid(z)."""
    return y * (1 - y)


def relu(x: np.ndarray) -> np.ndarray:
    return x * (x > 0)


def relu_prime(y: np.ndarray) -> np.ndarray:
    """Derivative in terms of the output: H(z) with H(0) = 0. The notebook's ``1 * (y > 0)`` is an int64 array,
    which NumPy promotes float32 to float64 with: in y's dtype, so a float32 run stays float32."""
    return (y > 0).astype(y.dtype)


def tanh(x: np.ndarray) -> np.ndarray:
    return np.tanh(x)


def tanh_prime(y: np.ndarray) -> np.ndarray:
    """Derivative in terms of the output y = tanh(z)."""
    return 1 - y**2


def identity(x: np.ndarray) -> np.ndarray:
    return x


def identity_prime(y: np.ndarray) -> np.ndarray:
    return np.ones_like(y)


def bce(y_hat: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Binary cross-entropy of probabilities (what a finite difference of the output sees)."""
    return -(y * np.log(y_hat) + (1 - y) * np.log1p(-y_hat))


def bce_logits(z: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Binary cross-entropy of sigmoid(z), stably: log(1 + exp(z)) - y z."""
    return np.logaddexp(0, z) - y * z


def matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a @ b; in a reduced dtype (bfloat16, float16), accumulated in float32 and rounded once, the spec's rule
    (NumPy's own bfloat16 @ returns float32, and its float16 @ has no BLAS)."""
    if a.dtype.itemsize >= 4:
        return a @ b
    return (a.astype(np.float32) @ b.astype(np.float32)).astype(a.dtype)


def column_sum(a: np.ndarray) -> np.ndarray:
    """The sum over samples (axis 0, kept); in a reduced dtype accumulated in float32 and rounded once."""
    if a.dtype.itemsize >= 4:
        return np.sum(a, axis=0, keepdims=True)
    return np.sum(a, axis=0, keepdims=True, dtype=np.float32).astype(a.dtype)


def reported(per_element: np.ndarray) -> np.floating:
    """The mean loss the notebook prints; in a reduced dtype accumulated in float32."""
    return np.mean(per_element, dtype=np.float32 if per_element.dtype.itemsize < 4 else None)


def dense(x: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
    return matmul(x, w) + b


def dense_grads(x: np.ndarray, grad_loss: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    dw = matmul(x.T, grad_loss)
    db = column_sum(grad_loss)
    return dw, db


def update_weights(w: np.ndarray, b: np.ndarray, dw: np.ndarray, db: np.ndarray, lr: float) -> None:
    """In place, as in the notebook; only ever applied to the loop's own copies."""
    w -= lr * dw
    b -= lr * db


ACTIVATION = {"relu": relu, "tanh": tanh, "sigmoid": sigmoid, "identity": identity}
ACTIVATION_PRIME = {"relu": relu_prime, "tanh": tanh_prime, "sigmoid": sigmoid_prime, "identity": identity_prime}
LOSS = {"sel": sel, "bce": bce}

Layer = tuple[np.ndarray, np.ndarray, np.ndarray]  # (input h, pre-activation z, output)


class NotebookNumpy:
    """Forward, backward and SGD exactly as the notebook's In [191] cell, for any depth (and the spec's other
    optimizers by hand, ``impls.np_optim``)."""

    name = "numpy-base"
    exact = True

    def kernel(self, name: str, z: np.ndarray) -> np.ndarray:
        """NumPy's element-wise activation, as the loop computes it."""
        return ACTIVATION[name](np.asarray(z, self.spec.dtype))

    def __init__(self, spec: ModelSpec) -> None:
        self.spec = spec
        self.dtype = np.dtype(spec.dtype)

    # The two hooks the implementations fill in.
    def output_delta(self, z: np.ndarray, out: np.ndarray, y: np.ndarray) -> np.ndarray:
        """d loss / d z of the output layer, element-wise (loss derivative times activation derivative)."""
        raise NotImplementedError

    def activation_grad(self, act: str, z: np.ndarray, out: np.ndarray) -> np.ndarray:
        """d out / d z, element-wise."""
        raise NotImplementedError

    def optimizer(self) -> NumpyOptimizer:
        """The spec's optimizer with fresh state: every train() starts from none."""
        return NumpyOptimizer(self.spec, self.dtype)

    # The boundary: the only place arrays change dtype or get copied.
    def _own(self, params: Params) -> dict[str, np.ndarray]:
        return {k: np.array(v, dtype=self.dtype) for k, v in params.items()}

    def _cast(self, a: np.ndarray) -> np.ndarray:
        return np.asarray(a, dtype=self.dtype)

    def _layers(self, p: Params, x: np.ndarray) -> list[Layer]:
        layers, h = [], x
        for i, act in enumerate(self.spec.activations):
            z = dense(h, p[f"w{i}"], p[f"b{i}"])
            out = ACTIVATION[act](z)
            layers.append((h, z, out))
            h = out
        return layers

    def _loss(self, layers: list[Layer], y: np.ndarray) -> np.ndarray:
        """Per-element loss; bce from the output's pre-activation, which stays finite when y_hat rounds to 0 or 1."""
        _, z, out = layers[-1]
        return bce_logits(z, y) if self.spec.loss == "bce" else sel(out, y)

    def _deltas(self, p: Params, layers: list[Layer], y: np.ndarray, top: np.ndarray | None = None):
        """(layer index, its input h, d objective / d z) from the output layer down, one row per sample
        (``top``: the output layer's d objective / d z, when the caller has it)."""
        _, z, out = layers[-1]
        grad_loss = top
        if grad_loss is None:
            grad_loss = self.output_delta(z, out, y)
            if self.spec.reduction == "mean":
                grad_loss = grad_loss / y.size
        for i in reversed(range(self.spec.depth)):
            h, z, out = layers[i]
            if i < self.spec.depth - 1:
                grad_loss = grad_loss * self.activation_grad(self.spec.activations[i], z, out)
            yield i, h, grad_loss
            if i:
                grad_loss = matmul(grad_loss, p[f"w{i}"].T)

    def _backward(self, p: Params, layers: list[Layer], y: np.ndarray, top: np.ndarray | None = None
                  ) -> dict[str, np.ndarray]:
        grads: dict[str, np.ndarray] = {}
        for i, h, grad_loss in self._deltas(p, layers, y, top):
            grads[f"w{i}"], grads[f"b{i}"] = dense_grads(h, grad_loss)
        return {k: grads[k] for k in p}

    def forward(self, params: Params, x: np.ndarray) -> np.ndarray:
        return self._layers(self._own(params), self._cast(x))[-1][2].copy()

    def loss_and_grads(self, params: Params, x: np.ndarray, y: np.ndarray) -> tuple[float, dict[str, np.ndarray]]:
        p, y = self._own(params), self._cast(y)
        layers = self._layers(p, self._cast(x))
        return float(reported(self._loss(layers, y))), self._backward(p, layers, y)

    def train(self, params: Params, x: np.ndarray, y: np.ndarray, steps: int, record: Sequence[int] = ()) -> TrainResult:
        wanted = set(check_record(steps, record))
        p, x, y = self._own(params), self._cast(x), self._cast(y)
        losses = np.empty(steps)
        checkpoints = {}
        optimizer = self.optimizer()
        for step in range(steps):
            if step in wanted:
                checkpoints[step] = {k: v.copy() for k, v in p.items()}
            layers = self._layers(p, x)
            losses[step] = reported(self._loss(layers, y))
            grads = self._backward(p, layers, y)
            if not self.spec.plain_sgd:
                optimizer.update(p, grads)
                continue
            for i in range(self.spec.depth):
                update_weights(p[f"w{i}"], p[f"b{i}"], grads[f"w{i}"], grads[f"b{i}"], self.spec.lr)
        if steps in wanted:
            checkpoints[steps] = {k: v.copy() for k, v in p.items()}
        return TrainResult(losses=losses, params=p, checkpoints=checkpoints)
