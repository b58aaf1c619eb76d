"""``torch-nn``: PyTorch as its users write it: ``nn.Sequential`` of ``nn.Linear``, a ``torch.nn`` loss,
a ``torch.optim`` optimizer and ``StepLR``, and the usual zero_grad / backward / step loop.

``nn.Linear`` keeps its weight as (n_out, n_in), the transpose of the spec's ``w``; the boundary transposes
both ways. For ``bce`` the loss is ``nn.BCEWithLogitsLoss`` on the last Linear's output, so the final Sigmoid
only runs in ``forward``.
"""
from __future__ import annotations

import inspect
import warnings
from typing import Sequence

import numpy as np
import torch
# torch.optim's first optimizer imports torch._dynamo (about 1 s); imported with this module instead, a fork server
# that preloads the module does that once for every worker
import torch._dynamo  # noqa: F401
from torch import nn

from impls.interface import Params, TrainResult, Unavailable, check_record, require_dtype
from contextlib import nullcontext

from impls.spec import RUN_DTYPES, ModelSpec
from impls.torch_common import exchangeable, host, under_matmul_precision

ACTIVATION = {"relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid, "identity": nn.Identity}
OPTIMIZER = {"sgd": torch.optim.SGD, "momentum": torch.optim.SGD, "nesterov": torch.optim.SGD,
             "adam": torch.optim.Adam, "amsgrad": torch.optim.Adam, "adamw": torch.optim.AdamW}


def _defaults(cls: type) -> dict[str, float]:
    """The optimizer class's own defaults for lr, betas, eps and weight_decay, read from its signature."""
    found: dict[str, float] = {}
    for name, parameter in inspect.signature(cls).parameters.items():
        default = parameter.default
        if default is inspect.Parameter.empty:
            continue
        if name == "betas":
            found["beta1"], found["beta2"] = float(default[0]), float(default[1])
        elif name in ("lr", "eps", "weight_decay"):
            found[name] = float(default)
    return found


@under_matmul_precision
class TorchNN:
    """nn.Sequential + torch.nn loss + torch.optim, eager."""

    name = "torch-nn"
    exact = True
    relu_grad_at_zero = 0.0  # nn.ReLU's backward (threshold_backward) passes gradient only where the output > 0

    def __init__(self, spec: ModelSpec) -> None:
        require_dtype(self.name, spec, RUN_DTYPES, mixed=True)
        if spec.device == "cuda" and not torch.cuda.is_available():
            raise Unavailable(f"{self.name}: torch {torch.__version__} sees no CUDA device here")
        self.spec = spec
        self.dtype = getattr(torch, spec.param_dtype)  # the Linear layers' (under the mixed policy, float32 masters)
        self.device = torch.device(spec.device)
        # mixed: torch.autocast computes the Linear layers and the activations in the low dtype and the losses
        # (mse_loss, binary_cross_entropy_with_logits: on autocast's float32 list) in float32; fp16 adds
        # torch.amp.GradScaler with its defaults (scale 2^16, x2 after 2,000 finite steps, x0.5 and a skipped
        # step on inf or NaN), and StepLR steps every iteration, skipped or not: the spec's policy
        self.low = getattr(torch, spec.dtype) if spec.mixed else None
        # torch.optim follows the spec on every key (measured with the oracle, see the tests): eps added after
        # bias correction, nesterov as g + momentum * buf, coupled L2 (AdamW decoupled, times lr), amsgrad's max
        # over the raw v, lr outside the momentum buffer, lr a Python float cast to the run's dtype.
        self.conventions: dict[str, str] = {}
        self.framework_defaults = _defaults(OPTIMIZER[spec.optimizer])
        # One model per instance: every call loads its own params into it first (and the optimizer is fresh).
        self.model = self._build()
        self.linears = [m for m in self.model if isinstance(m, nn.Linear)]
        self.criterion = self._objective(self.model)

    # The boundary: numpy arrays become a Sequential, and its Linear layers become arrays again.
    def kernel(self, name: str, z: np.ndarray) -> np.ndarray:
        """The nn module's element-wise activation on the spec's device."""
        with torch.no_grad():
            return host(ACTIVATION[name]()(torch.tensor(exchangeable(z), dtype=getattr(torch, self.spec.dtype),
                                                        device=self.device)))

    def _tensor(self, a: np.ndarray) -> torch.Tensor:
        return torch.tensor(exchangeable(a), dtype=self.dtype, device=self.device)

    def _autocast(self):
        """The mixed policy's torch.autocast (nothing outside it)."""
        return torch.autocast(self.device.type, dtype=self.low) if self.low is not None else nullcontext()

    def _build(self) -> nn.Sequential:
        """The Sequential, once per instance (skip_init: no random init, the global RNG untouched)."""
        layers: list[nn.Module] = []
        for n_in, n_out, act in zip(self.spec.layers, self.spec.layers[1:], self.spec.activations):
            layers += [nn.utils.skip_init(nn.Linear, n_in, n_out, dtype=self.dtype, device=self.device),
                       ACTIVATION[act]()]
        return nn.Sequential(*layers)

    def _model(self, params: Params) -> nn.Sequential:
        """The instance's Sequential holding ``params`` (weight = w.T, bias = b[0]), with no gradients."""
        with torch.no_grad():
            for i, linear in enumerate(self.linears):
                linear.weight.copy_(self._tensor(params[f"w{i}"]).T)
                linear.bias.copy_(self._tensor(params[f"b{i}"])[0])
        self.model.zero_grad()
        return self.model

    def _params(self) -> dict[str, np.ndarray]:
        """The Linear layers' parameters in the spec's layout, as fresh arrays."""
        out: dict[str, np.ndarray] = {}
        for i, linear in enumerate(self.linears):
            out[f"w{i}"] = host(linear.weight.T)
            out[f"b{i}"] = host(linear.bias[None, :])
        return out

    def _objective(self, model: nn.Sequential):
        """objective(x, y): the torch.nn loss whose gradient is followed (the reduction of the per-element loss)."""
        spec = self.spec
        if spec.loss == "bce":
            body, criterion = model[:-1], nn.BCEWithLogitsLoss(reduction=spec.reduction)

            def objective(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
                return criterion(body(x), y)  # logits: the final Sigmoid is left out
        else:
            criterion = nn.MSELoss(reduction=spec.reduction)

            def objective(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
                return criterion(model(x), y) * 0.5

        return objective

    def _reported(self, objectives: torch.Tensor, count: int) -> torch.Tensor:
        """The mean per-element loss from objectives (for sel, 0.5 * MSELoss(mean))."""
        return objectives / count if self.spec.reduction == "sum" else objectives

    def _optimizer(self, model: nn.Module) -> torch.optim.Optimizer:
        s, opt = self.spec, self.spec.optimizer
        if opt in ("sgd", "momentum", "nesterov"):
            momentum = 0.0 if opt == "sgd" else s.momentum
            return torch.optim.SGD(model.parameters(), lr=s.lr, momentum=momentum, nesterov=opt == "nesterov",
                                   weight_decay=s.weight_decay)
        cls = torch.optim.AdamW if opt == "adamw" else torch.optim.Adam
        return cls(model.parameters(), lr=s.lr, betas=(s.beta1, s.beta2), eps=s.eps,
                   weight_decay=s.weight_decay, amsgrad=opt == "amsgrad")

    def forward(self, params: Params, x: np.ndarray) -> np.ndarray:
        model = self._model(params)
        with torch.no_grad(), self._autocast():
            return host(model(self._tensor(x)))

    def loss_and_grads(self, params: Params, x: np.ndarray, y: np.ndarray) -> tuple[float, dict[str, np.ndarray]]:
        self._model(params)
        y_t = self._tensor(y)
        with self._autocast():
            loss = self.criterion(self._tensor(x), y_t)
        scaling = self.spec.loss_scale
        scale = scaling.initial if scaling else None
        while scale is not None:  # as GradScaler's first step makes them: scaled, unscaled, backed off on inf
            self.model.zero_grad()
            (loss * scale).backward(retain_graph=True)
            if scale <= 1 or all(bool(torch.isfinite(p.grad).all()) for p in self.model.parameters()):
                for p in self.model.parameters():
                    p.grad.mul_(1 / scale)
                break
            scale *= scaling.backoff
        else:
            loss.backward()
        grads: dict[str, np.ndarray] = {}
        for i, linear in enumerate(self.linears):
            grads[f"w{i}"] = host(linear.weight.grad.T)
            grads[f"b{i}"] = host(linear.bias.grad[None, :])
        return float(self._reported(loss.detach(), y_t.numel())), {k: grads[k] for k in params}

    def train(self, params: Params, x: np.ndarray, y: np.ndarray, steps: int,
              record: Sequence[int] = ()) -> TrainResult:
        wanted = set(check_record(steps, record))
        model, x_t, y_t = self._model(params), self._tensor(x), self._tensor(y)
        criterion = self.criterion
        optimizer = self._optimizer(model)  # fresh state every run
        scheduler = None
        if self.spec.schedule == "step":
            scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=self.spec.decay_every,
                                                        gamma=self.spec.decay_factor)
        scaler = torch.amp.GradScaler(self.device.type) if self.spec.loss_scale is not None else None
        objectives: list[torch.Tensor] = []
        checkpoints = {}
        for step in range(steps):
            if step in wanted:
                checkpoints[step] = self._params()
            optimizer.zero_grad()
            with self._autocast():
                loss = criterion(x_t, y_t)
            if scaler is None:
                loss.backward()
                optimizer.step()
            else:
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                scaler.update()
            if scheduler is not None:
                with warnings.catch_warnings():  # after a step GradScaler skipped, torch warns of the order
                    warnings.simplefilter("ignore", UserWarning)
                    scheduler.step()
            objectives.append(loss.detach())  # the loss before this update; no sync
        if steps in wanted:
            checkpoints[steps] = self._params()
        losses = host(self._reported(torch.stack(objectives), y_t.numel())).astype(np.float64)
        final = self._params()
        return TrainResult(losses=losses, params={k: final[k] for k in params}, checkpoints=checkpoints)
