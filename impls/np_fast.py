"""``numpy-fast``: the same backprop as ``numpy``, with NumPy's per-call overhead cut to the bone.

At 2-4-1 every array has a handful of elements, so a step costs what its ~20
NumPy calls cost to dispatch, not arithmetic. This loop makes each call as cheap
as NumPy allows, and makes no call it can avoid:

- every buffer is allocated once per call of ``train``, and every op writes into
  one (``out=``), so the loop allocates nothing;
- each layer's bias is the last row of its weight block and every activation
  buffer has a constant row of ones, so one ``np.dot`` computes ``h @ w + b`` and
  one ``np.dot`` gives both ``dw`` and ``db``; arrays are stored transposed
  (features by samples), so an activation's rows are contiguous;
- all parameters live in one flat array, their gradients in another, so the
  update ``p -= lr * dp`` is two calls for the whole network;
- a step is a prebuilt list of ``functools.partial`` calls (no dict lookups, no
  attribute lookups, no Python scalars: constants are 0-d arrays of the dtype);
- the reported loss is not computed in the loop: each step's output
  pre-activation is written into a history buffer, and the losses of a whole
  chunk of steps are computed from it in one vectorised pass.

The formulas are ``numpy``'s (``impls.np_backprop``), op for op where it matters;
only the summation order inside the fused ``dot`` calls differs.
"""
from __future__ import annotations

from functools import partial
from typing import Callable, Sequence

import numpy as np

from impls.interface import Params, TrainResult, check_record, require_dtype, require_plain_sgd
from impls.np_notebook import ACTIVATION, bce_logits, sel
from impls.spec import DTYPES, ModelSpec

HISTORY_ELEMENTS = 1 << 14  # output pre-activations kept between two vectorised loss passes

Op = Callable[[], object]


class _Network:
    """One network's preallocated buffers and the prebuilt op lists of its forward, backward and update."""

    def __init__(self, spec: ModelSpec, params: Params, x: np.ndarray) -> None:
        dtype, sizes, acts = np.dtype(spec.dtype), spec.layers, spec.activations
        count = x.shape[0]
        self.spec, self.dtype, self.count = spec, dtype, count
        one, zero = np.ones((), dtype), np.zeros((), dtype)

        # Parameters: block i is (n + 1, m), rows 0..n-1 are w_i and row n is b_i.
        shapes = [(n + 1, m) for n, m in zip(sizes, sizes[1:])]
        ends = np.cumsum([0] + [n * m for n, m in shapes])
        self.flat, self.grad = np.empty(ends[-1], dtype), np.empty(ends[-1], dtype)
        self.blocks = [self.flat[a:b].reshape(s) for a, b, s in zip(ends, ends[1:], shapes)]
        grads = [self.grad[a:b].reshape(s) for a, b, s in zip(ends, ends[1:], shapes)]
        for i, block in enumerate(self.blocks):
            block[:-1] = params[f"w{i}"]
            block[-1:] = params[f"b{i}"]

        # Layer inputs, transposed, each with a last row of ones: inputs[i] is (n_i + 1, count).
        inputs = [np.ones((n + 1, count), dtype) for n in sizes[:-1]]
        inputs[0][:-1] = np.asarray(x, dtype).T
        self.out = np.empty((sizes[-1], count), dtype)
        outputs = [a[:-1] for a in inputs[1:]] + [self.out]  # contiguous row blocks
        deltas = [np.empty((m, count), dtype) for m in sizes[1:]]
        temps = [np.empty((m, count), dtype) for m in sizes[1:]]

        self.forward_ops: list[Op] = []
        for i, act in enumerate(acts[:-1]):
            z = np.empty((sizes[i + 1], count), dtype)
            self.forward_ops.append(partial(np.dot, self.blocks[i].T, inputs[i], z))
            first, rest = _activation(act, outputs[i], one, zero)
            self.forward_ops += [partial(first, z, outputs[i])] + rest
        # The last layer writes its pre-activation into a slot the caller passes each step.
        self.last = (self.blocks[-1].T, inputs[-1])
        self.first, self.output_ops = _activation(acts[-1], self.out, one, zero)

        # Backward: the output delta, then per layer [d *= act'(out)], [dw; db] = h^T d, d_prev = w d.
        self.y = np.empty((sizes[-1], count), dtype)
        last = spec.depth - 1
        self.backward_ops: list[Op] = [partial(np.subtract, self.out, self.y, deltas[last])]  # y_hat - y
        if spec.loss == "sel":  # bce with a sigmoid output: d/dz = y_hat - y, nothing more
            self.backward_ops += _derivative(acts[last], self.out, deltas[last], temps[last], one, zero)
        if spec.reduction == "mean":
            self.backward_ops.append(partial(np.divide, deltas[last], np.array(sizes[-1] * count, dtype), deltas[last]))
        for i in range(last, -1, -1):
            if i < last:
                self.backward_ops += _derivative(acts[i], outputs[i], deltas[i], temps[i], one, zero)
            self.backward_ops.append(partial(np.dot, inputs[i], deltas[i].T, grads[i]))
            if i:
                self.backward_ops.append(partial(np.dot, self.blocks[i][:-1], deltas[i], deltas[i - 1]))
        lr = np.array(spec.lr, dtype)
        self.update_ops: list[Op] = [partial(np.multiply, self.grad, lr, self.grad),
                                     partial(np.subtract, self.flat, self.grad, self.flat)]

    def set_targets(self, y: np.ndarray) -> None:
        self.y[...] = np.asarray(y, self.dtype).T

    def params(self, source: list[np.ndarray] | None = None) -> dict[str, np.ndarray]:
        """Fresh copies named w0, b0, ... of the parameter blocks (or of ``source``, e.g. the gradients)."""
        named = {}
        for i, block in enumerate(self.blocks if source is None else source):
            named[f"w{i}"], named[f"b{i}"] = block[:-1].copy(), block[-1:].copy()
        return named

    def gradients(self) -> dict[str, np.ndarray]:
        ends = np.cumsum([0] + [b.size for b in self.blocks])
        return self.params([self.grad[a:b].reshape(s.shape) for a, b, s in zip(ends, ends[1:], self.blocks)])

    def run(self, slots: Sequence[np.ndarray], backward: bool = True, update: bool = True) -> None:
        """One step per slot, each writing its output pre-activation (transposed) into its slot."""
        forward_ops, (weights, inputs), first, out = self.forward_ops, self.last, self.first, self.out
        rest = self.output_ops + (self.backward_ops if backward else []) + (self.update_ops if update else [])
        dot = np.dot
        for z in slots:
            for op in forward_ops:
                op()
            dot(weights, inputs, z)
            first(z, out)
            for op in rest:
                op()

    def losses(self, history: np.ndarray) -> np.ndarray:
        """The reported (mean) loss of each step from its output pre-activation, in one pass."""
        if self.spec.loss == "bce":
            per_element = bce_logits(history, self.y)
        else:
            per_element = sel(ACTIVATION[self.spec.activations[-1]](history), self.y)
        return per_element.mean(axis=(1, 2))


def _activation(act: str, out: np.ndarray, one: np.ndarray, zero: np.ndarray) -> tuple[Callable, list[Op]]:
    """(first(z, out), the ops after it) computing out = act(z) as np_notebook does."""
    if act == "sigmoid":  # 1 / (1 + exp(-z))
        return np.negative, [partial(np.exp, out, out), partial(np.add, one, out, out),
                             partial(np.divide, one, out, out)]
    if act == "relu":  # max(z, 0): z * (z > 0) up to the sign of zero
        return (lambda z, o: np.maximum(z, zero, out=o)), []
    return {"tanh": np.tanh, "identity": np.positive}[act], []


def _derivative(act: str, out: np.ndarray, d: np.ndarray, t: np.ndarray, one: np.ndarray,
                zero: np.ndarray) -> list[Op]:
    """Ops for d *= act'(z), from the layer's output, as np_backprop's ACTIVATION_PRIME."""
    if act == "tanh":  # 1 - out**2
        ops = [partial(np.multiply, out, out, t), partial(np.subtract, one, t, t)]
    elif act == "sigmoid":  # out * (1 - out)
        ops = [partial(np.subtract, one, out, t), partial(np.multiply, t, out, t)]
    elif act == "relu":  # H(z) with H(0) = 0
        ops = [partial(np.greater, out, zero, t)]
    else:
        return []
    return ops + [partial(np.multiply, d, t, d)]


class NumpyFast:
    """``numpy``'s backprop as a prebuilt list of in-place NumPy calls on preallocated buffers."""

    name = "numpy-fast"
    exact = True
    relu_grad_at_zero = 0.0  # (out > 0): H(0) = 0, as numpy's relu_prime

    def __init__(self, spec: ModelSpec) -> None:
        require_dtype(self.name, spec, DTYPES)
        require_plain_sgd(self.name, spec)
        self.spec = spec

    def forward(self, params: Params, x: np.ndarray) -> np.ndarray:
        net = _Network(self.spec, params, x)
        net.run([np.empty_like(net.out)], backward=False, update=False)
        return net.out.T.copy()

    def loss_and_grads(self, params: Params, x: np.ndarray, y: np.ndarray) -> tuple[float, dict[str, np.ndarray]]:
        net = _Network(self.spec, params, x)
        net.set_targets(y)
        history = np.empty((1, *net.out.shape), net.dtype)
        net.run(history, update=False)
        return float(net.losses(history)[0]), net.gradients()

    def train(self, params: Params, x: np.ndarray, y: np.ndarray, steps: int, record: Sequence[int] = ()) -> TrainResult:
        wanted = check_record(steps, record)
        net = _Network(self.spec, params, x)
        net.set_targets(y)
        chunk = max(1, min(steps, HISTORY_ELEMENTS // net.out.size))
        history = np.empty((chunk, *net.out.shape), net.dtype)
        slots = list(history)  # the views are made once, not once per step
        losses = np.empty(steps)
        checkpoints = {0: net.params()} if 0 in wanted else {}
        step = 0
        for stop in sorted({*wanted, steps} - {0}):
            while step < stop:  # run to the next checkpoint, emptying the history when it is full
                first = step % chunk
                last = min(chunk, first + stop - step)
                net.run(slots[first:last])
                step += last - first
                if last == chunk or step == steps:
                    losses[step - last:step] = net.losses(history[:last])
            if stop in wanted:
                checkpoints[stop] = net.params()
        return TrainResult(losses=losses, params=net.params(), checkpoints=checkpoints)
