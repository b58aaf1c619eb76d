"""``torch``: PyTorch autograd, eager, on the CPU."""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from impls.interface import Params, TrainResult, Unavailable, check_record, require_dtype, require_plain_sgd
from impls.spec import RUN_DTYPES, ModelSpec
from impls.torch_common import exchangeable, host, under_matmul_precision

ACTIVATION = {"relu": torch.relu, "tanh": torch.tanh, "sigmoid": torch.sigmoid, "identity": lambda z: z}


@under_matmul_precision
class TorchAutograd:
    """Forward in torch ops; gradients by ``torch.autograd.grad``; SGD under ``no_grad``."""

    name = "torch"

    exact = True
    relu_grad_at_zero = 0.0  # autograd's relu backward passes gradient where z > 0 only

    def __init__(self, spec: ModelSpec) -> None:
        require_dtype(self.name, spec, RUN_DTYPES)
        require_plain_sgd(self.name, spec)
        if spec.device == "cuda" and not torch.cuda.is_available():
            raise Unavailable(f"{self.name}: torch {torch.__version__} sees no CUDA device here")
        self.spec = spec
        self.dtype = getattr(torch, spec.dtype)
        self.device = torch.device(spec.device)

    def kernel(self, name: str, z: np.ndarray) -> np.ndarray:
        """torch's element-wise activation on the spec's device."""
        with torch.no_grad():
            return host(ACTIVATION[name](self._tensor(z)))

    # The boundary: the only place NumPy arrays become tensors and back.
    def _tensor(self, a: np.ndarray, grad: bool = False) -> torch.Tensor:
        return torch.tensor(exchangeable(a), dtype=self.dtype, device=self.device, requires_grad=grad)

    def _leaves(self, params: Params) -> dict[str, torch.Tensor]:
        return {k: self._tensor(v, grad=True) for k, v in params.items()}

    @staticmethod
    def _numpy(tensors: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
        return {k: host(t) for k, t in tensors.items()}

    def _forward(self, p: dict[str, torch.Tensor], x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(pre-activation, output) of the last layer."""
        h = x
        for i, act in enumerate(self.spec.activations):
            z = torch.addmm(p[f"b{i}"], h, p[f"w{i}"])  # b + h @ w, one op
            h = ACTIVATION[act](z)
        return z, h

    def _objective(self, p, x, y) -> torch.Tensor:
        """The reduction of the per-element loss whose gradient is followed."""
        z, out = self._forward(p, x)
        if self.spec.loss == "bce":
            per_element = F.binary_cross_entropy_with_logits(z, y, reduction="none")
        else:
            per_element = 0.5 * (y - out) ** 2
        return per_element.sum() if self.spec.reduction == "sum" else per_element.mean()

    def _reported(self, objectives: torch.Tensor, count: int) -> torch.Tensor:
        """The mean loss from the objective, as mean computes it: sum / count."""
        return objectives / count if self.spec.reduction == "sum" else objectives

    def forward(self, params: Params, x: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            _, out = self._forward({k: self._tensor(v) for k, v in params.items()}, self._tensor(x))
        return host(out)

    def loss_and_grads(self, params: Params, x: np.ndarray, y: np.ndarray) -> tuple[float, dict[str, np.ndarray]]:
        p, y_t = self._leaves(params), self._tensor(y)
        objective = self._objective(p, self._tensor(x), y_t)
        grads = torch.autograd.grad(objective, list(p.values()))
        return float(self._reported(objective.detach(), y_t.numel())), self._numpy(dict(zip(p, grads)))

    def train(self, params: Params, x: np.ndarray, y: np.ndarray, steps: int, record: Sequence[int] = ()) -> TrainResult:
        wanted = set(check_record(steps, record))
        p, x_t, y_t = self._leaves(params), self._tensor(x), self._tensor(y)
        leaves, lr = list(p.values()), self.spec.lr
        objectives, checkpoints = [], {}
        for step in range(steps):
            if step in wanted:
                checkpoints[step] = self._numpy(p)
            objective = self._objective(p, x_t, y_t)
            objectives.append(objective.detach())
            grads = torch.autograd.grad(objective, leaves)
            with torch.no_grad():
                torch._foreach_add_(leaves, grads, alpha=-lr)  # p -= lr * dp, one op for all
        if steps in wanted:
            checkpoints[steps] = self._numpy(p)
        losses = host(self._reported(torch.stack(objectives), y_t.numel())).astype(np.float64)
        return TrainResult(losses=losses, params=self._numpy(p), checkpoints=checkpoints)
