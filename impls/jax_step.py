"""``jax-step``: ``jax``'s maths, but a Python loop calling a jitted single step.

Forward, objective, gradient and update are ``JaxGrad``'s own (inherited, not
copied); only ``train`` differs. Each step is one call of a compiled function,
so every step pays JAX's dispatch from Python (flattening the params pytree,
argument checks, launching the executable, wrapping the outputs), which ``jax``
pays once per run by compiling the whole loop as ``lax.scan``. Comparing the two
measures what the fused loop saves; nothing here is faster than ``jax``.
"""
from __future__ import annotations

from typing import Sequence

import jax
import numpy as np

from impls.interface import Params, TrainResult, check_record
from impls.jax_grad import JaxGrad
from impls.spec import ModelSpec


class JaxStep(JaxGrad):
    """``JaxGrad`` with the training loop in Python: ``jit(_step)`` once per update."""

    name = "jax-step"

    exact = True
    relu_grad_at_zero = 0.0  # jax.nn.relu's derivative is defined as 0 at 0

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__(spec)
        self._step_jit = jax.jit(self._step)

    def train(self, params: Params, x: np.ndarray, y: np.ndarray, steps: int, record: Sequence[int] = ()) -> TrainResult:
        wanted = set(check_record(steps, record))
        with self._scope():
            p = {k: self._array(v) for k, v in params.items()}
            x_j, y_j = self._array(x), self._array(y)
            step_fn = self._step_jit
            kept, losses = {}, []
            for step in range(steps):
                if step in wanted:
                    kept[step] = p  # immutable arrays: keeping the reference is the snapshot
                p, loss = step_fn(p, x_j, y_j)
                losses.append(loss)
            if steps in wanted:
                kept[steps] = p
            # Copy to the host only at the end, so the steps are dispatched without waiting.
            checkpoints = {k: {n: np.array(v[n], dtype=self.spec.dtype) for n in self.spec.param_shapes()}
                           for k, v in kept.items()}
            return TrainResult(losses=np.asarray(jax.device_get(losses), dtype=np.float64),
                               params=self._numpy(p), checkpoints=checkpoints)
