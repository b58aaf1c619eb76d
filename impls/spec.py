"""The model spec: one frozen dataclass every implementation reads, and nothing else.

Semantics follow the notebook (../shared/seeds, In [191]):
- each layer is ``z = h @ w + b`` (``w`` of shape (n, m), ``b`` of shape (1, m)),
  then its activation;
- the per-element loss is ``sel(y_hat, y) = 0.5 * (y - y_hat) ** 2`` (the notebook's),
  or binary cross-entropy ``bce``, which needs a sigmoid output layer and is
  computed stably from its pre-activation z: ``log(1 + exp(z)) - y * z``;
- relu'(0) is 0: the notebook says H(0) = 0 for w and b and H(0) = 1 for x, and its
  finite difference gives 1/2; an implementation that takes another value states it
  as ``relu_grad_at_zero``, a convention the harness checks like the optimizers' ones;
- the loss that is *reported* is always the mean over every element (the notebook
  prints ``np.mean(loss_fn(y_pred))``);
- the gradient that is *followed* is that of the ``reduction`` of the per-element
  loss: ``"sum"`` is the notebook's (its ``prime(loss_fn, y_pred)`` is
  ``y_hat - y``, never divided by the element count), ``"mean"`` divides it by
  the element count;
- the update is the ``optimizer``'s, step t = 0, 1, ... at learning rate
  ``lr_t = lr * decay_factor ** (t // decay_every)`` under the ``step`` schedule
  (``lr`` under ``constant``), with fresh state at the start of every ``train``:
  - ``sgd`` (the notebook's ``update_weights``, the default): ``p -= lr_t * g``;
  - ``momentum``: ``buf = g`` at t = 0, else ``buf = momentum * buf + g``; ``p -= lr_t * buf``
    (lr outside the buffer, no dampening);
  - ``nesterov``: the same buffer, ``p -= lr_t * (g + momentum * buf)``;
  - ``adam``: ``m = beta1 m + (1 - beta1) g``, ``v = beta2 v + (1 - beta2) g^2`` (both 0 before t = 0),
    ``m_hat = m / (1 - beta1^(t+1))``, ``v_hat = v / (1 - beta2^(t+1))``,
    ``p -= lr_t * m_hat / (sqrt(v_hat) + eps)`` (eps after bias correction);
  - ``amsgrad``: adam with ``v_max = max(v_max, v)`` over the raw v, ``v_hat = v_max / (1 - beta2^(t+1))``;
  - ``adamw``: adam, and first ``p -= lr_t * weight_decay * p`` (decoupled, times lr).
  For every optimizer but adamw a nonzero ``weight_decay`` is coupled L2: ``g += weight_decay * p`` first.
  Where a framework departs from these definitions it states how in ``CONVENTIONS`` terms.
"""
from __future__ import annotations

from dataclasses import dataclass

import ml_dtypes  # noqa: F401 -- registers bfloat16 with NumPy, so np.dtype("bfloat16") names it

ACTIVATIONS = ("relu", "tanh", "sigmoid", "identity")
LOSSES = ("sel", "bce")
REDUCTIONS = ("sum", "mean")
OPTIMIZERS = ("sgd", "momentum", "nesterov", "adam", "amsgrad", "adamw")
SCHEDULES = ("constant", "step")
ADAMW_WEIGHT_DECAY = 0.01  # adamw's weight_decay when none is given (torch.optim.AdamW's default)
# The conventions where frameworks part, each with the spec's own choice first. An implementation states its
# choice for each in ``conventions`` (a missing key means the spec's); the harness names them when they show.
CONVENTIONS: dict[str, tuple[str, ...]] = {
    "eps": ("after bias correction", "before bias correction"),
    "nesterov": ("g + momentum * buf", "velocity v = momentum v - lr g; p += momentum v - lr g"),
    "weight_decay": ("coupled L2 (adamw: decoupled, times lr)", "decoupled, times lr"),
    "amsgrad_max": ("over raw v", "over bias-corrected v"),
    "momentum_lr": ("outside the buffer", "inside the buffer"),
    "lr_dtype": ("run dtype", "float32"),
    # what the step schedule counts where float16's loss scaling skips a step: every step of the loop (torch's
    # StepLR, stepped each iteration), or the optimizer's steps taken (optax's count and keras's iterations stay)
    "schedule_count": ("every step", "steps taken"),
    # how the bias gradient sums over samples: the spec's float32 accumulation (rounded once), or jax's, whose
    # transpose of the bias broadcast is a reduce in the dtype itself: in float16 a partial sum can pass 65504
    # where the whole does not, so under loss scaling jax skips steps the spec does not
    "bias_grad_sum": ("float32", "in the dtype"),
    # the loss scale float16's dynamic scaling starts from: torch.amp.GradScaler's 2^16, or keras's 2^15
    "loss_scale_initial": ("2^16", "2^15"),
    # relu'(0), from an implementation's ``relu_grad_at_zero`` (any value in [0, 1], written as "%g"):
    # the spec's 0 (H(0) = 0, the notebook's w and b derivations), or 0.5 (its central difference), or 1
    "relu_grad_at_zero": ("0", "0.5", "1"),
}
DTYPES = ("float64", "float32")  # what a run computes in unless it asks for a reduced dtype too
# Reduced dtypes, opt-in: each elementwise op rounds to the dtype, and each product h @ w accumulates in float32
# and rounds once to the dtype (as torch's and XLA's CPU kernels do). At the boundary their arrays are NumPy
# arrays of ml_dtypes.bfloat16 and numpy.float16.
LOW_DTYPES = ("bfloat16", "float16")
RUN_DTYPES = DTYPES + LOW_DTYPES  # what a run can ask for
# Mixed precision, opt-in (``--mixed-precision bf16|fp16``): a run in a reduced dtype keeps its parameters, its
# optimizer's state and every update in float32 (the master weights), and computes in the reduced dtype only:
# - forward: each step the weights and biases are rounded to the dtype, and every layer runs as in a run in the
#   dtype (product accumulated in float32 and rounded once, + b, activation, each rounded to the dtype);
# - loss: the output (bce: its pre-activation) is widened to float32, and the per-element loss, its reduction,
#   the reported loss and d loss / d output (bce: / d z) are float32; that derivative, times the loss scale, is
#   rounded to the dtype, and the backward pass runs in the dtype as in a run in it;
# - each gradient is widened to float32 and divided by the loss scale there, then the optimizer steps in float32;
# - float16 scales the loss dynamically (``LOSS_SCALE``, torch.amp.GradScaler's defaults): a step whose gradients
#   are not all finite is skipped (no update, the optimizer's step count stays, the schedule's advances) and the
#   scale halves; after ``growth_interval`` finite steps in a row it doubles. bfloat16 has float32's range and is
#   not scaled.
# ``loss_and_grads`` gives the policy's float32 loss and gradients as a step from fresh state makes them: at the
# initial loss scale, or (where those overflow) at the first scale down the backoff, halving toward 1, whose
# gradients are finite: the scale the policy reaches by skipping steps at that state.
MIXED_PRECISIONS = {"bf16": "bfloat16", "fp16": "float16"}  # --mixed-precision -> the dtype it computes in
MASTER_DTYPE = "float32"


@dataclass(frozen=True)
class LossScale:
    """Dynamic loss scaling: where it starts and how it moves."""

    initial: float = 2.0 ** 16
    growth: float = 2.0
    backoff: float = 0.5
    growth_interval: int = 2000


LOSS_SCALE = LossScale()
DEVICES = ("cpu", "cuda")  # where torch and jax compute; the NumPy implementations always use the CPU
ORACLE_DTYPE = "longdouble"  # the extended-precision truth; only numpy computes in it
# How float32 matmuls may compute, in torch.set_float32_matmul_precision's words: "default" leaves each framework
# as its users get it; each framework maps the others to its own setting (impls/torch_common.py,
# impls/jax_common.py) and reports what is in effect as ``matmul_precision``. float64 products never change.
MATMUL_PRECISIONS = ("default", "highest", "high", "medium")


@dataclass(frozen=True)
class ModelSpec:
    """What to train: architecture, loss, numeric type and optimiser settings."""

    layers: tuple[int, ...] = (2, 4, 1)  # input, hidden..., output sizes
    activations: tuple[str, ...] = ("tanh", "sigmoid")  # one per layer after the input
    loss: str = "sel"  # sel: 0.5 * (y - y_hat)**2 per element; bce: binary cross-entropy
    reduction: str = "sum"  # gradient of the sum (notebook) or of the mean
    dtype: str = "float64"  # float64, float32, bfloat16 or float16 (or longdouble, for the oracle), every array
    lr: float = 0.001  # step size, as in the notebook
    device: str = "cpu"  # cpu or cuda, for torch and jax (NumPy runs on the CPU whatever this says)
    optimizer: str = "sgd"  # sgd (the notebook's), momentum, nesterov, adam, amsgrad, adamw
    momentum: float = 0.9  # momentum and nesterov
    beta1: float = 0.9  # adam, amsgrad, adamw
    beta2: float = 0.999
    eps: float = 1e-8
    weight_decay: float | None = None  # None: ADAMW_WEIGHT_DECAY for adamw, 0 otherwise
    schedule: str = "constant"  # constant, or step: lr times decay_factor every decay_every steps
    decay_every: int = 1000
    decay_factor: float = 0.5
    matmul_precision: str = "default"  # one of MATMUL_PRECISIONS: how float32 products may compute
    mixed: bool = False  # a reduced dtype under the mixed policy: master weights and updates in float32

    def __post_init__(self) -> None:
        if len(self.layers) < 2 or any(int(n) != n or n < 1 for n in self.layers):
            raise ValueError(f"layers must be two or more sizes >= 1, got {self.layers}")
        if len(self.activations) != len(self.layers) - 1:
            raise ValueError(
                f"need {len(self.layers) - 1} activations for layers {self.layers},"
                f" got {len(self.activations)}"
            )
        _one_of("activation", self.activations, ACTIVATIONS)
        _one_of("loss", (self.loss,), LOSSES)
        if self.loss == "bce" and self.activations[-1] != "sigmoid":
            raise ValueError(f"loss bce needs a sigmoid output layer, got {self.activations[-1]}")
        _one_of("reduction", (self.reduction,), REDUCTIONS)
        _one_of("dtype", (self.dtype,), RUN_DTYPES + (ORACLE_DTYPE,))
        _one_of("device", (self.device,), DEVICES)
        _one_of("matmul precision", (self.matmul_precision,), MATMUL_PRECISIONS)
        if self.mixed and self.dtype not in LOW_DTYPES:
            raise ValueError(f"mixed precision computes in a reduced dtype ({', '.join(LOW_DTYPES)}),"
                             f" not {self.dtype}")
        if not 0 < self.lr < float("inf"):
            raise ValueError(f"lr must be a finite number > 0, got {self.lr}")
        _one_of("optimizer", (self.optimizer,), OPTIMIZERS)
        _one_of("schedule", (self.schedule,), SCHEDULES)
        if self.weight_decay is None:  # settled once, so the spec records what runs
            object.__setattr__(self, "weight_decay", ADAMW_WEIGHT_DECAY if self.optimizer == "adamw" else 0.0)
        for name in ("momentum", "beta1", "beta2"):
            if not 0 <= getattr(self, name) < 1:
                raise ValueError(f"{name} must be in [0, 1), got {getattr(self, name)}")
        for name in ("eps", "weight_decay"):
            if not 0 <= getattr(self, name) < float("inf"):
                raise ValueError(f"{name} must be a finite number >= 0, got {getattr(self, name)}")
        if int(self.decay_every) != self.decay_every or self.decay_every < 1:
            raise ValueError(f"decay_every must be a whole number of steps >= 1, got {self.decay_every}")
        if not 0 < self.decay_factor < float("inf"):
            raise ValueError(f"decay_factor must be a finite number > 0, got {self.decay_factor}")

    @property
    def param_dtype(self) -> str:
        """The dtype parameters, gradients and the optimizer's state are held in: float32 under the mixed policy,
        else the run's dtype."""
        return MASTER_DTYPE if self.mixed else self.dtype

    @property
    def loss_scale(self) -> LossScale | None:
        """The dynamic loss scaling this run's policy applies (mixed float16 only)."""
        return LOSS_SCALE if self.mixed and self.dtype == "float16" else None

    @property
    def plain_sgd(self) -> bool:
        """Whether this trains by the notebook's own rule: sgd at a constant lr without weight decay."""
        return self.optimizer == "sgd" and self.schedule == "constant" and not self.weight_decay

    @property
    def stateful(self) -> bool:
        """Whether an update depends on more than the current parameters and gradient (optimizer state or a
        schedule), so a run cannot be resumed from a checkpoint of the parameters alone."""
        return self.optimizer != "sgd" or self.schedule != "constant"

    @property
    def depth(self) -> int:
        """Number of dense layers."""
        return len(self.layers) - 1

    def param_shapes(self) -> dict[str, tuple[int, int]]:
        """Parameter names in the notebook's order (w0, b0, w1, b1, ...) and their shapes."""
        shapes: dict[str, tuple[int, int]] = {}
        for i, (n, m) in enumerate(zip(self.layers, self.layers[1:])):
            shapes[f"w{i}"] = (n, m)
            shapes[f"b{i}"] = (1, m)
        return shapes


def _one_of(what: str, values: tuple[str, ...], allowed: tuple[str, ...]) -> None:
    for value in values:
        if value not in allowed:
            raise ValueError(f"unknown {what} {value!r}; choose from {', '.join(allowed)}")
