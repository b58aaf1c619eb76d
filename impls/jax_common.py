"""What the JAX-based implementations share at their boundary: the device, the scope of a call (x64, device,
matmul precision), and the segments of a compiled loop."""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import jax
import jax.numpy as jnp
import numpy as np

from impls.interface import Unavailable, matmul_error
from impls.spec import ModelSpec

# The spec's matmul precisions in jax.default_matmul_precision's names (its docs pair them with
# lax.Precision: "bfloat16" DEFAULT, "tensorfloat32" HIGH, "float32" HIGHEST); "default" sets nothing, so XLA
# picks per device (float32 on CPU; TF32 on NVIDIA GPUs that have it; bfloat16 passes on TPU).
JAX_MATMUL = {"default": None, "highest": "float32", "high": "tensorfloat32", "medium": "bfloat16"}


@contextmanager
def scope(spec: ModelSpec, device: jax.Device) -> Iterator[None]:
    """x64 as the dtype needs, the spec's device and matmul precision, for this call only (all thread-local)."""
    with jax.enable_x64(spec.dtype == "float64"), jax.default_device(device), \
            jax.default_matmul_precision(JAX_MATMUL[spec.matmul_precision]):
        yield


def matmul_setting(spec: ModelSpec, device: jax.Device) -> tuple[str, float | None]:
    """(what float32 matmuls run under, as jax names it; their measured error on ``device``), for a float32
    spec; float64 products are never reduced: ("float64", None)."""
    if spec.dtype != "float32":
        return "float64", None
    with scope(spec, device):
        error = matmul_error(lambda a, b: np.asarray(jax.jit(jnp.matmul)(a, b)))
    named = JAX_MATMUL[spec.matmul_precision]
    return (named or "DEFAULT (XLA's per device)") + f" on {device.platform}", error


def device_of(name: str, device: str) -> jax.Device:
    """The first JAX device of the asked kind; Unavailable if this JAX has none."""
    try:
        return jax.devices("gpu" if device == "cuda" else "cpu")[0]
    except RuntimeError:
        raise Unavailable(f"{name}: jax {jax.__version__} has no {device} backend here") from None


def segments(wanted: list[int], steps: int) -> list[tuple[int, int, int]]:
    """(start, length, count) runs of equal-length segments between consecutive stops."""
    stops = [k for k in wanted if 0 < k < steps] + [steps]
    runs: list[tuple[int, int, int]] = []
    previous = 0
    for stop in stops:
        length = stop - previous
        if runs and runs[-1][1] == length:
            start, _, count = runs[-1]
            runs[-1] = (start, length, count + 1)
        else:
            runs.append((previous, length, 1))
        previous = stop
    return runs


# jax's gradient of a bias added by broadcasting is lax.reduce_sum in the operand's dtype (no float32 accumulator,
# unlike jnp.sum), so its partial sums are float16 in a float16 run; every jax-based implementation states it
JAX_BIAS_SUM = {"bias_grad_sum": "in the dtype"}
