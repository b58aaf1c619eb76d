"""``jax``: ``jax.value_and_grad``; the training loop compiled as ``jit`` over ``lax.scan``.

float64 needs JAX's x64 mode. Rather than flip the process-wide flag
(``jax.config.update("jax_enable_x64", True)``), which would change the
default dtype of every other JAX user in the process, each public call runs
inside the scoped, thread-local context ``with jax.enable_x64(dtype == "float64")``
(with ``jax.default_device`` for ``--device``).
Tracing, compiling and running all happen inside it, and the previous setting
is restored on exit, so code around the harness sees JAX exactly as it left it.

Speed (XLA CPU of jax 0.10.2 on 2 cores; figures in the constants' comments; on a
GPU the same choices run, unmeasured):
- each layer's product takes the form ``matmul_form`` picks: small ones as
  broadcast-multiply-and-sum, which XLA fuses with the bias and activation (and,
  in the gradient jax.grad derives from it, with the backward's products), larger
  ones as ``@`` (a dot: a library call of its own);
- XLA runs a loop body's ops one after another on the calling thread only when
  every buffer they touch is at most 512 bytes (or there are at most 8 ops);
  otherwise it schedules them as a dependency graph on a thread pool, which costs
  far more than ops this small. The per-step losses of a long scan are such a
  buffer, so the steps run in an inner scan of ``LOSS_CHUNK_BYTES`` of losses
  (64 float64 steps), unrolled ``UNROLL`` times, inside a scan over the chunks.

Floating-point order: the broadcast form's sums (over a layer's inputs in the
forward pass; in the backward jax.grad derives from it, over the samples for the
weight gradient and over the layer's outputs for the input gradient) run in XLA's
reduction order, not the dot's, so predictions, gradients and every step can
differ from ``@`` (and from NumPy's BLAS) in the last bits. Both forms stay at the
float64 floor against numpy (tests/test_jax_fused.py; ``harness.compare`` at 2-4-1:
one-step error 6.9e-16 broadcast, 7.1e-16 with ``@``). Chunking and unrolling only
lay out the loop: each step is the same ops in the same order.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from impls.jax_common import JAX_BIAS_SUM, device_of, matmul_setting, scope, segments
from impls.interface import Params, TrainResult, check_record, require_dtype, require_plain_sgd
from impls.spec import RUN_DTYPES, ModelSpec

ACTIVATION = {"relu": jax.nn.relu, "tanh": jnp.tanh, "sigmoid": jax.nn.sigmoid, "identity": lambda z: z}

# A layer's product is broadcast-multiply-and-sum while batch * n_in * n_out is at most this, else ``@``.
# Measured with this loop (us/step, float64 / float32, min of 8 interleaved repeats, batch 4 unless said),
# every layer broadcast against every layer ``@``:
#   2-4-1 0.13 / 0.14 against 0.52 / 0.85; 2-256-1 (products 2,048 and 1,024) 2.0 / 1.0 against 3.1 / 2.1;
#   2-64-1 at batch 16 (2,048 and 1,024) 2.4 / 1.7 against 2.9 / 2.1; 2-16-16-1 0.94 / 0.69 against 3.0 / 3.3;
#   2-1024-1 (8,192 and 4,096) 25 / 159 against 10 / 4.7; 2-256-1 at batch 16: 24 / 95 against 9.1 / 4.3.
# Finer, with one scan over all steps: products up to 3,840 won in both dtypes; at 4,088 float32 already lost
# by 12 %, and from 4,096 both lose (2-512-1: 7.6 / 41 against 5.8 / 3.1), float32 by 13x.
# 2,048 keeps a factor of 2 from that cliff. One case within it goes the other way, by under 10 %: a layer
# with one output at products 1,024 to 2,048 (2-512-1, layers dot then broadcast: 5.3 / 2.9 against all-``@``
# 5.2 / 2.7). Mixed, 2-64-64-1 (512, 16,384, 256) by this rule: 7.2 / 3.9 against all-``@`` 8.0 / 5.0 and
# all-broadcast 27 / 16.
BROADCAST_MAX_PRODUCT = 2048
# Losses kept per inner scan, in bytes: XLA CPU runs a loop body sequentially, without its thread pool,
# only while every buffer in it is at most 512 bytes. Chunked against one scan over all steps, both unrolled
# 4 times (us/step, float64 / float32, batch 4): 2-4-1 0.114 / 0.137 against 0.245 / 0.244; 2-16-1
# 0.190 / 0.130 against 0.327 / 0.259; from 2-64-1 on, where the weights outgrow 512 bytes, the same.
LOSS_CHUNK_BYTES = 512
# Steps per iteration of the inner scan; against 1, 2 and 8 (us/step, float64 / float32, batch 4):
#   2-4-1    0.114 / 0.137 against 0.133 / 0.121, 0.117 / 0.135 and 0.122 / 0.143;
#   2-16-1   0.190 / 0.130 against 0.224 / 0.160, 0.194 / 0.133 and 0.196 / 0.135;
#   2-64-1   0.71 / 0.45 against 0.89 / 0.68, 0.79 / 0.53 and 0.70 / 0.47;
#   2-16-16-1 0.91 / 0.68 against 1.16 / 0.91, 0.98 / 0.75 and 0.91 / 0.70.
# The first call compiles in 0.25 s against 0.17 s unrolled once (2-4-1 float64), 0.30 s unrolled 8 times.
UNROLL = 4


def matmul_form(n_in: int, n_out: int, batch: int) -> str:
    """"broadcast" or "dot": how a layer of ``n_in`` inputs and ``n_out`` outputs over ``batch`` samples
    computes its product (see BROADCAST_MAX_PRODUCT)."""
    return "broadcast" if batch * n_in * n_out <= BROADCAST_MAX_PRODUCT else "dot"


def layer_forms(spec: ModelSpec, batch: int) -> tuple[str, ...]:
    """``matmul_form`` of each of the spec's layers, for reports."""
    return tuple(matmul_form(n, m, batch) for n, m in zip(spec.layers, spec.layers[1:]))


def dense(h: jax.Array, w: jax.Array, b: jax.Array) -> jax.Array:
    """``h @ w + b``, its product in the form ``matmul_form`` picks."""
    if matmul_form(*w.shape, h.shape[0]) == "broadcast":
        return (h[:, :, None] * w[None, :, :]).sum(axis=1) + b
    return h @ w + b


class JaxGrad:
    """Pure functions of a params pytree; the N-step loop is one compiled call of nested ``lax.scan``s."""

    name = "jax"

    exact = True
    relu_grad_at_zero = 0.0  # jax.nn.relu's derivative is defined as 0 at 0

    def __init__(self, spec: ModelSpec) -> None:
        require_dtype(self.name, spec, RUN_DTYPES)
        require_plain_sgd(self.name, spec)
        self.spec = spec
        self.conventions = dict(JAX_BIAS_SUM) if spec.dtype == "float16" else {}  # how jax sums a bias gradient
        self.x64 = spec.dtype == "float64"
        self.device = device_of(self.name, spec.device)
        self.matmul_precision, self.matmul_error = matmul_setting(spec, self.device)
        self._forward_jit = jax.jit(self._forward)
        self._value_and_grad = jax.jit(jax.value_and_grad(self._objective, has_aux=True))
        self._scan = jax.jit(self._run_many, static_argnums=(3, 4))

    @contextmanager
    def _scope(self):
        """x64 as the dtype needs, the spec's device and matmul precision, for this call only."""
        with scope(self.spec, self.device):
            yield

    # The boundary: the only place arrays change type. Compiled functions take NumPy
    # arrays directly: jit's dispatch transfers them faster than jnp.asarray per array.
    def kernel(self, name: str, z: np.ndarray) -> np.ndarray:
        """XLA's element-wise activation, compiled as in the loop, on the spec's device."""
        with self._scope():
            return np.asarray(jax.jit(ACTIVATION[name])(self._array(z)))

    def _array(self, a: np.ndarray) -> np.ndarray:
        return np.asarray(a, dtype=self.spec.dtype)

    def _numpy(self, tree: dict[str, jax.Array]) -> dict[str, np.ndarray]:
        """Copies in the spec's parameter order (JAX sorts dict keys)."""
        return {k: np.array(tree[k]) for k in self.spec.param_shapes()}

    def _layers(self, p: dict[str, jax.Array], x: jax.Array) -> tuple[jax.Array, jax.Array]:
        """(pre-activation, output) of the last layer."""
        h = x
        for i, act in enumerate(self.spec.activations):
            z = dense(h, p[f"w{i}"], p[f"b{i}"])
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

    def _steps(self, p, x, y, length: int):
        return lax.scan(lambda c, _: self._step(c, x, y), p, None, length=length, unroll=UNROLL)

    def _run(self, p, x, y, length: int):
        """``length`` steps as a scan over chunks of LOSS_CHUNK_BYTES of losses, then the steps left over."""
        chunk = LOSS_CHUNK_BYTES // np.dtype(self.spec.dtype).itemsize
        full, rest = divmod(length, chunk)
        losses = []
        if full:
            p, chunks = lax.scan(lambda c, _: self._steps(c, x, y, chunk), p, None, length=full)
            losses.append(chunks.reshape(-1))
        if rest:
            p, tail = self._steps(p, x, y, rest)
            losses.append(tail)
        return p, jnp.concatenate(losses)

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
