"""The common interface: NumPy arrays at the boundary, framework tensors only inside.

Every implementation is constructed from a ``ModelSpec`` and offers three
stateless calls. Parameters are a dict of named arrays (``w0, b0, w1, b1, ...``);
the caller's arrays are never mutated, and every returned array is a fresh,
writable ``np.ndarray`` of the spec's dtype.

Step numbering: "step k" is the state after k SGD updates. ``losses[k]`` is the
reported (mean) loss at that state, computed just before update k, which is
what the notebook's loop prints on its last iteration.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Protocol, Sequence, runtime_checkable

import numpy as np

from impls.spec import ModelSpec

Params = Mapping[str, np.ndarray]


class Unavailable(Exception):
    """An implementation cannot run here or for this spec; ``str(exc)`` is the one-line reason."""


class NotInstalled(Unavailable):
    """The framework an implementation needs is not installed here."""


@dataclass
class TrainResult:
    """What a native training loop returns."""

    losses: np.ndarray  # shape (steps,): reported loss at step k, before update k
    params: dict[str, np.ndarray]  # parameters after the last update (step == steps)
    checkpoints: dict[int, dict[str, np.ndarray]] = field(default_factory=dict)  # step -> params


@runtime_checkable
class Implementation(Protocol):
    """What every implementation provides."""

    name: str
    spec: ModelSpec
    exact: bool  # False for finite-difference gradients (held to NOTEBOOK_FD); optional: exact() defaults to True
    # optional: conventions, {key: value} from impls.spec.CONVENTIONS where its optimizer departs from the spec
    # optional: kernel(name, z) -> its framework's element-wise activation ``name`` of ``z`` (a NumPy array in
    # the run's dtype), as its loop computes it: the harness measures how many ulps each kernel is off at the
    # states it checks and sizes what rounding may do there by it (without it, the fixed floors apply)

    def forward(self, params: Params, x: np.ndarray) -> np.ndarray:
        """Predictions of shape (k, layers[-1])."""
        ...

    def loss_and_grads(
        self, params: Params, x: np.ndarray, y: np.ndarray
    ) -> tuple[float, dict[str, np.ndarray]]:
        """Reported loss and the gradient of the spec's objective, at ``params``."""
        ...

    def train(
        self,
        params: Params,
        x: np.ndarray,
        y: np.ndarray,
        steps: int,
        record: Sequence[int] = (),
    ) -> TrainResult:
        """Run ``steps`` updates of the spec's optimizer, from fresh optimizer state; keep the parameters at
        each step in ``record`` (0..steps)."""
        ...


def exact(impl: object) -> bool:
    """Whether ``impl`` claims exact gradients (the default for implementations that do not say)."""
    return bool(getattr(impl, "exact", True))


def require_dtype(name: str, spec: ModelSpec, supported: tuple[str, ...], mixed: bool = False) -> None:
    """Raise Unavailable unless the implementation computes in ``spec.dtype`` (and, under the mixed policy,
    follows it: ``mixed``)."""
    if spec.dtype not in supported:
        raise Unavailable(f"{name} has no {spec.dtype}; it runs in {', '.join(supported)}")
    if spec.mixed and not mixed:
        raise Unavailable(f"{name} has no mixed precision: it computes {spec.dtype} with {spec.dtype} weights"
                          f" (impls/registry.py MIXED lists those that follow the mixed policy)")


def require_plain_sgd(name: str, spec: ModelSpec) -> None:
    """Raise Unavailable unless the spec trains by the notebook's rule: sgd, constant lr, no weight decay."""
    if not spec.plain_sgd:
        raise Unavailable(f"{name} trains by the notebook's plain SGD only (constant lr, no weight decay); the"
                          f" native implementations (torch-nn, jax-optax, keras) and numpy run {spec.optimizer}")


def check_record(steps: int, record: Sequence[int]) -> list[int]:
    """Sorted unique checkpoint steps, each in 0..steps (steps >= 1)."""
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    wanted = sorted(set(int(k) for k in record))
    if wanted and not (0 <= wanted[0] and wanted[-1] <= steps):
        raise ValueError(f"checkpoint steps must lie in 0..{steps}, got {wanted}")
    return wanted


PROBE_DEPTH = 256  # inner dimension of the matmul probe: deep enough that a TF32 or bfloat16 pass shows


def matmul_error(product) -> float:
    """How far ``product(a, b)`` (a framework's float32 matmul, returning a NumPy array) lands from the exact
    product of two fixed float32 matrices, relative to its largest entry: about 1e-7 to 1e-6 where float32
    matmuls compute in float32, 1e-4 and above where they pass through TF32 or bfloat16."""
    rng = np.random.default_rng(PROBE_DEPTH)
    a, b = (rng.standard_normal((PROBE_DEPTH, PROBE_DEPTH)).astype(np.float32) for _ in range(2))
    exact = a.astype(np.float64) @ b.astype(np.float64)  # each term exact in float64; the sum to 1e-16
    return float(np.abs(np.asarray(product(a, b), np.float64) - exact).max() / np.abs(exact).max())
