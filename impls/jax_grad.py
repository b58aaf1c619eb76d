"""``jax``: ``jax.value_and_grad``; the training loop compiled as ``jit`` over ``lax.scan``.

float64 needs JAX's x64 mode. Rather than flip the process-wide flag
(``jax.config.update("jax_enable_x64", True)``), which would change the
default dtype of every other JAX user in the process, each public call runs
inside the scoped, thread-local context ``with jax.enable_x64(dtype == "float64")``
(with ``jax.default_device`` for ``--device``).
Tracing, compiling and running all happen inside it, and the previous setting
is restored on exit, so code around the harness sees JAX exactly as it left it.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from impls.jax_common import device_of, segments
from impls.interface import Params, TrainResult, check_record, require_dtype, require_plain_sgd
from impls.spec import DTYPES, ModelSpec

ACTIVATION = {"relu": jax.nn.relu, "tanh": jnp.tanh, "sigmoid": jax.nn.sigmoid, "identity": lambda z: z}


class JaxGrad:
    """Pure functions of a params pytree; the N-step loop is one compiled ``lax.scan``."""

    name = "jax"

    exact = True
    relu_grad_at_zero = 0.0  # jax.nn.relu's derivative is defined as 0 at 0

    def __init__(self, spec: ModelSpec) -> None:
        require_dtype(self.name, spec, DTYPES)
        require_plain_sgd(self.name, spec)
        self.spec = spec
        self.x64 = spec.dtype == "float64"
        self.device = device_of(self.name, spec.device)
        self._forward_jit = jax.jit(self._forward)
        self._value_and_grad = jax.jit(jax.value_and_grad(self._objective, has_aux=True))
        self._scan = jax.jit(self._run_many, static_argnums=(3, 4))

    @contextmanager
    def _scope(self):
        """x64 as the dtype needs, and the spec's device, for this call only (both thread-local)."""
        with jax.enable_x64(self.x64), jax.default_device(self.device):
            yield

    # The boundary: the only place arrays change type. Compiled functions take NumPy
    # arrays directly: jit's dispatch transfers them faster than jnp.asarray per array.
    def _array(self, a: np.ndarray) -> np.ndarray:
        return np.asarray(a, dtype=self.spec.dtype)

    def _numpy(self, tree: dict[str, jax.Array]) -> dict[str, np.ndarray]:
        """Copies in the spec's parameter order (JAX sorts dict keys)."""
        return {k: np.array(tree[k]) for k in self.spec.param_shapes()}

    def _layers(self, p: dict[str, jax.Array], x: jax.Array) -> tuple[jax.Array, jax.Array]:
        """(pre-activation, output) of the last layer."""
        h = x
        for i, act in enumerate(self.spec.activations):
            z = h @ p[f"w{i}"] + p[f"b{i}"]
            h = ACTIVATION[act](z)
        return z, h

    def _forward(self, p: dict[str, jax.Array], x: jax.Array) -> jax.Array:
        return self._layers(p, x)[1]

    def _objective(self, p, x, y) -> tuple[jax.Array, jax.Array]:
        """(objective to differentiate, reported mean loss as aux)."""
        z, out = self._layers(p, x)
        if self.spec.loss == "bce":
            per_element = jax.nn.softplus(z) - y * z  # softplus is logaddexp(z, 0): stable
        else:
            per_element = 0.5 * (y - out) ** 2
        objective = per_element.sum() if self.spec.reduction == "sum" else per_element.mean()
        return objective, per_element.mean()

    def _step(self, p, x, y):
        (_, reported), grads = jax.value_and_grad(self._objective, has_aux=True)(p, x, y)
        return jax.tree.map(lambda a, g: a - self.spec.lr * g, p, grads), reported

    def _run(self, p, x, y, length: int):
        return lax.scan(lambda c, _: self._step(c, x, y), p, None, length=length)

    def _run_many(self, p, x, y, length: int, count: int):
        """``count`` segments of ``length`` steps in one compiled call; params kept at each segment's end."""
        def segment(c, _):
            c, losses = self._run(c, x, y, length)
            return c, (c, losses)
        return lax.scan(segment, p, None, length=count)

    def forward(self, params: Params, x: np.ndarray) -> np.ndarray:
        with self._scope():
            p = {k: self._array(v) for k, v in params.items()}
            return np.array(self._forward_jit(p, self._array(x)))

    def loss_and_grads(self, params: Params, x: np.ndarray, y: np.ndarray) -> tuple[float, dict[str, np.ndarray]]:
        with self._scope():
            p = {k: self._array(v) for k, v in params.items()}
            (_, reported), grads = self._value_and_grad(p, self._array(x), self._array(y))
            return float(reported), self._numpy(grads)

    def train(self, params: Params, x: np.ndarray, y: np.ndarray, steps: int, record: Sequence[int] = ()) -> TrainResult:
        """Checkpoints split the run into segments; equal consecutive segments run as one compiled call."""
        wanted = check_record(steps, record)
        with self._scope():
            p = {k: self._array(v) for k, v in params.items()}
            x_j, y_j = self._array(x), self._array(y)
            stored, chunks = [], []
            for start, length, count in segments(wanted, steps):
                p, (states, losses) = self._scan(p, x_j, y_j, length, count)
                stored.append((start, length, count, states))
                chunks.append(losses)
            # Copy to the host only at the end, so the segments are dispatched without waiting.
            checkpoints = {0: {k: np.array(v, dtype=self.spec.dtype) for k, v in params.items()}} if 0 in wanted else {}
            for start, length, count, states in stored:
                host = self._numpy(states)
                for j in range(count):
                    if start + (j + 1) * length in wanted:
                        checkpoints[start + (j + 1) * length] = {k: v[j].copy() for k, v in host.items()}
            losses = np.concatenate([np.asarray(c, dtype=np.float64).ravel() for c in chunks])
            return TrainResult(losses=losses, params=self._numpy(p), checkpoints=checkpoints)
