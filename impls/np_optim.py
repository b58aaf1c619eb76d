"""The optimizers of ``impls.spec`` by hand, in the style of the notebook's ``update_weights``.

Each ``*_update`` moves one parameter array in place from its gradient and its
own state arrays; ``NumpyOptimizer`` keeps that state for one training run and
is created afresh by every ``train``.
"""
from __future__ import annotations

import numpy as np

from impls.spec import ModelSpec


def sgd_update(w: np.ndarray, dw: np.ndarray, lr) -> None:
    w -= lr * dw


def momentum_update(w: np.ndarray, dw: np.ndarray, buf: np.ndarray, lr, momentum, first: bool,
                    nesterov: bool = False) -> None:
    """buf = dw on the first step, momentum * buf + dw after; w -= lr * buf (nesterov: lr * (dw + momentum * buf))."""
    if first:
        buf[...] = dw
    else:
        buf *= momentum
        buf += dw
    w -= lr * (dw + momentum * buf) if nesterov else lr * buf


def adam_update(w: np.ndarray, dw: np.ndarray, m: np.ndarray, v: np.ndarray, v_max: np.ndarray | None, lr,
                beta1, beta2, eps, t: int) -> None:
    """Adam's step t (from 1); with ``v_max`` (AMSGrad) the running max of the raw v is used instead of v."""
    m *= beta1
    m += (1 - beta1) * dw
    v *= beta2
    v += (1 - beta2) * dw * dw
    if v_max is not None:
        np.maximum(v_max, v, out=v_max)
    m_hat = m / (1 - beta1**t)
    v_hat = (v if v_max is None else v_max) / (1 - beta2**t)
    w -= lr * m_hat / (np.sqrt(v_hat) + eps)


class NumpyOptimizer:
    """The spec's optimizer for one run over a dict of parameter arrays (updated in place)."""

    def __init__(self, spec: ModelSpec, dtype: np.dtype) -> None:
        self.spec, self.dtype = spec, dtype
        self.t = 0  # updates done
        self.iteration = 0  # steps of the loop, updates and steps skipped by loss scaling (the schedule's count)
        self.buffers: dict[str, dict[str, np.ndarray]] = {}
        as_dtype = dtype.type
        self.lr0 = as_dtype(spec.lr)
        self.momentum, self.beta1, self.beta2 = as_dtype(spec.momentum), as_dtype(spec.beta1), as_dtype(spec.beta2)
        self.eps, self.weight_decay = as_dtype(spec.eps), as_dtype(spec.weight_decay)
        self.decay_factor = as_dtype(spec.decay_factor)

    def lr(self) -> np.floating:
        if self.spec.schedule == "step":
            return self.lr0 * self.decay_factor ** (self.iteration // self.spec.decay_every)
        return self.lr0

    def skip(self) -> None:
        """A step loss scaling skips: no update, but the schedule moves on."""
        self.iteration += 1

    def update(self, params: dict[str, np.ndarray], grads: dict[str, np.ndarray]) -> None:
        """One step of every parameter."""
        lr, opt = self.lr(), self.spec.optimizer
        for name, w in params.items():
            dw = grads[name]
            if self.weight_decay:
                if opt == "adamw":
                    w -= lr * self.weight_decay * w
                else:
                    dw = dw + self.weight_decay * w
            state = self.buffers.setdefault(name, {})
            if opt == "sgd":
                sgd_update(w, dw, lr)
            elif opt in ("momentum", "nesterov"):
                buf = state.setdefault("buf", np.zeros_like(w))
                momentum_update(w, dw, buf, lr, self.momentum, self.t == 0, opt == "nesterov")
            else:
                m, v = state.setdefault("m", np.zeros_like(w)), state.setdefault("v", np.zeros_like(w))
                v_max = state.setdefault("v_max", np.zeros_like(w)) if opt == "amsgrad" else None
                adam_update(w, dw, m, v, v_max, lr, self.beta1, self.beta2, self.eps, self.t + 1)
        self.t += 1
        self.iteration += 1
