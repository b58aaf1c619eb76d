"""``numpy-fast``: the same backprop as ``numpy``, at NumPy's per-call floor.

At 2-4-1 every array has a handful of elements, so a step costs what its NumPy
calls cost to dispatch, not arithmetic. A step is a list of calls built once
per ``train`` (``impls.np_fast_net``) and run by a function generated from it,
one line per call (``runner``): every output preallocated and passed positionally, every operand
contiguous, constants as 0-d arrays of the dtype, no Python arithmetic, and as
few calls as the formulas allow (``calls_per_step``). The reported losses are not
computed in the loop: each step's output pre-activation goes into a history
buffer, whose losses are computed a chunk of steps at a time in one vectorised
pass. ``calls_per_step`` counts a step's calls; ``call_floor_s`` measures what
the cheapest of them costs.

Where the order of floating-point operations differs from ``numpy``'s
(``impls.np_backprop``), by a rounding or two per element:
- ``h @ w + b`` is one ``dot`` of ``[h, 1]`` with ``[w; b]``: the bias is added
  inside BLAS's sum, and ``[dw; db]`` is one ``dot`` whose last row sums the
  deltas in BLAS's order rather than ``np.sum``'s;
- the learning rate is folded into the output error: ``numpy`` updates
  ``w -= lr * (h^T d)`` and passes ``d`` down unscaled; here the output error is
  ``e = lr * d`` (``lr / count`` under the mean reduction, one rounded constant,
  where ``numpy`` divides ``d`` by the count and multiplies by ``lr`` later), and
  every gradient and delta below it is computed from ``e`` and subtracted as is:
  ``lr * (x * d)`` becomes ``x * (lr * d)``;
- with a sigmoid output under sel, ``e = ((y - out) * lr) * ((1 - out) * out)``,
  where ``numpy`` has ``lr * ((out - y) * (out * (1 - out)))``;
- a sigmoid layer's parameters are stored negated, ``-[w; b]``: a ``dot`` that
  yields ``-z``, deltas of opposite sign and ``(out - 1) * out`` for
  ``-(out * (1 - out))``; negation is exact, so this changes no rounding;
- relu' is ``sign(out)`` and relu ``maximum(z, 0)``: equal to ``numpy``'s up to
  the sign of zero.
``loss_and_grads`` folds nothing (the gradient is not scaled by lr). ``harness.compare
--impls numpy,numpy-fast`` shows its one-step errors and update checks beside numpy's.
"""
from __future__ import annotations

import time
from typing import Sequence

import numpy as np

from impls.interface import Params, TrainResult, check_record, require_dtype, require_plain_sgd
from impls.np_fast_net import FastNet, runner
from impls.np_notebook import ACTIVATION, bce_logits, sel
from impls.spec import DTYPES, ModelSpec

HISTORY_ELEMENTS = 1 << 14  # output pre-activations kept between two vectorised loss passes
FLOOR_SIZE = 4  # elements per operand in call_floor_s: the 2-4-1 XOR net's smallest arrays


def _network(spec: ModelSpec, params: Params, x: np.ndarray, y: np.ndarray | None, scale: float | None) -> FastNet:
    net = FastNet(spec, params, x, scale)
    if y is not None:
        net.set_targets(y)
    return net


def _losses(net: FastNet, history: np.ndarray) -> np.ndarray:
    """The reported (mean) loss of each step from its output pre-activation (stored as s z), in one pass."""
    z = -history if net.signs[-1] < 0 else history
    if net.spec.loss == "bce":
        per_element = bce_logits(z, net.y)
    else:
        per_element = sel(ACTIVATION[net.spec.activations[-1]](z), net.y)
    return per_element.mean(axis=(1, 2))


def calls_per_step(spec: ModelSpec) -> int:
    """How many NumPy calls one training step of ``spec`` makes: the length of the plan the loop runs."""
    params = {k: np.zeros(s, spec.dtype) for k, s in spec.param_shapes().items()}
    return len(FastNet(spec, params, np.zeros((4, spec.layers[0])), spec.lr).step())


def call_floor_s(repeats: int = 7, calls: int = 20_000, dtype: str = "float64") -> float:
    """Seconds per call of the cheapest call the loop makes, ``np.add(a, b, c)`` on contiguous
    ``FLOOR_SIZE``-element arrays, unrolled ten to a loop iteration; the minimum over ``repeats``."""
    a, b, c = (np.ones(FLOOR_SIZE, dtype) for _ in range(3))
    add, rounds, best = np.add, max(1, calls // 10), float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(rounds):
            add(a, b, c); add(a, b, c); add(a, b, c); add(a, b, c); add(a, b, c)  # noqa: E702
            add(a, b, c); add(a, b, c); add(a, b, c); add(a, b, c); add(a, b, c)  # noqa: E702
        best = min(best, (time.perf_counter() - start) / (rounds * 10))
    return best


class NumpyFast:
    """``numpy``'s backprop as a prebuilt list of in-place NumPy calls on preallocated buffers."""

    name = "numpy-fast"
    exact = True
    relu_grad_at_zero = 0.0  # sign(out) with out = max(z, 0): H(0) = 0, as numpy's relu_prime

    def kernel(self, name: str, z: np.ndarray) -> np.ndarray:
        """NumPy's element-wise activation, as the loop computes it."""
        return ACTIVATION[name](np.asarray(z, self.spec.dtype))

    def __init__(self, spec: ModelSpec) -> None:
        require_dtype(self.name, spec, DTYPES)
        require_plain_sgd(self.name, spec)
        self.spec = spec

    def forward(self, params: Params, x: np.ndarray) -> np.ndarray:
        net = _network(self.spec, params, x, None, None)
        slot = np.empty_like(net.y)
        net.run(net.forward, [slot])
        return net.out.T.copy()

    def loss_and_grads(self, params: Params, x: np.ndarray, y: np.ndarray) -> tuple[float, dict[str, np.ndarray]]:
        net = _network(self.spec, params, x, y, None)
        history = np.empty((1, *net.y.shape), net.dtype)
        net.run(net.forward + net.backward, history)
        return float(_losses(net, history)[0]), net.gradients()

    def train(self, params: Params, x: np.ndarray, y: np.ndarray, steps: int, record: Sequence[int] = ()) -> TrainResult:
        wanted = check_record(steps, record)
        net = _network(self.spec, params, x, y, self.spec.lr)
        run = runner(net.step())
        chunk = max(1, min(steps, HISTORY_ELEMENTS // net.y.size))
        history = np.empty((chunk, *net.y.shape), net.dtype)
        slots = list(history)  # the views are made once, not once per step
        losses = np.empty(steps)
        checkpoints = {0: net.params()} if 0 in wanted else {}
        step = 0
        for stop in sorted({*wanted, steps} - {0}):
            while step < stop:  # run to the next checkpoint, emptying the history when it is full
                first = step % chunk
                last = min(chunk, first + stop - step)
                run(slots[first:last])
                step += last - first
                if last == chunk or step == steps:
                    losses[step - last:step] = _losses(net, history[:last])
            if stop in wanted:
                checkpoints[stop] = net.params()
        return TrainResult(losses=losses, params=net.params(), checkpoints=checkpoints)
