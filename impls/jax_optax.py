"""``jax-optax``: JAX as its users write it with optax: optax's losses, optimizers and schedule.

No flax: the model is a plain pytree, the harness's own dict of arrays (``w0, b0, w1, b1, ...``),
and the forward pass a pure ``jnp`` function of it, which the issue allows. The loss is optax's
(``sigmoid_binary_cross_entropy`` from the logits for bce, ``l2_loss`` = 0.5 (p - t)^2 for sel),
summed or averaged per ``spec.reduction``; the optimizer is optax's own (``sgd`` with or without
momentum / nesterov, ``adam``, ``amsgrad``, ``adamw``), coupled weight decay is
``optax.chain(optax.add_decayed_weights(wd), optimizer)`` (``g += wd p`` first: the spec's), and the
step schedule ``optax.exponential_decay(..., staircase=True)``. The loop is ``jit`` over ``lax.scan``
of ``optimizer.update`` and ``optax.apply_updates``, compiled once per (steps, checkpoint) shape.

float64 runs inside the scoped ``with jax.enable_x64(True)`` (as ``impls/jax_grad.py`` explains), so
optax's hyperparameters, Python floats, compute in the run's dtype. The schedule's are given as NumPy
scalars of the run's dtype: with Python floats ``exponential_decay`` computes the lr in float32 even in a
float64 run (its ``count / transition_steps`` is int32 / int, which JAX makes float32).
"""
from __future__ import annotations

import inspect
from contextlib import contextmanager
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax import lax

from impls.jax_common import JAX_BIAS_SUM, device_of, matmul_setting, scope, segments
from impls.interface import Params, TrainResult, check_record, require_dtype
from impls.spec import RUN_DTYPES, ModelSpec

ACTIVATION = {"relu": jax.nn.relu, "tanh": jnp.tanh, "sigmoid": jax.nn.sigmoid, "identity": lambda z: z}
# Where each optimizer's own defaults live (optax has no default learning rate).
DEFAULTS_FROM = {"sgd": optax.sgd, "momentum": optax.sgd, "nesterov": optax.sgd,
                 "adam": optax.adam, "amsgrad": optax.amsgrad, "adamw": optax.adamw}
DEFAULT_NAMES = {"b1": "beta1", "b2": "beta2", "eps": "eps", "weight_decay": "weight_decay"}


def framework_defaults_of(optimizer: str) -> dict[str, float]:
    """optax's own defaults for ``optimizer``, read from its signature (weight decay, where the optimizer
    has none, from ``optax.add_decayed_weights``)."""
    found = {ours: float(p.default) for name, p in inspect.signature(DEFAULTS_FROM[optimizer]).parameters.items()
             if (ours := DEFAULT_NAMES.get(name)) and isinstance(p.default, (int, float))}
    if "weight_decay" not in found:
        found["weight_decay"] = float(inspect.signature(optax.add_decayed_weights).parameters["weight_decay"].default)
    return found


class JaxOptax:
    """A pure-function MLP on a params pytree, trained by an optax ``GradientTransformation``."""

    name = "jax-optax"
    exact = True
    relu_grad_at_zero = 0.0  # jax.nn.relu's derivative is defined as 0 at 0

    def __init__(self, spec: ModelSpec) -> None:
        require_dtype(self.name, spec, RUN_DTYPES, mixed=True)
        self.spec = spec
        # mixed: explicit casts, as users write the policy by hand (or with jmp): float32 params cast to the low
        # dtype inside the loss, the output widened to float32 for optax's loss, so jax.grad's transposes give
        # float32 gradients; fp16 scales the loss dynamically by hand (the spec's 2^16, x2 every 2,000 finite
        # steps, x0.5 and the update and optimizer state kept on an overflow)
        self.low = jnp.dtype(spec.dtype) if spec.mixed else None
        self.x64 = spec.dtype == "float64"
        self.device = device_of(self.name, spec.device)
        self.matmul_precision, self.matmul_error = matmul_setting(spec, self.device)
        # optax.amsgrad keeps nu_max = max(nu_max, bias-corrected nu) (optax/_src/transform.py,
        # scale_by_amsgrad: bias_correction_nu=True, then jax.tree.map(jnp.maximum, state.nu_max, nu_eff)).
        self.conventions: dict[str, str] = (
            {"amsgrad_max": "over bias-corrected v"} if spec.optimizer == "amsgrad" else {})
        if spec.loss_scale is not None:  # a skipped step keeps the optimizer's state, and with it optax's count
            self.conventions["schedule_count"] = "steps taken"
        self.conventions.update(JAX_BIAS_SUM if spec.dtype == "float16" else {})
        self.framework_defaults = framework_defaults_of(spec.optimizer)
        self.optimizer = self._optimizer()
        self._forward_jit = jax.jit(self._forward)
        self._value_and_grad = jax.jit(jax.value_and_grad(self._scaled_objective, has_aux=True))
        self._init = jax.jit(self.optimizer.init)
        self._scan = jax.jit(self._run_many, static_argnums=(5, 6))

    def _optimizer(self) -> optax.GradientTransformation:
        s, typed = self.spec, np.dtype(self.spec.param_dtype).type  # the optimizer holds them in float32 if mixed
        # The schedule's values as scalars of the run's dtype: from Python floats exponential_decay computes
        # in float32 even under x64 (its count / transition_steps is int32 / int -> float32), lr_dtype float32.
        lr = (optax.exponential_decay(init_value=typed(s.lr), transition_steps=s.decay_every,
                                      decay_rate=typed(s.decay_factor), staircase=True)
              if s.schedule == "step" else s.lr)
        if s.optimizer == "sgd":
            opt = optax.sgd(lr)
        elif s.optimizer in ("momentum", "nesterov"):
            opt = optax.sgd(lr, momentum=s.momentum, nesterov=s.optimizer == "nesterov")
        elif s.optimizer == "adam":
            opt = optax.adam(lr, b1=s.beta1, b2=s.beta2, eps=s.eps)
        elif s.optimizer == "amsgrad":
            opt = optax.amsgrad(lr, b1=s.beta1, b2=s.beta2, eps=s.eps)
        else:
            return optax.adamw(lr, b1=s.beta1, b2=s.beta2, eps=s.eps, weight_decay=s.weight_decay)
        return optax.chain(optax.add_decayed_weights(s.weight_decay), opt) if s.weight_decay else opt

    @contextmanager
    def _scope(self):
        """x64 as the dtype needs, the spec's device and matmul precision, for this call only."""
        with scope(self.spec, self.device):
            yield

    def kernel(self, name: str, z: np.ndarray) -> np.ndarray:
        """XLA's element-wise activation, compiled as in the loop, on the spec's device."""
        with self._scope():
            return np.asarray(jax.jit(ACTIVATION[name])(np.asarray(z, self.spec.dtype)))

    def _array(self, a: np.ndarray) -> np.ndarray:
        """Parameters, inputs and targets as the loop takes them (under the mixed policy, float32)."""
        return np.asarray(a, dtype=self.spec.param_dtype)

    def _numpy(self, tree: dict[str, jax.Array]) -> dict[str, np.ndarray]:
        """Copies in the spec's parameter order (JAX sorts dict keys)."""
        return {k: np.array(tree[k]) for k in self.spec.param_shapes()}

    def _layers(self, p: dict[str, jax.Array], x: jax.Array) -> tuple[jax.Array, jax.Array]:
        """(pre-activation, output) of the last layer."""
        h = x
        if self.low is not None:
            p, h = jax.tree.map(lambda a: a.astype(self.low), p), x.astype(self.low)
        for i, act in enumerate(self.spec.activations):
            z = h @ p[f"w{i}"] + p[f"b{i}"]
            h = ACTIVATION[act](z)
        return z, h

    def _forward(self, p: dict[str, jax.Array], x: jax.Array) -> jax.Array:
        return self._layers(p, x)[1]

    def _objective(self, p, x, y) -> tuple[jax.Array, jax.Array]:
        """(objective to differentiate, reported mean loss as aux)."""
        z, out = self._layers(p, x)
        if self.low is not None:  # the loss in float32
            z, out = z.astype(jnp.float32), out.astype(jnp.float32)
        if self.spec.loss == "bce":
            per_element = optax.sigmoid_binary_cross_entropy(z, y)
        else:
            per_element = optax.l2_loss(out, y)
        objective = per_element.sum() if self.spec.reduction == "sum" else per_element.mean()
        return objective, per_element.mean()

    def _scaled_objective(self, p, x, y, scale) -> tuple[jax.Array, jax.Array]:
        """The objective times the loss scale (1 where nothing scales), with the reported loss."""
        objective, reported = self._objective(p, x, y)
        return objective * scale, reported

    def _step(self, carry, x, y):
        p, state, (scale, run) = carry
        scaling = self.spec.loss_scale
        if scaling is None:
            (_, reported), grads = jax.value_and_grad(self._objective, has_aux=True)(p, x, y)
            updates, state = self.optimizer.update(grads, state, p)
            return (optax.apply_updates(p, updates), state, (scale, run)), reported

        (_, reported), grads = jax.value_and_grad(self._scaled_objective, has_aux=True)(p, x, y, scale)
        grads = jax.tree.map(lambda g: g / scale, grads)
        finite = jnp.all(jnp.array([jnp.all(jnp.isfinite(g)) for g in jax.tree.leaves(grads)]))
        updates, new_state = self.optimizer.update(grads, state, p)
        p, state = jax.tree.map(lambda new, old: jnp.where(finite, new, old),
                                (optax.apply_updates(p, updates), new_state), (p, state))
        run = jnp.where(finite, run + 1, 0)
        grow = run == scaling.growth_interval
        scale = jnp.where(finite, jnp.where(grow, scale * scaling.growth, scale), scale * scaling.backoff)
        return (p, state, (scale, jnp.where(grow, 0, run))), reported

    def _scaling(self) -> tuple[jax.Array, jax.Array]:
        """The loop's (loss scale, finite steps in a row) at its start."""
        scaling = self.spec.loss_scale
        return jnp.float32(scaling.initial if scaling else 1), jnp.int32(0)

    def _run_many(self, p, state, scaling, x, y, length: int, count: int):
        """``count`` segments of ``length`` steps in one compiled call; params kept at each segment's end."""
        def segment(carry, _):
            carry, losses = lax.scan(lambda c, _: self._step(c, x, y), carry, None, length=length)
            return carry, (carry[0], losses)
        return lax.scan(segment, (p, state, scaling), None, length=count)

    def forward(self, params: Params, x: np.ndarray) -> np.ndarray:
        with self._scope():
            p = {k: self._array(v) for k, v in params.items()}
            return np.array(self._forward_jit(p, self._array(x)))  # under the mixed policy, in its dtype

    def loss_and_grads(self, params: Params, x: np.ndarray, y: np.ndarray) -> tuple[float, dict[str, np.ndarray]]:
        with self._scope():
            p = {k: self._array(v) for k, v in params.items()}
            scale = self._scaling()[0] if self.spec.loss_scale is not None else 1.0  # weak: keeps the dtype
            while True:  # as a step from fresh state makes them: at the loss scale, backed off on an overflow
                (_, reported), grads = self._value_and_grad(p, self._array(x), self._array(y), scale)
                if self.spec.loss_scale is None:
                    return float(reported), self._numpy(grads)
                if scale <= 1 or all(bool(jnp.all(jnp.isfinite(g))) for g in jax.tree.leaves(grads)):
                    return float(reported), self._numpy(jax.tree.map(lambda g: g / scale, grads))
                scale = scale * self.spec.loss_scale.backoff

    def train(self, params: Params, x: np.ndarray, y: np.ndarray, steps: int, record: Sequence[int] = ()) -> TrainResult:
        """Fresh optimizer state; checkpoints split the run into segments, equal consecutive ones one call."""
        wanted = check_record(steps, record)
        with self._scope():
            p = {k: self._array(v) for k, v in params.items()}
            state, scaling = self._init(p), self._scaling()
            x_j, y_j = self._array(x), self._array(y)
            stored, chunks = [], []
            for start, length, count in segments(wanted, steps):
                (p, state, scaling), (states, losses) = self._scan(p, state, scaling, x_j, y_j, length, count)
                stored.append((start, length, count, states))
                chunks.append(losses)
            checkpoints = {0: {k: self._array(v).copy() for k, v in params.items()}} if 0 in wanted else {}
            for start, length, count, states in stored:
                host = self._numpy(states)
                for j in range(count):
                    if start + (j + 1) * length in wanted:
                        checkpoints[start + (j + 1) * length] = {k: v[j].copy() for k, v in host.items()}
            losses = np.concatenate([np.asarray(c, dtype=np.float64).ravel() for c in chunks])
            return TrainResult(losses=losses, params=self._numpy(p), checkpoints=checkpoints)
