"""``jax``: ``jax.value_and_grad``; the training loop compiled as ``jit`` over ``lax.scan``.

float64 needs JAX's x64 mode. Rather than flip the process-wide flag
(``jax.config.update("jax_enable_x64", True)``), which would change the
default dtype of every other JAX user in the process, each public call runs
inside the scoped, thread-local context ``with jax.enable_x64(dtype == "float64")``.
Tracing, compiling and running all happen inside it, and the previous setting
is restored on exit, so code around the harness sees JAX exactly as it left it.
"""
from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from impls.interface import Params, TrainResult, check_record, require_dtype
from impls.spec import DTYPES, ModelSpec

ACTIVATION = {"relu": jax.nn.relu, "tanh": jnp.tanh, "sigmoid": jax.nn.sigmoid}


class JaxGrad:
    """Pure functions of a params pytree; the N-step loop is one compiled ``lax.scan``."""

    name = "jax"

    exact = True

    def __init__(self, spec: ModelSpec) -> None:
        require_dtype(self.name, spec, DTYPES)
        self.spec = spec
        self.x64 = spec.dtype == "float64"
        self._forward_jit = jax.jit(self._forward)
        self._value_and_grad = jax.jit(jax.value_and_grad(self._objective, has_aux=True))
        self._scan = jax.jit(self._run, static_argnums=3)

    # The boundary: the only place arrays change type. Compiled functions take NumPy
    # arrays directly: jit's dispatch transfers them faster than jnp.asarray per array.
    def _array(self, a: np.ndarray) -> np.ndarray:
        return np.asarray(a, dtype=self.spec.dtype)

    def _numpy(self, tree: dict[str, jax.Array]) -> dict[str, np.ndarray]:
        """Copies in the spec's parameter order (JAX sorts dict keys)."""
        return {k: np.array(tree[k]) for k in self.spec.param_shapes()}

    def _forward(self, p: dict[str, jax.Array], x: jax.Array) -> jax.Array:
        h = x
        for i, act in enumerate(self.spec.activations):
            h = ACTIVATION[act](h @ p[f"w{i}"] + p[f"b{i}"])
        return h

    def _objective(self, p, x, y) -> tuple[jax.Array, jax.Array]:
        """(objective to differentiate, reported mean loss as aux)."""
        per_element = 0.5 * (y - self._forward(p, x)) ** 2
        objective = per_element.sum() if self.spec.reduction == "sum" else per_element.mean()
        return objective, per_element.mean()

    def _step(self, p, x, y):
        (_, reported), grads = jax.value_and_grad(self._objective, has_aux=True)(p, x, y)
        return jax.tree.map(lambda a, g: a - self.spec.lr * g, p, grads), reported

    def _run(self, p, x, y, length: int):
        return lax.scan(lambda c, _: self._step(c, x, y), p, None, length=length)

    def forward(self, params: Params, x: np.ndarray) -> np.ndarray:
        with jax.enable_x64(self.x64):
            p = {k: self._array(v) for k, v in params.items()}
            return np.array(self._forward_jit(p, self._array(x)))

    def loss_and_grads(self, params: Params, x: np.ndarray, y: np.ndarray) -> tuple[float, dict[str, np.ndarray]]:
        with jax.enable_x64(self.x64):
            p = {k: self._array(v) for k, v in params.items()}
            (_, reported), grads = self._value_and_grad(p, self._array(x), self._array(y))
            return float(reported), self._numpy(grads)

    def train(self, params: Params, x: np.ndarray, y: np.ndarray, steps: int, record: Sequence[int] = ()) -> TrainResult:
        """One compiled scan per stretch between checkpoints (each distinct length compiles once)."""
        wanted = check_record(steps, record)
        with jax.enable_x64(self.x64):
            p = {k: self._array(v) for k, v in params.items()}
            x_j, y_j = self._array(x), self._array(y)
            checkpoints, chunks, done = {}, [], 0
            for stop in [k for k in wanted if k < steps] + [steps]:
                if stop > done:
                    p, losses = self._scan(p, x_j, y_j, stop - done)
                    chunks.append(losses)
                    done = stop
                if stop in wanted:
                    checkpoints[stop] = self._numpy(p)
            losses = np.concatenate([np.asarray(c, dtype=np.float64) for c in chunks]) if chunks else np.empty(0)
            return TrainResult(losses=losses, params=self._numpy(p), checkpoints=checkpoints)
