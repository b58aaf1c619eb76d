"""``keras``: Keras 3 on its jax backend, as its users write it: a ``keras.Sequential`` of ``Dense`` layers, a
``keras.losses`` loss and a ``keras.optimizers`` optimizer, trained by the custom-loop pattern for jax
(``model.stateless_call`` and ``optimizer.stateless_apply`` in one ``jax.jit``-compiled ``lax.scan``).

float64: the model and optimizer are built with ``keras.config.set_floatx(spec.dtype)`` (restored right after)
and every call runs inside the scoped, thread-local ``jax.enable_x64`` (as ``impls.jax_grad`` does): that is
enough for Keras on jax, so the process-wide ``jax_enable_x64`` flag is never set.

Keras 3.15 on jax computes ``ops.tanh`` and ``ops.mean`` of float64 in float32 whatever the x64 mode
(``keras.src.backend.common.dtypes.BIT64_TO_BIT32_DTYPE``), and every ``keras.losses`` loss takes
``ops.mean`` over the outputs. Where this keras does that (probed once), a float64 run uses ``jax.numpy.tanh``
(what ``ops.tanh`` calls after its cast) as the tanh activation and sums the losses' own element-wise keras ops
(``ops.square`` of the difference, ``ops.binary_crossentropy``) itself; ``framework_settings`` says so.

bce: the last ``Dense`` has no activation (it gives the logits) and the loss is ``from_logits=True``;
``forward`` applies the sigmoid. A keras loss with ``reduction="sum"`` is sum over samples of the mean over
outputs: times ``n_out`` it is the spec's sum.
"""
from __future__ import annotations

import inspect
import os
from contextlib import contextmanager
from typing import Sequence

os.environ.setdefault("KERAS_BACKEND", "jax")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402
from jax import lax  # noqa: E402

from impls.interface import Params, TrainResult, Unavailable, check_record, require_dtype  # noqa: E402
from impls.jax_common import JAX_BIAS_SUM, device_of, matmul_setting, scope, segments  # noqa: E402
from impls.spec import RUN_DTYPES, ModelSpec  # noqa: E402

VELOCITY = "velocity v = momentum v - lr g; p += momentum v - lr g"
DEFAULT_NAMES = {"learning_rate": "lr", "beta_1": "beta1", "beta_2": "beta2", "epsilon": "eps",
                 "weight_decay": "weight_decay"}


class KerasNative:
    """Keras layers, losses and optimizers; the N-step loop is one compiled ``lax.scan`` of stateless calls."""

    name = "keras"

    exact = True
    relu_grad_at_zero = 0.0  # keras.activations.relu is jax.nn.relu here, whose derivative at 0 is 0

    def __init__(self, spec: ModelSpec) -> None:
        if keras.backend.backend() != "jax":
            raise Unavailable(f"{self.name}: keras was imported with the {keras.backend.backend()} backend;"
                              " this implementation needs KERAS_BACKEND=jax")
        require_dtype(self.name, spec, RUN_DTYPES, mixed=True)
        self.spec = spec
        # mixed: a "mixed_bfloat16" / "mixed_float16" dtype policy on every Dense (float32 variables, computed in
        # the low dtype) and keras.losses in float32 (floatx); fp16 wraps the optimizer in LossScaleOptimizer
        self.policy = f"mixed_{spec.dtype}" if spec.mixed else spec.dtype
        self.x64 = spec.dtype == "float64"
        self.device = device_of(self.name, spec.device)
        self.matmul_precision, self.matmul_error = matmul_setting(spec, self.device)
        self.conventions = _conventions(spec)
        if spec.loss_scale is not None:  # LossScaleOptimizer: initial_scale=2.0**15; a skipped step leaves the
            # inner optimizer's iterations, which its learning-rate schedule reads, where they were
            self.conventions.update(loss_scale_initial="2^15", schedule_count="steps taken")
        self.conventions.update(JAX_BIAS_SUM if spec.dtype == "float16" else {})  # keras's Dense bias gradient is jax's
        self.framework_defaults = _defaults(_OPTIMIZER[spec.optimizer])
        self.framework_settings = {"keras": keras.__version__, "backend": keras.backend.backend(),
                                   "floatx": spec.param_dtype, "dtype policy": self.policy,
                                   "jax": jax.__version__}
        self._own_ops = spec.dtype != "float64" or _keeps_float64()
        if not self._own_ops:
            self.framework_settings["float64"] = ("keras.ops.tanh and keras.ops.mean compute float64 in float32"
                                                  " here: tanh is jax.numpy.tanh, the loss's element-wise keras"
                                                  " ops are summed by keras.ops.sum")
        with self._scope():
            previous = keras.config.floatx()
            keras.config.set_floatx(spec.param_dtype)
            try:
                self.model = self._build_model()
                self.optimizer = self._build_optimizer()
                self.optimizer.build(self.model.trainable_variables)
                cls = (keras.losses.BinaryCrossentropy if spec.loss == "bce" else keras.losses.MeanSquaredError)
                kwargs = {"from_logits": True} if spec.loss == "bce" else {}
                self.loss = cls(reduction="sum", dtype=spec.param_dtype, **kwargs) if self._own_ops else None
            finally:
                keras.config.set_floatx(previous)
            # Fresh optimizer state for every train(): stateless_apply never assigns the Variables themselves.
            self._fresh = [np.array(v.value) for v in self.optimizer.variables]
            self._non_trainable = [np.array(v.value) for v in self.model.non_trainable_variables]
        self._forward_jit = jax.jit(self._forward)
        self._value_and_grad = jax.jit(jax.value_and_grad(self._objective, has_aux=True))
        self._scan = jax.jit(self._run_many, static_argnums=(4, 5))

    @contextmanager
    def _scope(self):
        """x64 as the dtype needs, the spec's device and matmul precision, for this call only."""
        with scope(self.spec, self.device):
            yield

    def _build_model(self) -> keras.Sequential:
        spec, layers = self.spec, []
        for i, (width, act) in enumerate(zip(spec.layers[1:], spec.activations)):
            last = i == spec.depth - 1
            act = None if (last and spec.loss == "bce") or act == "identity" else act
            act = jnp.tanh if act == "tanh" and not self._own_ops else act
            layers.append(keras.layers.Dense(width, activation=act, dtype=self.policy))
        return keras.Sequential([keras.Input(shape=(spec.layers[0],), dtype=spec.param_dtype), *layers])

    def _build_optimizer(self) -> keras.optimizers.Optimizer:
        spec = self.spec
        lr = spec.lr if spec.schedule == "constant" else keras.optimizers.schedules.ExponentialDecay(
            spec.lr, decay_steps=spec.decay_every, decay_rate=spec.decay_factor, staircase=True)
        wd = spec.weight_decay if spec.weight_decay > 0 or spec.optimizer == "adamw" else None
        if spec.optimizer in ("sgd", "momentum", "nesterov"):
            return self._scaled(keras.optimizers.SGD(lr, momentum=0.0 if spec.optimizer == "sgd" else spec.momentum,
                                                     nesterov=spec.optimizer == "nesterov", weight_decay=wd))
        cls = keras.optimizers.AdamW if spec.optimizer == "adamw" else keras.optimizers.Adam
        extra = {} if spec.optimizer == "adamw" else {"amsgrad": spec.optimizer == "amsgrad"}
        return self._scaled(cls(lr, beta_1=spec.beta1, beta_2=spec.beta2, epsilon=spec.eps, weight_decay=wd,
                                **extra))

    def _scaled(self, optimizer: keras.optimizers.Optimizer) -> keras.optimizers.Optimizer:
        """``optimizer``, wrapped in keras's LossScaleOptimizer (its defaults) where the policy scales the loss."""
        return optimizer if self.spec.loss_scale is None else keras.optimizers.LossScaleOptimizer(optimizer)

    def kernel(self, name: str, z: np.ndarray) -> np.ndarray:
        """The Dense layers' element-wise activation (keras's on jax, or jax.numpy.tanh where the model uses
        it), compiled, on the spec's device."""
        fn = jnp.tanh if name == "tanh" and not self._own_ops else keras.activations.get(name)
        with self._scope():
            return np.asarray(jax.jit(fn)(np.asarray(z, self.spec.dtype)))

    # The boundary: NumPy arrays in the spec's layout <-> the model's variable values (bias of shape (m,)).
    def _trainable(self, params: Params) -> list:
        for i, layer in enumerate(self.model.layers):
            layer.set_weights([np.asarray(params[f"w{i}"], self.spec.param_dtype),
                               np.asarray(params[f"b{i}"], self.spec.param_dtype).reshape(-1)])
        return [v.value for v in self.model.trainable_variables]

    def _numpy(self, values: Sequence) -> dict[str, np.ndarray]:
        out = {}
        for i in range(self.spec.depth):
            out[f"w{i}"] = np.array(values[2 * i], dtype=self.spec.param_dtype)
            out[f"b{i}"] = np.array(values[2 * i + 1], dtype=self.spec.param_dtype).reshape(1, -1)
        return out

    def _array(self, a: np.ndarray) -> np.ndarray:
        """Inputs and targets as the model takes them (under the mixed policy, float32)."""
        return np.asarray(a, dtype=self.spec.param_dtype)

    def _forward(self, trainable, non_trainable, x):
        out, _ = self.model.stateless_call(trainable, non_trainable, x)
        return keras.ops.sigmoid(out) if self.spec.loss == "bce" else out

    def _total(self, y, out):
        """The sum over every element of the per-element loss (``out``: the logits for bce)."""
        if self.loss is not None:  # keras.losses: sum over samples of the mean over outputs
            total = self.loss(y, out) * y.shape[1]
        elif self.spec.loss == "bce":
            total = keras.ops.sum(keras.ops.binary_crossentropy(y, out, from_logits=True))
        else:
            total = keras.ops.sum(keras.ops.square(keras.ops.subtract(out, y)))
        return 0.5 * total if self.spec.loss == "sel" else total

    def _objective(self, trainable, non_trainable, x, y, scale=1.0):
        """(objective to differentiate, times the loss scale, (reported mean loss, non-trainable values))."""
        out, non_trainable = self.model.stateless_call(trainable, non_trainable, x)
        total = self._total(y, out)
        reported = total / y.size
        objective = total if self.spec.reduction == "sum" else reported
        return objective * scale, (reported, non_trainable)

    def _loss_scale(self, opt_vars):
        """LossScaleOptimizer's dynamic scale as ``opt_vars`` hold it (1 where nothing scales)."""
        if self.spec.loss_scale is None:
            return 1.0
        with keras.StatelessScope(state_mapping=list(zip(self.optimizer.variables, opt_vars))):
            return self.optimizer.scale_loss(1.0)

    def _step(self, state, x, y):
        trainable, non_trainable, opt_vars = state
        (_, (reported, non_trainable)), grads = jax.value_and_grad(self._objective, has_aux=True)(
            trainable, non_trainable, x, y, self._loss_scale(opt_vars))
        trainable, opt_vars = self.optimizer.stateless_apply(opt_vars, grads, trainable)
        return (trainable, non_trainable, opt_vars), reported

    def _run_many(self, trainable, non_trainable, opt_vars, xy, length: int, count: int):
        """``count`` segments of ``length`` steps; the trainable values kept at each segment's end."""
        x, y = xy

        def segment(state, _):
            state, losses = lax.scan(lambda s, _: self._step(s, x, y), state, None, length=length)
            return state, (state[0], losses)
        return lax.scan(segment, (trainable, non_trainable, opt_vars), None, length=count)

    def forward(self, params: Params, x: np.ndarray) -> np.ndarray:
        with self._scope():
            return np.array(self._forward_jit(self._trainable(params), self._non_trainable, self._array(x)))

    def loss_and_grads(self, params: Params, x: np.ndarray, y: np.ndarray) -> tuple[float, dict[str, np.ndarray]]:
        with self._scope():
            trainable, scale = self._trainable(params), self._loss_scale(self._fresh)
            while True:  # as a step from fresh state makes them: scaled, unscaled, backed off on an overflow
                (_, (reported, _)), grads = self._value_and_grad(trainable, self._non_trainable, self._array(x),
                                                                 self._array(y), scale)
                if self.spec.loss_scale is None:
                    return float(reported), self._numpy(grads)
                if scale <= 1 or all(bool(jnp.all(jnp.isfinite(g))) for g in grads):
                    return float(reported), self._numpy([g / scale for g in grads])
                scale = scale * 0.5  # LossScaleOptimizer's backoff

    def train(self, params: Params, x: np.ndarray, y: np.ndarray, steps: int, record: Sequence[int] = ()) -> TrainResult:
        """Fresh optimizer state; checkpoints split the run into segments, equal ones in one compiled call."""
        wanted = check_record(steps, record)
        with self._scope():
            state = (self._trainable(params), self._non_trainable, list(self._fresh))
            xy = (self._array(x), self._array(y))
            checkpoints = {0: self._numpy(state[0])} if 0 in wanted else {}
            stored, chunks = [], []
            for start, length, count in segments(wanted, steps):
                state, (kept, losses) = self._scan(*state, xy, length, count)
                stored.append((start, length, count, kept))
                chunks.append(losses)
            for start, length, count, kept in stored:
                arrays = [np.array(v) for v in kept]
                for j in range(count):
                    if start + (j + 1) * length in wanted:
                        checkpoints[start + (j + 1) * length] = self._numpy([a[j] for a in arrays])
            losses = np.concatenate([np.asarray(c, dtype=np.float64).ravel() for c in chunks])
            return TrainResult(losses=losses, params=self._numpy(state[0]), checkpoints=checkpoints)


_OPTIMIZER = {"sgd": "SGD", "momentum": "SGD", "nesterov": "SGD", "adam": "Adam", "amsgrad": "Adam",
              "adamw": "AdamW"}


def _keeps_float64() -> bool:
    """Whether this keras computes ``ops.tanh`` and ``ops.mean`` of float64 in float64 (3.15 on jax: no)."""
    with jax.enable_x64(True):
        third = jnp.full((1, 1), 1 / 3, dtype="float64")
        return bool(keras.ops.tanh(third).dtype == jnp.float64 and keras.ops.mean(third, axis=-1)[0] == third[0, 0])


def _conventions(spec: ModelSpec) -> dict[str, str]:
    """Where Keras's optimizers part from the spec (keras/src/optimizers/{sgd,adam,base_optimizer}.py)."""
    conv: dict[str, str] = {}
    if spec.optimizer != "adamw":  # base_optimizer._apply_weight_decay: variable - variable * wd * lr
        conv["weight_decay"] = "decoupled, times lr"
    if spec.optimizer in ("momentum", "nesterov"):  # sgd.py: m = m * momentum - g * lr
        conv["momentum_lr"] = "inside the buffer"
    if spec.optimizer == "nesterov":  # sgd.py: p += m * momentum - g * lr
        conv["nesterov"] = VELOCITY
    if spec.optimizer in ("adam", "amsgrad", "adamw"):  # adam.py: alpha = lr sqrt(1 - b2^t) / (1 - b1^t)
        conv["eps"] = "before bias correction"  # p -= m alpha / (sqrt(v) + eps)
    return conv


def _defaults(class_name: str) -> dict[str, float]:
    """The keras optimizer's own defaults, read from its signature (weight_decay None: no decay)."""
    found = {}
    for param, value in inspect.signature(getattr(keras.optimizers, class_name)).parameters.items():
        if param in DEFAULT_NAMES and value.default is not inspect.Parameter.empty:
            found[DEFAULT_NAMES[param]] = 0.0 if value.default is None else float(value.default)
    return found
