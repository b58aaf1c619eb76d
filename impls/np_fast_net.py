"""numpy-fast's network: buffers allocated once, and a step written out as data, a list of NumPy calls.

A ``Call`` is ``(function, args)``, run as ``function(*args)``; the output array
is always an argument (positional ``out``, or bound by ``functools.partial``
where NumPy wants a keyword), so running a plan allocates nothing.

Layout (``c`` samples, arrays transposed so that every row block is contiguous):
- layer i's weight and bias are one block ``[w_i; b_i]`` of shape (n + 1, m)
  in one flat parameter array; each layer input has a last row of ones, so one
  ``np.dot`` gives ``h @ w + b`` and one gives ``[dw; db]``;
- the gradients are blocks of one flat array, so the update of every parameter
  is one ``np.subtract(flat, grad, flat)``;
- a sigmoid layer's block is stored negated, ``-[w; b]``: its dot then yields
  ``-z``, the argument of ``exp`` in ``1 / (1 + exp(-z))``, and the backward pass
  carries ``-dL/dz`` through that layer (negation is exact, so this saves a call
  and changes no rounding);
- every derivative factor of the form ``1 - X`` (tanh's ``1 - out**2``, an
  output sigmoid's ``1 - out``) is formed by one subtract for all layers: the
  ``X`` are row blocks of one array; when training a sigmoid output under sel,
  one multiply forms both ``(1 - out) * out`` and ``e * scale``, the two being
  adjacent row blocks too;
- the last layer's dot writes into a per-step slot (``SLOT``), a row of the
  caller's history buffer, from which the reported losses are computed later.
"""
from __future__ import annotations

from functools import lru_cache, partial
from typing import Callable, Sequence

import numpy as np

from impls.interface import Params
from impls.spec import ModelSpec

Call = tuple[Callable[..., object], tuple]
SLOT = object()  # stands for the step's slot in a plan; run() passes the real array there


def _dot() -> Callable[..., object]:
    """np.dot without its __array_function__ dispatch (100 ns a call), which our own ndarrays never need."""
    return getattr(np.dot, "_implementation", np.dot)


def _activation(act: str, z: object, out: np.ndarray, one: np.ndarray, zero: np.ndarray) -> list[Call]:
    """Calls computing out = act(z) (``z`` is -z for sigmoid, whose block is negated), as np_notebook does."""
    if act == "sigmoid":  # 1 / (1 + exp(-z))
        return [(np.exp, (z, out)), (np.add, (one, out, out)), (np.divide, (one, out, out))]
    if act == "tanh":
        return [(np.tanh, (z, out))]
    if act == "relu":  # max(z, 0): z * (z > 0) up to the sign of zero
        return [(partial(np.maximum, out=out), (z, zero))]
    return [] if z is out else [(np.positive, (z, out))]


def _square(out: np.ndarray, x: np.ndarray) -> list[Call]:
    """x = out**2, for tanh' = 1 - out**2."""
    return [(np.multiply, (out, out, x))]


def _factor(act: str, out: np.ndarray, t: np.ndarray, one: np.ndarray) -> list[Call]:
    """t = s act'(z) from the output of a relu or (negated, s = -1) sigmoid layer."""
    if act == "relu":  # H(z) with H(0) = 0; out = max(z, 0) >= 0, so sign(out) is 0 or 1
        return [(np.sign, (out, t))]
    return [(np.subtract, (out, one, t)), (np.multiply, (t, out, t))]  # -(out * (1 - out)) = (out - 1) * out


def runner(plan: list[Call]) -> Callable[[Sequence[np.ndarray]], None]:
    """A function running ``plan`` once per slot it is given, each call written out as a line of Python.

    ``for f, args in plan: f(*args)`` pays for the loop, the tuple unpacking and
    the argument spreading on every call; the generated function makes the same
    calls in the same order with each function and operand a local variable, as
    ``call_floor_s`` makes its calls (a few per cent off a 2-4-1 step). ``SLOT`` in a call's arguments stands for the step's slot. The source
    depends only on the plan's shape, so it is compiled once per shape (``_maker``).
    """
    names, values, lines = [], [], []
    for k, (f, args) in enumerate(plan):
        names.append(f"f{k}")
        values.append(f)
        operands = []
        for j, arg in enumerate(args):
            if arg is SLOT:
                operands.append("slot")
            else:
                names.append(f"a{k}_{j}")
                values.append(arg)
                operands.append(names[-1])
        lines.append(f"            f{k}({', '.join(operands)})")
    return _maker(tuple(names), "\n".join(lines) or "            pass")(*values)


@lru_cache(maxsize=64)
def _maker(names: tuple[str, ...], body: str) -> Callable[..., Callable[[Sequence[np.ndarray]], None]]:
    """``make(*values)``: binds a plan's functions and operands as the defaults of a generated ``run(slots)``."""
    bound = ", ".join(names)
    source = (f"def make({bound}):\n    def run(slots, {', '.join(f'{n}={n}' for n in names)}):\n"
              f"        for slot in slots:\n{body}\n    return run\n")
    namespace: dict[str, object] = {}
    exec(compile(source, f"<numpy-fast plan of {body.count(chr(10)) + 1} calls>", "exec"), namespace)  # noqa: S102
    return namespace["make"]  # type: ignore[return-value]


class FastNet:
    """One network's buffers and its forward, backward and update plans.

    ``scale`` is what the output error is multiplied by, so that the gradient
    buffer holds ``scale * gradient``: ``lr`` (``lr / count`` under the mean
    reduction) for training, where the update is then one subtract; ``None`` for
    the plain gradient (the mean reduction divides by the count, as numpy does).
    The backward pass carries ``d_i = s_i scale dL/dz_i`` (s_i = -1 for a sigmoid layer, else 1).
    """

    def __init__(self, spec: ModelSpec, params: Params, x: np.ndarray, scale: float | None = None) -> None:
        self.spec, self.dtype, self.count = spec, np.dtype(spec.dtype), x.shape[0]
        self.one, self.zero = np.ones((), self.dtype), np.zeros((), self.dtype)
        self.signs = [-1 if act == "sigmoid" else 1 for act in spec.activations]
        per = self.count * spec.layers[-1] if spec.reduction == "mean" else 1
        self.scale = None if scale is None else np.array(scale / per, self.dtype)
        self.per = np.array(per, self.dtype)
        self._parameters(params)
        self._buffers(x)
        self.forward = self._forward()
        self.backward = self._factors() + self._output_error() + self._backprop()
        self.update: list[Call] = [(np.subtract, (self.flat, self.grad, self.flat))]

    def _parameters(self, params: Params) -> None:
        """One flat array of blocks s [w; b], and one of their gradients."""
        shapes = [(n + 1, m) for n, m in zip(self.spec.layers, self.spec.layers[1:])]
        ends = np.cumsum([0] + [n * m for n, m in shapes])
        self.flat, self.grad = np.empty(ends[-1], self.dtype), np.zeros(ends[-1], self.dtype)
        self.blocks = [self.flat[a:b].reshape(s) for a, b, s in zip(ends, ends[1:], shapes)]
        self.grads = [self.grad[a:b].reshape(s) for a, b, s in zip(ends, ends[1:], shapes)]
        for i, (block, sign) in enumerate(zip(self.blocks, self.signs)):
            block[:-1], block[-1:] = params[f"w{i}"], params[f"b{i}"]
            block *= sign

    def _buffers(self, x: np.ndarray) -> None:
        """Every array a step touches, transposed (features by samples)."""
        sizes, acts, count, dtype = self.spec.layers, self.spec.activations, self.count, self.dtype
        last = self.spec.depth - 1
        # The layers whose factor is 1 - X: X and the factors are row blocks of ``squares`` and ``factors``.
        # Fused (training sel with a sigmoid output): one more block each, the constant scale and e.
        self.stacked = [i for i, act in enumerate(acts[:-1]) if act == "tanh"]
        self.stacked += [last] if self.spec.loss == "sel" and acts[-1] in ("tanh", "sigmoid") else []
        self.fused = self.scale is not None and self.spec.loss == "sel" and acts[-1] == "sigmoid"
        rows = np.cumsum([0] + [sizes[i + 1] for i in self.stacked] + ([sizes[-1]] if self.fused else []))
        self.squares, self.factors = np.empty((rows[-1], count), dtype), np.empty((rows[-1], count), dtype)
        self.xs = {i: self.squares[a:b] for i, a, b in zip(self.stacked, rows, rows[1:])}
        self.ts = {i: self.factors[a:b] for i, a, b in zip(self.stacked, rows, rows[1:])}
        self.split = rows[len(self.stacked)]

        self.inputs = [np.ones((n + 1, count), dtype) for n in sizes[:-1]]  # layer inputs, a last row of ones
        self.inputs[0][:-1] = np.asarray(x, dtype).T
        self.y = np.empty((sizes[-1], count), dtype)
        sigmoid_x = last in self.xs and acts[-1] == "sigmoid"  # its X is the output itself
        self.out = self.xs[last] if sigmoid_x else np.empty((sizes[-1], count), dtype)
        self.outputs = [h[:-1] for h in self.inputs[1:]] + [self.out]  # contiguous row blocks
        self.deltas = [np.empty((m, count), dtype) for m in sizes[1:]]
        if self.fused:
            self.squares[self.split:] = self.scale
            self.deltas[last] = self.factors[self.split:]

    def _forward(self) -> list[Call]:
        """Per layer: [z or -z] = block^T [h; 1], then the activation; hidden layers compute in place."""
        calls, last, dot = [], self.spec.depth - 1, _dot()
        for i, act in enumerate(self.spec.activations):
            z = SLOT if i == last else self.outputs[i]
            calls += [(dot, (self.blocks[i].T, self.inputs[i], z))]
            calls += _activation(act, z, self.outputs[i], self.one, self.zero)
        return calls

    def _factors(self) -> list[Call]:
        """The hidden layers' s act'(z), and the output's 1 - X: every 1 - X in one subtract."""
        calls: list[Call] = []
        for i in self.stacked:
            calls += [] if self.xs[i] is self.outputs[i] else _square(self.outputs[i], self.xs[i])
        if self.stacked:
            rows = slice(0, self.split)
            calls.append((np.subtract, (np.ones_like(self.squares[rows]), self.squares[rows], self.factors[rows])))
        for i, act in enumerate(self.spec.activations[:-1]):
            if act in ("relu", "sigmoid"):
                self.ts[i] = np.empty_like(self.outputs[i])
                calls += _factor(act, self.outputs[i], self.ts[i], self.one)
        return calls

    def _output_error(self) -> list[Call]:
        """e = s scale dL/dz of the output layer (s = -1 for sigmoid)."""
        last, act = self.spec.depth - 1, self.spec.activations[-1]
        out, e, y = self.outputs[last], self.deltas[last], self.y
        if self.spec.loss == "bce":  # sigmoid output: dL/dz = y_hat - y
            calls = [(np.subtract, (y, out, e))]
        elif self.fused:  # e = y - y_hat; [1 - out; e] *= [out; scale] in one call; e *= (1 - out) out
            both = slice(self.split - out.shape[0], None)
            factor, square = self.factors[both], self.squares[both]
            return [(np.subtract, (y, out, e)), (np.multiply, (factor, square, factor)),
                    (np.multiply, (e, self.ts[last], e))]
        elif act == "sigmoid":  # (y - y_hat) (1 - out) out
            calls = [(np.multiply, (self.ts[last], out, self.ts[last])), (np.subtract, (y, out, e)),
                     (np.multiply, (e, self.ts[last], e))]
        else:  # (y_hat - y) act'(z)
            calls = [(np.subtract, (out, y, e))]
            if act == "relu":
                self.ts[last] = np.empty_like(out)
                calls += _factor("relu", out, self.ts[last], self.one)
            calls += [(np.multiply, (e, self.ts[last], e))] if last in self.ts else []
        if self.scale is not None:
            return calls + [(np.multiply, (e, self.scale, e))]
        return calls + ([(np.divide, (e, self.per, e))] if self.per > 1 else [])

    def _backprop(self) -> list[Call]:
        """Per layer from the last: [dw; db] = [h; 1] d^T, then d_prev = w d times the factor."""
        calls, dot, deltas = [], _dot(), self.deltas
        for i in range(self.spec.depth - 1, -1, -1):
            calls.append((dot, (self.inputs[i], deltas[i].T, self.grads[i])))
            if i:
                calls.append((dot, (self.blocks[i][:-1], deltas[i], deltas[i - 1])))
                if i - 1 in self.ts:
                    calls.append((np.multiply, (deltas[i - 1], self.ts[i - 1], deltas[i - 1])))
        return calls

    def step(self) -> list[Call]:
        """One training step: forward, backward, update."""
        return self.forward + self.backward + self.update

    def run(self, plan: list[Call], slots: Sequence[np.ndarray]) -> None:
        """``plan`` once per slot, call by call: for the one-off passes (forward, loss and gradients), where
        binding a ``runner`` costs more than it saves."""
        for slot in slots:
            for f, args in plan:
                f(*(slot if arg is SLOT else arg for arg in args))

    def set_targets(self, y: np.ndarray) -> None:
        self.y[...] = np.asarray(y, self.dtype).T

    def params(self, source: list[np.ndarray] | None = None) -> dict[str, np.ndarray]:
        """Fresh copies named w0, b0, ... of the parameter blocks (or of ``source``, e.g. the gradients)."""
        named = {}
        for i, (block, sign) in enumerate(zip(self.blocks if source is None else source, self.signs)):
            named[f"w{i}"], named[f"b{i}"] = sign * block[:-1], sign * block[-1:]
        return named

    def gradients(self) -> dict[str, np.ndarray]:
        return self.params(self.grads)
