"""``torch-loop``: the whole SGD loop compiled by ``torch.compile``, many steps per Python call.

``torch-compile`` compiles one step and pays a Python call, Dynamo's guards and
the launch of its kernels on every step. Here one compiled call runs up to
``BUFFER`` steps: a ``torch._higher_order_ops.while_loop`` whose body is ``UNROLL``
steps traced one after the other, then a second ``while_loop`` of single steps
for the remainder, so one compiled function runs any number of steps from 0 to
``BUFFER`` (the count, like ``lr``, is a tensor input, not a constant). Each step
is ``torch.func.grad_and_value`` of ``TorchAutograd._objective`` (inherited, so the
derivatives are still autograd's) on one flat parameter tensor, the update
``p - lr * g``, and the step's objective written into the loss buffer at its
index (``index_put``), all inside the loop. Inductor is asked for ``cpp_wrapper``
(the loop itself runs in generated C++, not Python), ``cpp.simdlen=1`` (scalar
code, with libm's tanh and exp: the tensors are a few elements wide) and
``cpp.threads=1``. What is left per step is mostly the allocation of each
step's intermediate tensors, which Inductor does inside the loop body; three
choices cut it (measured in ``python -m harness.bench``; docs, "Performance"):
every scheduled node is compiled as a kernel of its own
(``_kernel_per_node``), so Inductor frees each buffer after its last use and
reuses it for the next step's (3 tensors allocated a step instead of 7); the
parameters are slices of the flat tensor, not ``split``, whose backward is a
``cat`` into one more buffer with one view per parameter; and while the loop
runs, torch's CPU allocator is ``impls/torch_pool.cpp`` (``impls.torch_pool``),
which hands freed blocks out again instead of asking glibc's
``posix_memalign`` each time. None of them changes an operation or its order.

``train`` returns to Python at each step in ``record`` (a checkpoint is a copy
of the flat tensor there) and every ``steps_per_call`` steps; a segment's last
``n % UNROLL`` steps run in the single-step loop of the same compiled function.
Every update is the same traced step however a run is cut: a run with
checkpoints, or in calls of a few steps, ends bit for bit where the same run in
one call does (tested).

Floating-point order. ``_forward`` writes each dense layer as a broadcast product
summed over the inputs, ``(h[:, :, None] * w).sum(1) + b``, instead of ``addmm``,
which would be a BLAS call per matmul per step. Inductor unrolls that tiny sum
into scalar C++, ``((h0*w0 + h1*w1) + h2*w2) + ...`` and then ``+ b``, without FMA
(it builds with ``-ffp-contract=off``); the backward sums (over the batch for
weight gradients, over the outputs for input gradients) are likewise plain
left-to-right sums. NumPy's ``@`` hands the same products to BLAS, which may
order and fuse them otherwise, and the loss sum and mean are Inductor's too, so
results differ from NumPy's in the last bits only. ``harness.compare --impls
numpy,torch-loop`` passes in float64 and float32, with one-step errors of the size
of numpy's own. ``forward`` and ``loss_and_grads`` run the same ``_forward`` eagerly.

Compile time: the first ``train`` for a (spec, data shape) compiles, by running
0 steps: seconds, and more when Inductor's cache does not yet hold the C++ build
(Inductor does not cache graphs with a ``while_loop`` itself, so every process
traces and lowers again). ``compile_seconds`` holds what this instance spent.
Compiled loops are kept per (class, spec but lr, data shapes) in this module, so
later instances in a process reuse them. Its time per step against the C loop's,
torch-compile's and eager torch's is measured by ``python -m harness.bench``
(``results/bench/``).

Where this torch cannot compile the loop (no C++ compiler, no ``while_loop``,
any exception from the compile) it raises ``Unavailable``: the cheap probes at
construction, the compile itself at the first ``train``.
"""
from __future__ import annotations

import contextlib
import functools
import time
from typing import Callable, Iterator, Sequence

import numpy as np
import torch

from impls.interface import Params, TrainResult, Unavailable, check_record, require_dtype
from impls import torch_pool
from impls.spec import DTYPES, ModelSpec
from impls.torch_autograd import ACTIVATION, TorchAutograd
from impls.torch_common import own_code, under_matmul_precision

UNROLL = 8  # steps traced into one iteration of the main while_loop
BUFFER = 1000  # the most steps one compiled call runs: the length of its loss buffer
OPTIONS = {"cpp_wrapper": True, "cpp.simdlen": 1, "cpp.threads": 1}  # Inductor's, for this loop only

# (flat params, x, y, lr, losses buffer, steps) -> (flat params after them, losses buffer)
Loop = Callable[..., tuple[torch.Tensor, torch.Tensor]]
_LOOPS: dict[tuple, Loop] = {}  # compiled loops that have run, shared by this process's instances


@under_matmul_precision
class TorchLoop(TorchAutograd):
    """Many SGD steps per call of one ``torch.compile``d ``while_loop``; see the module docstring."""

    name = "torch-loop"

    exact = True
    relu_grad_at_zero = 0.0  # autograd's relu backward passes gradient where z > 0 only
    steps_per_call = BUFFER  # at most BUFFER; fewer only changes where train returns to Python

    def __init__(self, spec: ModelSpec) -> None:
        require_dtype(self.name, spec, DTYPES)  # its C++ loop is written for float64 and float32
        super().__init__(spec)  # plain SGD, a CUDA device if asked for
        if reason := _cannot_compile():
            raise Unavailable(f"{self.name}: {reason}")
        shapes = spec.param_shapes()
        self.names = tuple(shapes)
        self.shapes = tuple(shapes.values())
        self.sizes = tuple(n * m for n, m in self.shapes)
        self.starts = tuple(sum(self.sizes[:i]) for i in range(len(self.sizes)))
        self.compile_seconds = 0.0  # time this instance spent compiling (0 where it reused a loop)

    def _forward(self, p: dict[str, torch.Tensor], x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(pre-activation, output) of the last layer; each matmul a broadcast product summed over inputs."""
        h = x
        for i, act in enumerate(self.spec.activations):
            z = (h[:, :, None] * p[f"w{i}"]).sum(1) + p[f"b{i}"]
            h = ACTIVATION[act](z)
        return z, h

    def _views(self, flat: torch.Tensor) -> dict[str, torch.Tensor]:
        """The named parameters as views into the flat tensor, in the spec's order: slices, not ``split``,
        whose backward ``cat`` would make Inductor allocate one more tensor per parameter per step."""
        return {name: flat[start:start + size].view(shape)
                for name, start, size, shape in zip(self.names, self.starts, self.sizes, self.shapes)}

    def _flat_objective(self, flat: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self._objective(self._views(flat), x, y)

    def _loop_function(self) -> Callable:
        """The uncompiled loop: steps ``0 .. steps - 1`` from ``flat``, each objective into ``losses``."""
        grad_and_value = torch.func.grad_and_value(self._flat_objective)
        from torch._higher_order_ops import while_loop

        def loop(flat, x, y, lr, losses, steps):
            def step(k, p, buffer):
                grads, value = grad_and_value(p, x, y)
                return k + 1, p - lr * grads, buffer.index_put((k,), value.view(1))

            def unrolled(k, p, buffer):
                for _ in range(UNROLL):
                    k, p, buffer = step(k, p, buffer)
                return k, p, buffer

            start = torch.zeros(1, dtype=torch.int64, device=flat.device)
            carry = while_loop(lambda k, p, b: (k + UNROLL <= steps).squeeze(0), unrolled, (start, flat, losses))
            _, flat, losses = while_loop(lambda k, p, b: (k < steps).squeeze(0), step, carry)
            return flat, losses

        return loop

    def _loop(self, x: torch.Tensor, y: torch.Tensor) -> Loop:
        """The compiled loop for this spec and data shape, compiled (by running 0 steps) on first use."""
        key = (type(self), _without_lr(self.spec), tuple(x.shape), tuple(y.shape), UNROLL, BUFFER)
        if key not in _LOOPS:
            compiled = torch.compile(own_code(self._loop_function()), fullgraph=True, dynamic=False, options=OPTIONS)
            flat = torch.zeros(sum(self.sizes), dtype=self.dtype, device=self.device)
            start = time.perf_counter()
            try:
                with _kernel_per_node():
                    compiled(flat, x, y, self._rate(), self._buffer(), self._count(0))
            except Exception as exc:  # noqa: BLE001 -- whatever stops Dynamo, Inductor or the C++ build
                raise Unavailable(f"{self.name}: torch {torch.__version__} cannot compile the training loop here"
                                  f" ({_one_line(exc)})") from None
            self.compile_seconds += time.perf_counter() - start
            _LOOPS[key] = compiled
        return _LOOPS[key]

    def _rate(self) -> torch.Tensor:
        return torch.tensor([self.spec.lr], dtype=self.dtype, device=self.device)

    def _buffer(self) -> torch.Tensor:
        return torch.zeros(BUFFER, dtype=self.dtype, device=self.device)

    def _count(self, steps: int) -> torch.Tensor:
        return torch.tensor([steps], dtype=torch.int64, device=self.device)

    def _flat(self, params: Params) -> torch.Tensor:
        return torch.cat([self._tensor(params[k]).reshape(-1) for k in self.names])

    def _named(self, flat: torch.Tensor) -> dict[str, np.ndarray]:
        return self._numpy(self._views(flat))

    def train(self, params: Params, x: np.ndarray, y: np.ndarray, steps: int, record: Sequence[int] = ()) -> TrainResult:
        wanted = check_record(steps, record)
        x_t, y_t = self._tensor(x), self._tensor(y)
        flat, rate, buffer = self._flat(params), self._rate(), self._buffer()
        objectives = torch.empty(steps, dtype=self.dtype, device=self.device)
        checkpoints, done, per_call = {}, 0, min(self.steps_per_call, BUFFER)
        pool = torch_pool.pooled() if self.device.type == "cpu" else contextlib.nullcontext()
        with torch.enable_grad():  # one grad mode for every call, so Dynamo's guards hold
            loop = self._loop(x_t, y_t)
            with pool:
                for stop in sorted({*wanted, steps}):
                    while done < stop:
                        count = min(per_call, stop - done)
                        flat, buffer = loop(flat, x_t, y_t, rate, buffer, self._count(count))
                        objectives[done:done + count] = buffer[:count]
                        done += count
                    if stop in wanted:
                        checkpoints[stop] = self._named(flat)
        losses = self._reported(objectives, y_t.numel()).cpu().numpy().astype(np.float64)
        return TrainResult(losses=losses, params=self._named(flat), checkpoints=checkpoints)


@contextlib.contextmanager
def _kernel_per_node() -> Iterator[None]:
    """While Inductor compiles, every scheduled node becomes a C++ kernel of its own.

    Inductor's C++ backend gathers a graph's nodes into one function until its
    arguments pass ``CppScheduling.MAX_FUSED_KERNEL_ARGS_NUM`` (500); every buffer
    passed to that function is allocated before it runs and freed after, so an
    unrolled body allocates every intermediate of all its steps at once. One node
    per function lets Inductor free each buffer after its last use and reuse it
    for a later step's (3 allocations a step at 2-4-1 instead of 7). The
    arithmetic inside the kernels is the same. A torch without that attribute is
    left as it is.
    """
    try:
        from torch._inductor.codegen.cpp import CppScheduling
    except ImportError:
        yield
        return
    before = getattr(CppScheduling, "MAX_FUSED_KERNEL_ARGS_NUM", None)
    if before is None:
        yield
        return
    CppScheduling.MAX_FUSED_KERNEL_ARGS_NUM = 0
    try:
        yield
    finally:
        CppScheduling.MAX_FUSED_KERNEL_ARGS_NUM = before


def _without_lr(spec: ModelSpec) -> tuple:
    """What the compiled loop depends on: everything in the spec but the learning rate (an input)."""
    return tuple((k, v) for k, v in spec.__dict__.items() if k != "lr")


@functools.cache
def _cannot_compile() -> str | None:
    """Why this torch cannot compile the loop (one line), or None; probed once per process (a CUDA build's
    own needs, such as Triton, show at the compile)."""
    try:
        from torch._higher_order_ops import while_loop  # a prototype API: present or not
        from torch._inductor import cpp_builder

        # the wrapper is C++ on every device; Inductor's search raises InvalidCxxCompiler where it finds none
        compiler = callable(while_loop) and callable(torch.func.grad_and_value) and cpp_builder.get_cpp_compiler()
    except Exception as exc:  # noqa: BLE001 -- an ImportError, AttributeError or InvalidCxxCompiler
        return f"torch {torch.__version__} cannot build a compiled loop here ({_one_line(exc)})"
    return None if compiler else f"torch {torch.__version__} finds no C++ compiler here"


def _one_line(exc: Exception) -> str:
    """The exception's type and the first line of its message, at most 200 characters of it."""
    first = (str(exc).strip().splitlines() or [""])[0]
    return f"{type(exc).__name__}: {first[:200]}"
