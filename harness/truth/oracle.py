"""The oracle: the spec's MLP written anew from ``ModelSpec``'s definition, in extended precision.

It imports nothing from ``impls/`` but the spec (and from the harness only the truth's own modules:
tolerances, update rules, products), so no bug in an implementation can reach the truth it is judged
against. Its gradients come from two methods
that share no derivation:

- **complex step** in ``np.clongdouble``: d f / d theta_k = Im f(theta + i h e_k) / h
  with h = 1e-30. Nothing is subtracted, so nothing cancels: the derivative is
  as exact as the forward pass. One batched forward pass with one copy of the
  network per parameter entry gives every partial derivative, each sample's
  term apart, so the term scale sum_s |d loss_s / d theta| comes free.
- **reverse mode**, written here from the chain rule, in any real dtype:
  longdouble to train the truth's own trajectory (faster than complex step
  already at 2-4-1), float64 and float32 for the reference runs in the run's dtype.
  Every gradient the checks take from the oracle is verified: reverse mode
  against complex step, entry by entry (or, for networks too large for one
  copy per entry, along seeded random directions).

Every activation and loss is complex-safe: relu by the sign of the real part
(relu'(0) = 0), the sigmoid and bce split on the sign of the real part instead
of ``logaddexp`` (which has no complex loop).
"""
from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from typing import Callable, Mapping, Sequence

import ml_dtypes
import numpy as np
from scipy.special import expit

from harness.truth.kernels import FUSED_MIN, tanh_and_slope
from harness.truth.optimizers import BIAS_SUM, DECAY_FORMS, RELU_CONVENTION, Rule, initial_loss_scale
from harness.truth.products import EXTENDED, SPLIT, Halves, halves, matmul, worth_splitting
from harness.truth.tolerances import ORACLE_CONDITIONED, ORACLE_SAMPLES, ORACLE_SELF_CHECK
from impls.spec import CONVENTIONS, ModelSpec

COMPLEX = np.clongdouble
NOTEBOOK_FD_STEP = 1e-8  # the notebook's prime(): the plain evaluation that numpy-fd's rounding is measured by
STEP = 1e-30  # complex step h: Im f(x + ih) / h has error O(h^2 f'''), far below longdouble's eps
# Full complex step costs about 60 ns x P x k x sum(n m) (P parameter entries, k samples, n m per layer):
# 65 us at 2-4-1, 7.5 ms at 4-16-1 on parity:4, 134 ms at 4-64-1. Above this work (about 12 ms a state)
# reverse mode gives the entries and complex step checks it along directions.
FULL_COMPLEX_STEP_MAX = 200_000
HISTORY_ELEMENTS = 1 << 16  # output values kept between two vectorised loss passes while training
VERIFY_DIRECTIONS = 4  # seeded random directions for the complex-step check of a large network's reverse pass
FAST_COMPLEX_TANH_MIN = 4096  # complex arrays from this size take tanh by its identity in real functions (_tanh)
TANH_IDENTITY_MAX = 40.0  # |Re z| up to which that identity is used (cosh 80 = 2.8e34: nothing overflows)
STEP_IMAG_MAX = 2.0 ** -34  # |Im z| below which cos 2y is 1 and sin 2y is 2y to within 2^-66 (complex step's are
# about STEP): there the identity is tanh x + i y / cosh^2 x, two real functions instead of four

Params = Mapping[str, np.ndarray]


@dataclass
class Effects:
    """What a reduced dtype did to one of the oracle's runs in it (``Oracle.train``)."""

    updates: int = 0  # parameter entries with a nonzero gradient, over the steps taken
    lost: int = 0  # of those, entries the step left where they were: the update rounded away
    underflows: int = 0  # mixed: scaled loss-gradient entries, nonzero in float32, that round to 0 in the dtype
    skipped: list[int] = field(default_factory=list)  # mixed float16: the steps loss scaling skipped
    scales: list[float] = field(default_factory=list)  # mixed float16: the loss scale it starts at and each change


class OracleError(Exception):
    """The oracle's two differentiation methods disagree: a bug in the harness, never in an implementation."""


@dataclass(frozen=True)
class Truth:
    """Loss and gradients at one state, in longdouble, with the scale their rounding is judged against."""

    loss: np.longdouble  # the reported (mean) loss
    grads: dict[str, np.ndarray]
    scale: dict[str, np.ndarray]  # sum over samples of |each sample's term| (and the loss itself)
    method: str  # how the gradients were taken


def _relu(z, at_zero: float = 0.0):
    """relu, whose complex step gives relu'(0) = ``at_zero`` (the spec's 0, or what an implementation states).

    For complex input, a real part within STEP of 0 is the kink: perturbing every entry at once (the
    directional complex step) gives an exactly-zero pre-activation a real part of O(STEP^2) from products of
    imaginary parts, whose sign would otherwise pick a branch at random (found by harness.fuzz). There the
    value is at_zero * z: its real part is O(STEP^2), its imaginary part carries the slope at_zero."""
    if not np.iscomplexobj(z):
        return z * (z > 0)
    return z * np.where(z.real > STEP, 1, np.where(z.real >= -STEP, at_zero, 0))


def _sigmoid(z):
    """1 / (1 + e^-z) where Re z >= 0, e^z / (1 + e^z) below: the branch used never overflows."""
    with np.errstate(over="ignore", invalid="ignore"):
        return np.where(z.real >= 0, 1 / (1 + np.exp(-z)), np.exp(z) / (1 + np.exp(z)))


def _softplus(z):
    """log(1 + e^z), as z + log(1 + e^-z) where Re z > 0 so the exponential never overflows."""
    with np.errstate(over="ignore", invalid="ignore"):
        return np.where(z.real > 0, z + np.log1p(np.exp(-z)), np.log1p(np.exp(z)))


def _tanh(z):
    """tanh; for a large complex array (complex step through a wide layer) as (sinh 2x + i sin 2y) / (cosh 2x +
    cos 2y), z = x + iy, from real functions at a third of the cost of NumPy's complex tanh, which keeps the
    entries with |x| > ``TANH_IDENTITY_MAX`` (where cosh 2x would grow past what the identity needs) and every
    small array (the default run's numbers stay as they were). Where every |y| is below ``STEP_IMAG_MAX`` (complex
    step's perturbations) the identity reduces to tanh x + i y / cosh^2 x, to within 2^-66 of each part."""
    if not np.iscomplexobj(z) or z.size < FAST_COMPLEX_TANH_MIN:
        return np.tanh(z)
    found = np.empty_like(z)
    if np.max(np.abs(z.imag)) < STEP_IMAG_MAX:  # (sinh 2x + i 2y) / (cosh 2x + 1): relative changes below 2^-66
        x = z.real
        if x.ndim > 1 and len(x) > 1 and np.array_equal(x, np.broadcast_to(x[:1], x.shape)):
            x = x[:1]  # copies of one network stepped along several directions: only Im z differs between them
        with np.errstate(over="ignore"):
            found.real, found.imag = np.tanh(x), z.imag / np.cosh(x) ** 2
        return found
    x, y = 2 * z.real, 2 * z.imag
    with np.errstate(over="ignore", invalid="ignore"):
        below = np.cosh(x) + np.cos(y)
        found.real, found.imag = np.sinh(x) / below, np.sin(y) / below
    far = np.abs(z.real) > TANH_IDENTITY_MAX
    if far.any():
        found[far] = np.tanh(z[far])
    return found


ACTIVATIONS = {"relu": _relu, "tanh": _tanh, "sigmoid": _sigmoid, "identity": lambda z: z}


def _activation_slope(name: str, z: np.ndarray, out: np.ndarray, textbook: bool = False,
                      relu0: float = 0.0) -> np.ndarray:
    """d out / d z (relu'(0) = ``relu0``). The truth takes it from z, in forms that stay accurate where the
    activation saturates; ``textbook`` takes it from the output (1 - tanh^2, s (1 - s)), which cancels
    there, as plain implementations do: the reference runs in float64 and float32 round like them."""
    if name == "relu":
        slope = (z > 0).astype(z.dtype)
        return slope + z.dtype.type(relu0) * (z == 0) if relu0 else slope
    if name == "tanh":
        if textbook:
            return 1 - out * out
        with np.errstate(over="ignore"):
            return 1 / np.cosh(z) ** 2
    if name == "sigmoid":
        return out * (1 - out) if textbook else out * expit(-z)  # s(z) s(-z): no 1 - s to cancel
    return np.ones_like(z)


CACHE_BYTES = 256 << 20  # truths kept for asking again; past it, one asked again is computed again (in a
# worker the caller keeps them, and a 10-1024-1024-1 network's are 34 MB each)


def _fingerprint(*arrays: np.ndarray) -> bytes:
    """A 16-byte fingerprint of the arrays' dtypes, shapes and values."""
    h = hashlib.blake2b(digest_size=16)
    for a in arrays:
        h.update(f"{a.dtype.str}{a.shape}".encode())
        h.update(np.ascontiguousarray(a).view(np.uint8).ravel())
    return h.digest()


class Oracle:
    """The truth for one ``ModelSpec`` (its dtype is ignored: the oracle picks its own).

    ``relu0`` is relu'(0): the spec's 0, or the value an implementation states, for the truth under its
    convention (``harness.checks.conventions``)."""

    def __init__(self, spec: ModelSpec, relu0: float = 0.0) -> None:
        self.spec, self.relu0 = spec, float(relu0)
        self.names = list(spec.param_shapes())
        self.shapes = spec.param_shapes()
        self._cache: dict[bytes, Truth] = {}  # by the state's fingerprint, up to CACHE_BYTES of them
        self._cached_bytes = 0
        self.effects: list[Effects] = []  # per start of the last train() in a reduced dtype: what it did
        # per start of the last train(), bce only: each step's loss_scale (its terms' magnitudes), else None
        self.loss_terms: list[np.ndarray | None] = []
        self.complex_step_s = 0.0  # wall seconds spent in complex step so far (its share of the oracle's cost)

    # -- the forward pass, for a stack of B parameter sets at once -------------------------------------
    def _per_sample(self, q: Mapping[str, np.ndarray], x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(each sample's share of the objective, shape (B, k); the per-element loss, shape (B, k, m))."""
        h = x[None]
        for i, act in enumerate(self.spec.activations):
            z = matmul(h, q[f"w{i}"]) + q[f"b{i}"]
            h = _relu(z, self.relu0) if act == "relu" else ACTIVATIONS[act](z)
        per_element = _softplus(z) - y * z if self.spec.loss == "bce" else 0.5 * (y - h) ** 2
        weight = 1 if self.spec.reduction == "sum" else 1 / y.size
        return per_element.sum(axis=-1) * weight, per_element

    def _stack(self, flat: np.ndarray) -> dict[str, np.ndarray]:
        """(B, P) flat parameter vectors as named (B, n, m) arrays."""
        out, at = {}, 0
        for name in self.names:
            n, m = self.shapes[name]
            out[name] = flat[:, at:at + n * m].reshape(-1, n, m)
            at += n * m
        return out

    def _flat(self, params: Params, dtype) -> np.ndarray:
        return np.concatenate([np.asarray(params[k], dtype).ravel() for k in self.names])

    def _unflat(self, vector: np.ndarray) -> dict[str, np.ndarray]:
        return {k: v[0] for k, v in self._stack(vector[None]).items()}

    def loss(self, params: Params, x: np.ndarray, y: np.ndarray) -> np.longdouble:
        """The reported (mean) loss, in longdouble."""
        q = {k: np.asarray(v, EXTENDED)[None] for k, v in params.items()}
        _, per_element = self._per_sample(q, np.asarray(x, EXTENDED), np.asarray(y, EXTENDED))
        return per_element.mean()

    def predict(self, params: Params, x: np.ndarray, dtype=np.float64) -> np.ndarray:
        """The plain forward pass in ``dtype``: the network's outputs (what a forward() returns)."""
        h = np.asarray(x, dtype)
        for i, act in enumerate(self.spec.activations):
            h = ACTIVATIONS[act](h @ np.asarray(params[f"w{i}"], dtype) + np.asarray(params[f"b{i}"], dtype))
        return h

    def loss_scale(self, params: Params, x: np.ndarray, y: np.ndarray, loss: np.longdouble | None = None
                   ) -> np.ndarray:
        """What the reported loss's rounding is judged against: the loss itself for sel; for bce the mean of
        its two terms' magnitudes, log(1 + e^z) + |y z|, which cancel where the logits saturate the right way
        (a well-trained net): any formula of the element, z + log1p(e^-z) - z or torch's (1 - y) z -
        log_sigmoid(z), rounds to a few ulps of these terms, not of their tiny difference."""
        if self.spec.loss != "bce":  # the loss itself (``loss``, where the caller has it already)
            return np.asarray(self.loss(params, x, y) if loss is None else loss)
        z, y = self.preactivations(params, x)[-1], np.asarray(y, EXTENDED)
        return np.asarray((_softplus(z) + np.abs(y * z)).mean())

    def preactivations(self, params: Params, x: np.ndarray) -> list[np.ndarray]:
        """z of every layer, in longdouble (to tell when a relu sits exactly at its kink)."""
        h, zs = np.asarray(x, EXTENDED), []
        for i, act in enumerate(self.spec.activations):
            z = matmul(h, np.asarray(params[f"w{i}"], EXTENDED)) + np.asarray(params[f"b{i}"], EXTENDED)
            zs.append(z)
            h = ACTIVATIONS[act](z)
        return zs

    # -- complex step ----------------------------------------------------------------------------------
    def _complex_terms(self, flat: np.ndarray, directions: np.ndarray, x, y) -> np.ndarray:
        """(D, k): each sample's derivative along each of the D directions, by complex step."""
        start = time.perf_counter()
        copies = flat[None].astype(COMPLEX) + 1j * STEP * directions.astype(EXTENDED)
        per_sample, _ = self._per_sample(self._stack(copies), np.asarray(x, EXTENDED), np.asarray(y, EXTENDED))
        self.complex_step_s += time.perf_counter() - start
        return per_sample.imag / EXTENDED(STEP)

    def full_complex_step(self, size: int, x: np.ndarray) -> bool:
        """Whether one network copy per parameter entry fits the work bound."""
        weights = sum(n * m for n, m in zip(self.spec.layers, self.spec.layers[1:]))
        return size * x.shape[0] * weights <= FULL_COMPLEX_STEP_MAX

    # -- reverse mode, in any real dtype ---------------------------------------------------------------
    def reverse(self, params: Params, x: np.ndarray, y: np.ndarray, dtype=EXTENDED, with_scale: bool = False,
                textbook: bool = False, kernel_ulp: bool = False, fd_step: float | None = None,
                noise: tuple[int, float] | None = None
                ) -> tuple[np.ndarray, dict[str, np.ndarray], dict[str, np.ndarray]]:
        """(reported loss, gradients, term scale if asked) by the chain rule, every array in ``dtype``.

        The plain evaluations a correct implementation may round like: ``textbook`` slopes from the outputs;
        ``kernel_ulp`` every activation output one ulp toward zero (a kernel one ulp off, as XLA's tanh is up to
        4 ulps); ``fd_step`` the loss's derivative and the slope of every tanh and sigmoid by the notebook's
        central difference, as ``numpy-fd`` takes them; ``noise`` = (seed, k): Monte Carlo arithmetic, every
        activation output moved by a random amount of up to k of its ulps (a kernel up to k ulps off) and every
        product h @ w by a random amount of up to half an ulp of |h| @ |w| (another summation order)."""
        p = {k: np.asarray(v, dtype) for k, v in params.items()}
        x, y = np.asarray(x, dtype), np.asarray(y, dtype)
        rng = np.random.default_rng(noise[0]) if noise else None
        inputs, zs, outs, h = [], [], [], x
        for i, act in enumerate(self.spec.activations):
            z = _product(h, p[f"w{i}"], dtype) + p[f"b{i}"]
            if rng is not None:
                unit = dtype(ml_dtypes.finfo(dtype).eps / 2)
                z = z + (rng.uniform(-1, 1, z.shape) * unit * matmul(np.abs(h), np.abs(p[f"w{i}"]))).astype(dtype)
            inputs.append(h)
            zs.append(z)
            h = ACTIVATIONS[act](z)
            if kernel_ulp:
                h = np.nextafter(h, np.zeros((), dtype))
            if rng is not None and act != "identity":
                h = h + (rng.uniform(-noise[1], noise[1], h.shape) * np.spacing(np.abs(h))).astype(dtype)
                h = np.maximum(h, 0) if act == "relu" else h
            outs.append(h)
        if fd_step is not None:  # slopes of the smooth activations by (f(z + h) - f(z - h)) / 2h, in dtype
            step = dtype(fd_step)
            slopes = [_difference_slope(a, z, step, self.relu0, rng) if a in BY_DIFFERENCE
                      else _activation_slope(a, z, out, textbook, self.relu0)
                      for a, z, out in zip(self.spec.activations, zs, outs)]
            if self.spec.loss == "bce" and self.spec.activations[-1] == "sigmoid":  # prime(sigmoid) at the output
                slopes[-1] = (_sigmoid(z + step) - _sigmoid(z - step)) / (2 * step)
            slope = lambda i, name, z, out: slopes[i]  # noqa: E731
        else:
            slope = lambda i, name, z, out: _activation_slope(name, z, out, textbook, self.relu0)  # noqa: E731
        z, out = zs[-1], outs[-1]
        if self.spec.loss == "bce":
            per_element = _softplus(z) - y * z
            delta = out - y  # d/dz [log(1 + e^z) - y z]
        else:
            per_element = (y - out) * (y - out) / 2
            delta = (out - y) * slope(self.spec.depth - 1, self.spec.activations[-1], z, out)
        if fd_step is not None:  # the notebook's prime(loss_fn, y_pred) times prime(activation, z); bce's of z
            delta = _logit_difference(z, y, dtype(fd_step), rng) if self.spec.loss == "bce" else \
                _loss_difference(self.spec.loss, out, y, dtype(fd_step), rng) * slopes[-1]
        if self.spec.reduction == "mean":
            delta = delta / dtype(y.size)
        grads, scale = {}, {}
        for i in reversed(range(self.spec.depth)):
            if i < self.spec.depth - 1:
                delta = delta * slope(i, self.spec.activations[i], zs[i], outs[i])
            grads[f"w{i}"] = _product(inputs[i].T, delta, dtype)
            grads[f"b{i}"] = _column_sum(delta, dtype)
            if with_scale:
                scale[f"w{i}"] = matmul(np.abs(inputs[i]).T, np.abs(delta))
                scale[f"b{i}"] = np.abs(delta).sum(axis=0, keepdims=True)
            delta = _product(delta, p[f"w{i}"].T, dtype)
        loss = per_element.mean()
        if with_scale:
            scale["loss"] = np.asarray(loss)
        return loss, {k: grads[k] for k in self.names}, {k: scale[k] for k in ["loss", *self.names]} if with_scale \
            else {}

    # -- the truth at one state ------------------------------------------------------------------------
    def truth(self, params: Params, x: np.ndarray, y: np.ndarray) -> Truth:
        """Loss and gradients at ``params`` (as given, in whatever dtype), exact to longdouble.

        Complex step gives every entry where the network is small enough; beyond that
        reverse mode gives them and complex step checks it along seeded random directions.
        Either way reverse mode and complex step must agree, or OracleError is raised.
        """
        key = _fingerprint(*(np.asarray(params[k]) for k in self.names), np.asarray(x))
        if key in self._cache:
            return self._cache[key]
        flat = self._flat(params, EXTENDED)
        _, rev, rev_scale = self.reverse(params, x, y, EXTENDED, with_scale=True)
        rev_flat = self._flat(rev, EXTENDED)
        scale_flat = self._flat({k: rev_scale[k] for k in self.names}, EXTENDED)
        spread = lambda: self._spread(params, x, y, rev_flat)  # noqa: E731 -- measured only where needed
        if self.full_complex_step(flat.size, np.asarray(x)):
            terms = self._complex_terms(flat, np.eye(flat.size), x, y)  # (P, k)
            grad_flat, scale_flat = terms.sum(axis=1), np.abs(terms).sum(axis=1)
            _agree(rev_flat, grad_flat, scale_flat, "entry by entry", spread)
            grads, method = self._unflat(grad_flat), "complex step, every entry"
        else:
            rng = np.random.default_rng(flat.size)
            directions = rng.choice((-1.0, 1.0), size=(VERIFY_DIRECTIONS, flat.size))
            along = self._complex_terms(flat, directions, x, y).sum(axis=1)
            _agree(directions @ rev_flat, along, np.abs(directions) @ scale_flat,
                   f"along {VERIFY_DIRECTIONS} random directions", lambda: np.abs(directions) @ spread())
            grads, method = rev, f"reverse mode, checked by complex step along {VERIFY_DIRECTIONS} directions"
        loss = self.loss(params, x, y)
        scale = {"loss": self.loss_scale(params, x, y, loss), **self._unflat(scale_flat)}
        found = Truth(loss, {k: np.asarray(grads[k], EXTENDED) for k in self.names}, scale, method)
        size = sum(np.asarray(v).nbytes for part in (found.grads, found.scale) for v in part.values())
        if self._cached_bytes + size <= CACHE_BYTES:
            self._cache[key] = found
            self._cached_bytes += size
        return found

    def _spread(self, params: Params, x: np.ndarray, y: np.ndarray, exact: np.ndarray) -> np.ndarray:
        """Flat, per entry: how far reverse mode in longdouble moves when every activation output is one ulp off
        and every product half an ulp of its terms, at random (ORACLE_SAMPLES seeded samples): the state's
        conditioning, measured. Where outputs nearly equal their targets, the residual cancels and both exact
        methods are only this good."""
        found = np.zeros_like(exact)
        for sample in range(ORACLE_SAMPLES):
            _, grads, _ = self.reverse(params, x, y, EXTENDED, noise=(sample, 1.0))
            found = np.maximum(found, np.abs(self._flat(grads, EXTENDED) - exact))
        return found

    # -- training --------------------------------------------------------------------------------------
    def train(self, starts: Sequence[Params], x: np.ndarray, y: np.ndarray, steps: int, record: Sequence[int] = (),
              dtype=EXTENDED, textbook: bool = False, kernel_ulp: Sequence[bool] = (),
              fd_slopes: Sequence[bool] = (), conventions: Mapping[str, str] | None = None,
              complements_exact: bool = False, decay_form: str = DECAY_FORMS[0],
              noise: Sequence[tuple[int, float] | None] = (), loss_scale: float | None = None
              ) -> list[tuple[np.ndarray, dict[str, np.ndarray], dict[int, dict[str, np.ndarray]]]]:
        """Per start: (per-step reported losses, final parameters, checkpoints), by the spec's optimizer in
        ``dtype`` (``harness.truth.optimizers``; under a framework's stated ``conventions`` if given).

        Several starts train as one stack (a reference run and its twins cost little
        more than one). ``textbook`` takes activation slopes from the outputs, as plain
        implementations do; ``kernel_ulp[j]`` moves every activation output of start j
        one ulp toward zero, as a kernel one ulp off would; ``fd_slopes[j]`` takes start
        j's loss derivative and tanh and sigmoid slopes by the notebook's central
        difference (h = 1e-8), as ``numpy-fd`` does; ``noise[j]`` = (seed, k) runs start j
        in Monte Carlo arithmetic, as ``reverse`` does at one state: every step, each tanh
        and sigmoid output moved at random by up to k ulps and each product by up to half
        an ulp of its absolute terms. Under the mixed policy with loss scaling, ``loss_scale`` replaces the
        scale it starts from. In a reduced dtype ``self.effects`` says, per start, what it did (``Effects``).
        The loop is ``reverse`` unrolled for real arrays into preallocated buffers, because a 100,000-step run
        spends its time in per-call overhead, not arithmetic: each layer's bias rides
        in its weight matrix as one more row, fed by a column of ones in the layer's
        input, so one matmul gives z = h w + b and one more gives both gradients.
        """
        wanted = set(record)
        depth, acts, count = self.spec.depth, self.spec.activations, len(starts)
        widths, k = self.spec.layers, np.shape(x)[0]
        # Under the mixed policy (impls.spec) the parameters and the update are float32 (``master``) and the
        # forward and backward passes run in ``dtype``; float16 scales the loss, so each start skips its own steps
        mixed = self.spec.mixed and np.dtype(dtype).itemsize < 4
        master = np.float32 if mixed else dtype
        scaling = self.spec.loss_scale if mixed else None
        if scaling is not None and count > 1:
            def own(flags: Sequence, j: int) -> list:
                return list(flags[j:j + 1])
            found, effects, terms = [], [], []
            for j, start in enumerate(starts):
                found += self.train([start], x, y, steps, record, dtype, textbook, own(kernel_ulp, j),
                                    own(fd_slopes, j), conventions, complements_exact, decay_form, own(noise, j),
                                    loss_scale)
                effects += self.effects
                terms += self.loss_terms
            self.effects, self.loss_terms = effects, terms
            return found
        # Every start's parameters in one flat row (w0, b0, w1, b1, ...) and the gradients in another. Layer
        # i's w (n x m) and b (1 x m) are consecutive, so together they are one (n + 1) x m block of the row:
        # one update serves the whole network (two calls a step for SGD).
        ends = np.cumsum([0] + [(n + 1) * m for n, m in zip(widths, widths[1:])])
        flat = np.empty((count, ends[-1]), master)
        low = np.empty((count, ends[-1]), dtype) if mixed else flat  # the weights the passes compute with
        grad = np.empty((count, ends[-1]), dtype)
        grad_master = np.empty_like(flat) if mixed else grad

        def split(row: np.ndarray) -> list[np.ndarray]:
            return [row[:, a:b].reshape(count, n + 1, m) for a, b, n, m in zip(ends, ends[1:], widths, widths[1:])]
        kept_blocks, blocks, grads = split(flat), split(low), split(grad)
        for i, block in enumerate(kept_blocks):
            block[:, :-1] = np.stack([np.asarray(p[f"w{i}"], master) for p in starts])
            block[:, -1:] = np.stack([np.asarray(p[f"b{i}"], master) for p in starts])
        # Layer i's input with its column of ones, (count, k, n + 1); the output layer's values apart.
        inputs = [np.ones((count, k, n + 1), dtype) for n in widths[:-1]]
        inputs[0][..., :-1] = np.asarray(x, dtype)
        outs = [a[..., :-1] for a in inputs[1:]] + [np.empty((count, k, widths[-1]), dtype)]
        zs = [np.empty((count, k, m), dtype) for m in widths[1:]]
        inputs_t = [np.swapaxes(a, -1, -2) for a in inputs]
        weights_t = [np.swapaxes(block[:, :-1], -1, -2) for block in blocks]  # w without its bias row
        y_loss = np.asarray(y, master)  # the loss and its derivative: float32 under the mixed policy
        y = np.asarray(y, dtype)
        half, size = np.asarray(0.5, master), np.asarray(y.size, master)
        rule = Rule(self.spec, master, conventions, complements_exact=complements_exact, decay_form=decay_form)
        scale, finite_run = master((loss_scale or initial_loss_scale(self.spec, conventions)) if scaling else 1), 0
        low_run = np.dtype(dtype).itemsize < 4  # counted only there: a float64 or float32 run pays nothing
        self.effects = [Effects(scales=[float(scale)] if scaling else []) for _ in starts]

        def tally(found: np.ndarray) -> list[int]:  # per start
            return list(np.count_nonzero(found.reshape(len(starts), -1), axis=1))
        bce, mean = self.spec.loss == "bce", self.spec.reduction == "mean"
        kernels = {"relu": lambda z, out: np.maximum(z, 0, out=out), "tanh": np.tanh, "sigmoid": expit,
                   "identity": lambda z, out: np.copyto(out, z)}
        act_fns = [kernels[a] for a in acts]
        nudged = [j for j, flag in enumerate(kernel_ulp) if flag]
        noisy = [(j, np.random.default_rng(found[0]), found[1]) for j, found in enumerate(noise) if found]
        unit = dtype(ml_dtypes.finfo(dtype).eps / 2)
        rngs = {j: rng for j, rng, _ in noisy}  # a noisy start's differences round at random too
        by_difference = [j for j, flag in enumerate(fd_slopes) if flag]
        fd_h = np.asarray(NOTEBOOK_FD_STEP, dtype)

        relu0 = float((conventions or {}).get(RELU_CONVENTION, self.relu0))
        in_dtype_sums = (conventions or {}).get(BIAS_SUM) == CONVENTIONS[BIAS_SUM][1]

        # In longdouble a wide tanh layer's output and slope come from one exponential an entry (kernels), the
        # slope kept from the forward pass for the backward one.
        fused = [np.empty_like(z) if np.dtype(dtype) == np.dtype(EXTENDED) and not textbook and a == "tanh"
                 and z.size >= FUSED_MIN else None for a, z in zip(acts, zs)]

        def slope(i: int, z, out):
            found = _activation_slope(acts[i], z, out, textbook, relu0) if fused[i] is None else fused[i]
            if by_difference and acts[i] in BY_DIFFERENCE:
                for j in by_difference:
                    found[j] = _difference_slope(acts[i], z[j], fd_h, relu0, rngs.get(j))
            return found
        toward = np.zeros((), dtype)
        losses, checkpoints = np.empty((steps, count), master), [{} for _ in starts]
        # The reported loss is computed afterwards, a chunk of steps at a time, from the output layer's
        # kept values: one vectorised pass instead of three small calls per step.
        chunk = max(1, min(steps, HISTORY_ELEMENTS // (count * y.size)))
        history = np.empty((chunk, count, *y.shape), master)
        terms = np.empty((steps, count), master) if bce else None  # bce: per step, what its rounding is judged by

        def state(j: int) -> dict[str, np.ndarray]:
            kept = {}
            for i, block in enumerate(kept_blocks):
                kept[f"w{i}"], kept[f"b{i}"] = block[j, :-1].copy(), block[j, -1:].copy()
            return kept

        def flush(upto: int) -> None:
            done = (upto - 1) // chunk * chunk
            kept = history[:upto - done]
            if bce:  # and the mean of its two terms' magnitudes (``loss_scale``)
                soft, yz = _softplus(kept), y_loss * kept
                per_element = soft - yz
                terms[done:upto] = (soft + np.abs(yz)).mean(axis=(-2, -1))
            else:
                per_element = half * (kept - y_loss) ** 2
            losses[done:upto] = per_element.mean(axis=(-2, -1))

        # Extended products that will be split take each operand's float64 halves, made once a step and shared by
        # its forward and backward products (each layer's input and weights serve two each).
        halving = np.dtype(dtype) == np.dtype(EXTENDED) and SPLIT[0]  # (``split`` above cuts the flat rows)
        layers = list(zip(widths, widths[1:]))
        halve_in = [halving and (worth_splitting(k, n + 1, m) or worth_splitting(n + 1, k, m)) for n, m in layers]
        halve_w = [halving and (worth_splitting(k, n + 1, m) or (i > 0 and worth_splitting(k, m, n)))
                   for i, (n, m) in enumerate(layers)]
        first_in = halves(inputs[0]) if halve_in[0] else None  # the data and its ones: the same every step
        with np.errstate(all="ignore"):
            for step in range(steps):
                if step in wanted:
                    for j, kept in enumerate(checkpoints):
                        kept[step] = state(j)
                if mixed:  # the master weights rounded to the dtype the passes compute in
                    np.copyto(low, flat, casting="unsafe")
                h_w = [halves(block) if halve else None for block, halve in zip(blocks, halve_w)]
                h_in = [first_in] + [None] * (depth - 1)
                for i in range(depth):
                    if i and halve_in[i]:
                        h_in[i] = halves(inputs[i])
                    _into(inputs[i], blocks[i], zs[i], (h_in[i], h_w[i]))
                    for j, rng, _ in noisy:  # another summation order: up to half an ulp of the terms
                        zs[i][j] += rng.uniform(-1, 1, zs[i][j].shape) * unit * (np.abs(inputs[i][j])
                                                                                 @ np.abs(blocks[i][j]))
                    if fused[i] is None:
                        act_fns[i](zs[i], out=outs[i])
                    else:
                        tanh_and_slope(zs[i], outs[i], fused[i])
                    for j in nudged:
                        np.nextafter(outs[i][j], toward, out=outs[i][j])
                    if acts[i] in ("tanh", "sigmoid"):  # another kernel: up to k ulps of the output
                        for j, rng, k in noisy:
                            outs[i][j] += rng.uniform(-k, k, outs[i][j].shape) * np.spacing(np.abs(outs[i][j]))
                z, out = zs[-1], outs[-1]
                history[step % chunk] = z if bce else out
                if step % chunk == chunk - 1:
                    flush(step + 1)
                if mixed:  # d loss / d output (bce: / d z) in float32, scaled, then rounded to the dtype
                    wide = expit(z.astype(master)) - y_loss if bce else out.astype(master) - y_loss
                    wide = (wide / size if mean else wide) * scale
                    top = wide.astype(dtype)
                    for e, n in zip(self.effects, tally((wide != 0) & (top == 0))):
                        e.underflows += n
                    delta = top if bce else top * slope(depth - 1, z, out)
                else:
                    delta = out - y if bce else (out - y) * slope(depth - 1, z, out)
                if by_difference:  # the notebook's prime(loss_fn, y_pred) too: a difference of the loss's values
                    for j in by_difference:
                        delta[j] = _logit_difference(z[j], y, fd_h, rngs.get(j)) if bce else \
                            _loss_difference(self.spec.loss, out[j], y, fd_h, rngs.get(j)) * slope(depth - 1, z, out)[j]
                if mean and not mixed:
                    delta = delta / size
                for i in range(depth - 1, -1, -1):
                    if i < depth - 1:
                        delta = delta * slope(i, zs[i], outs[i])
                    _into(inputs_t[i], delta, grads[i], (_transposed(h_in[i]), None))
                    if in_dtype_sums:  # the bias row summed sample by sample in the dtype, as a stated convention
                        grads[i][:, -1, :] = np.cumsum(delta, axis=1, dtype=dtype)[:, -1, :]
                    if i:
                        weights = None if h_w[i] is None else [h[:, :-1] for h in h_w[i]]  # w without its bias row
                        delta = _product(delta, weights_t[i], dtype, (None, _transposed(weights)))
                if mixed:
                    np.copyto(grad_master, grad, casting="unsafe")
                    if scale != 1:
                        grad_master /= scale
                if scaling is not None and not np.all(np.isfinite(grad_master)):
                    rule.skip()  # the step is skipped, the scale backs off
                    scale, finite_run = scale * master(scaling.backoff), 0
                    self.effects[0].skipped.append(step)
                    self.effects[0].scales.append(float(scale))
                    continue
                if scaling is not None:
                    finite_run += 1
                    if finite_run == scaling.growth_interval:
                        scale, finite_run = scale * master(scaling.growth), 0
                        self.effects[0].scales.append(float(scale))
                before = flat.copy() if low_run else None
                rule.step(flat, grad_master)
                if low_run:
                    moving = grad_master != 0
                    for e, n, m in zip(self.effects, tally((flat == before) & moving), tally(moving)):
                        e.lost, e.updates = e.lost + n, e.updates + m
            if steps % chunk:
                flush(steps)
        if steps in wanted:
            for j, kept in enumerate(checkpoints):
                kept[steps] = state(j)
        self.loss_terms = [None if terms is None else terms[:, j].copy() for j in range(count)]
        return [(losses[:, j].copy(), state(j), checkpoints[j]) for j in range(count)]


def _product(a: np.ndarray, b: np.ndarray, dtype, given: tuple = (None, None)) -> np.ndarray:
    """a @ b in ``dtype``: in a reduced dtype the spec's rule, accumulated in float32 and rounded once (NumPy's
    bfloat16 matmul returns float32, its float16 one accumulates in float). ``given``: ``matmul``'s."""
    found = matmul(a, b, given)
    return found if found.dtype == dtype else found.astype(dtype)


def _into(a: np.ndarray, b: np.ndarray, out: np.ndarray, given: tuple = (None, None)) -> None:
    """out = a @ b, in place (extended products by ``products.matmul``, given the operands' halves where made;
    the others by NumPy's into ``out``)."""
    if out.dtype == EXTENDED:
        out[...] = matmul(a, b, given)
    else:
        np.matmul(a, b, out=out)


def _transposed(given: Halves | None) -> Halves | None:
    """Halves of an operand, as its transpose's (views)."""
    return None if given is None else tuple(np.swapaxes(h, -1, -2) for h in given)


def _column_sum(a: np.ndarray, dtype) -> np.ndarray:
    """The sum over samples in ``dtype``; in a reduced dtype accumulated in float32 and rounded once."""
    if np.dtype(dtype).itemsize >= 4:
        return a.sum(axis=0, keepdims=True)
    return a.sum(axis=0, keepdims=True, dtype=np.float32).astype(dtype)


BY_DIFFERENCE = ("tanh", "sigmoid", "relu")  # the activations whose slope numpy-fd takes by central difference


def _rounded(values: np.ndarray, rng: np.random.Generator | None) -> np.ndarray:
    """``values``, or (Monte Carlo arithmetic) each moved at random by up to half an ulp of itself."""
    if rng is None:
        return values
    unit = ml_dtypes.finfo(values.dtype).eps / 2
    return values * (1 + (rng.uniform(-1, 1, values.shape) * unit).astype(values.dtype))


def _difference_slope(name: str, z: np.ndarray, h, relu0: float, rng: np.random.Generator | None = None
                      ) -> np.ndarray:
    """The notebook's prime(): (f(z + h) - f(z - h)) / 2h (each evaluation of f rounded at random under ``rng``:
    the difference of two values |f| apart loses u |f| / h). For relu, a pre-activation within h of the kink gets
    (|z| + h) / 2h or less (the method's own error there), while one exactly at 0 keeps ``relu0``: the 1/2
    the difference gives there is a convention, stated and checked as one, not rounding."""
    f = ACTIVATIONS[name]
    found = (_rounded(f(z + h), rng) - _rounded(f(z - h), rng)) / (2 * h)
    return np.where(z == 0, z.dtype.type(relu0), found) if name == "relu" else found


def _logit_difference(z: np.ndarray, y: np.ndarray, h, rng: np.random.Generator | None = None) -> np.ndarray:
    """d bce / d z by the notebook's central difference of the spec's stable bce of the logits."""
    def per_element(v):
        return _softplus(v) - y * v
    with np.errstate(all="ignore"):
        return (_rounded(per_element(z + h), rng) - _rounded(per_element(z - h), rng)) / (2 * h)


def _loss_difference(loss: str, out: np.ndarray, y: np.ndarray, h, rng: np.random.Generator | None = None
                     ) -> np.ndarray:
    """d loss / d y_hat by the notebook's central difference of the per-element loss of the output (each
    evaluation rounded at random under ``rng``)."""
    def per_element(v):
        if loss == "bce":
            return -(y * np.log(v) + (1 - y) * np.log1p(-v))
        return (y - v) * (y - v) / 2
    with np.errstate(all="ignore"):
        return (_rounded(per_element(out + h), rng) - _rounded(per_element(out - h), rng)) / (2 * h)


def _agree(reverse: np.ndarray, complex_step: np.ndarray, scale: np.ndarray, how: str,
           spread: Callable[[], np.ndarray]) -> None:
    """Raise OracleError unless the two methods agree to ORACLE_SELF_CHECK relative to the term scale, or else
    entry by entry within ORACLE_CONDITIONED times what rounding moves reverse mode at this state (``spread``)."""
    with np.errstate(invalid="ignore"):
        size = np.max(np.abs(scale), initial=0.0)
        gap = np.abs(reverse - complex_step)
        err = np.max(gap, initial=0.0) / size if size > 0 else 0.0
    if not np.isfinite(size) or not np.all(np.isfinite(reverse)) or err <= ORACLE_SELF_CHECK.rel:
        return
    allowed = ORACLE_SELF_CHECK.rel * size + ORACLE_CONDITIONED.times * spread()
    if np.all(gap <= allowed):
        return
    worst = int(np.argmax(gap / allowed))
    raise OracleError(f"the oracle's reverse mode and complex step disagree {how}: relative error {float(err):.2e}"
                      f" > {ORACLE_SELF_CHECK.rel:.1e}, and entry {worst} is {float(gap[worst]):.2e} apart,"
                      f" more than {ORACLE_CONDITIONED.times:g} times what rounding moves it at this state"
                      f" ({float(allowed[worst]):.2e} allowed)")
