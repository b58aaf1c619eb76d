"""``torch-compile``: ``torch``'s objective, differentiated by ``torch.func`` and compiled whole.

The training step (forward, ``torch.func.grad_and_value``, the in-place SGD
update) is one function compiled by ``torch.compile`` (Dynamo and Inductor,
fullgraph, static shapes). The derivatives are still autograd's: ``torch.func``
traces the backward of ``TorchAutograd._objective`` (inherited, not copied), so
nothing is written by hand. Eager ``torch`` pays, every step, for dispatching some 30 ops
one by one from Python and for recording and replaying the autograd tape;
compiled, the step is 4 matmul calls and a few fused C++ kernels behind one
guard check. Of the options tried at 2-4-1 float64 on the CPU, this was the fastest:

- ``torch.compile`` of ``torch.func.grad_and_value`` + in-place update (kept);
  returning new parameter tensors instead was slightly slower;
- ``torch.compile`` of ``torch.autograd.grad`` + in-place update: no faster than
  eager (Dynamo cannot trace into ``autograd.grad``, so the graph breaks);
- ``torch.jit.script`` with ``torch.autograd.grad``: barely faster than eager.

Each instance compiles its own step in the first call that needs it (``train``
or ``loss_and_grads``), as ``jax`` jits per instance, so the harness's first call
on a fresh instance includes it (Inductor's cache of generated C++ makes a
repeat compile of the same graph quicker, not free). ``forward`` is inherited
eager code: it is not on the training path.
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import torch

from impls.interface import Params, TrainResult, check_record
from impls.spec import ModelSpec
from impls.torch_autograd import TorchAutograd
from impls.torch_common import host, own_code, under_matmul_precision

Step = Callable[[tuple[torch.Tensor, ...], torch.Tensor, torch.Tensor], tuple]


@under_matmul_precision
class TorchCompile(TorchAutograd):
    """``TorchAutograd._objective`` under ``torch.func.grad_and_value``, the whole step ``torch.compile``d."""

    name = "torch-compile"

    exact = True
    relu_grad_at_zero = 0.0  # autograd's relu backward passes gradient where z > 0 only

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__(spec)
        self.names = tuple(spec.param_shapes())
        self._compiled_step: Step | None = None

    def _step(self, params: tuple[torch.Tensor, ...], x: torch.Tensor, y: torch.Tensor):
        """One SGD update of ``params`` in place, as eager ``torch`` does it; returns (gradients, objective)."""
        def objective(p: tuple[torch.Tensor, ...]) -> torch.Tensor:
            return self._objective(dict(zip(self.names, p)), x, y)

        grads, value = torch.func.grad_and_value(objective)(params)
        torch._foreach_add_(list(params), list(grads), alpha=-self.spec.lr)  # p -= lr * dp
        return grads, value

    def _compiled(self) -> Step:
        """This instance's compiled step; ``torch.compile`` is lazy: it compiles at the step's first call."""
        if self._compiled_step is None:
            impl = self

            def step(params, x, y):
                return impl._step(params, x, y)

            self._compiled_step = torch.compile(own_code(step), fullgraph=True, dynamic=False)
        return self._compiled_step

    def _inputs(self, params: Params) -> tuple[torch.Tensor, ...]:
        return tuple(self._tensor(params[k]) for k in self.names)

    def _named(self, tensors: Sequence[torch.Tensor]) -> dict[str, np.ndarray]:
        return self._numpy(dict(zip(self.names, tensors)))

    def loss_and_grads(self, params: Params, x: np.ndarray, y: np.ndarray) -> tuple[float, dict[str, np.ndarray]]:
        y_t = self._tensor(y)
        grads, value = self._compiled()(self._inputs(params), self._tensor(x), y_t)  # updates a copy
        return float(self._reported(value, y_t.numel())), self._named(grads)

    def train(self, params: Params, x: np.ndarray, y: np.ndarray, steps: int, record: Sequence[int] = ()) -> TrainResult:
        wanted = set(check_record(steps, record))
        step = self._compiled()
        p, x_t, y_t = self._inputs(params), self._tensor(x), self._tensor(y)
        objectives, checkpoints = [], {}
        for k in range(steps):
            if k in wanted:
                checkpoints[k] = self._named(p)
            _, value = step(p, x_t, y_t)
            objectives.append(value)
        if steps in wanted:
            checkpoints[steps] = self._named(p)
        losses = host(self._reported(torch.stack(objectives), y_t.numel())).astype(np.float64)
        return TrainResult(losses=losses, params=self._named(p), checkpoints=checkpoints)
