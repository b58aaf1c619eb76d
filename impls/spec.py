"""The model spec: one frozen dataclass every implementation reads, and nothing else.

Semantics follow the notebook (../shared/seeds, In [191]):
- each layer is ``z = h @ w + b`` (``w`` of shape (n, m), ``b`` of shape (1, m)),
  then its activation;
- the per-element loss is ``sel(y_hat, y) = 0.5 * (y - y_hat) ** 2`` (the notebook's),
  or binary cross-entropy ``bce``, which needs a sigmoid output layer and is
  computed stably from its pre-activation z: ``log(1 + exp(z)) - y * z``;
- relu'(0): the notebook says H(0) = 0 for w and b and H(0) = 1 for x, and its
  finite difference gives 1/2; each implementation states its choice as
  ``relu_grad_at_zero`` and the harness reports divergences it causes;
- the loss that is *reported* is always the mean over every element (the notebook
  prints ``np.mean(loss_fn(y_pred))``);
- the gradient that is *followed* is that of the ``reduction`` of the per-element
  loss: ``"sum"`` is the notebook's (its ``prime(loss_fn, y_pred)`` is
  ``y_hat - y``, never divided by the element count), ``"mean"`` divides it by
  the element count;
- the update is plain SGD, ``p -= lr * dp``, as in ``update_weights``.
"""
from __future__ import annotations

from dataclasses import dataclass

ACTIVATIONS = ("relu", "tanh", "sigmoid", "identity")
LOSSES = ("sel", "bce")
REDUCTIONS = ("sum", "mean")
DTYPES = ("float64", "float32")  # what a run can ask for
DEVICES = ("cpu", "cuda")  # where torch and jax compute; the NumPy implementations always use the CPU
ORACLE_DTYPE = "longdouble"  # the extended-precision truth; only numpy computes in it


@dataclass(frozen=True)
class ModelSpec:
    """What to train: architecture, loss, numeric type and optimiser settings."""

    layers: tuple[int, ...] = (2, 4, 1)  # input, hidden..., output sizes
    activations: tuple[str, ...] = ("tanh", "sigmoid")  # one per layer after the input
    loss: str = "sel"  # sel: 0.5 * (y - y_hat)**2 per element; bce: binary cross-entropy
    reduction: str = "sum"  # gradient of the sum (notebook) or of the mean
    dtype: str = "float64"  # float64 or float32 (or longdouble, for the oracle), for every array
    lr: float = 0.001  # plain SGD step size, as in the notebook
    device: str = "cpu"  # cpu or cuda, for torch and jax (NumPy runs on the CPU whatever this says)

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
        _one_of("dtype", (self.dtype,), DTYPES + (ORACLE_DTYPE,))
        _one_of("device", (self.device,), DEVICES)
        if not 0 < self.lr < float("inf"):
            raise ValueError(f"lr must be a finite number > 0, got {self.lr}")

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
