"""What the JAX-based implementations share at their boundary: the device, and the segments of a compiled loop."""
from __future__ import annotations

import jax

from impls.interface import Unavailable


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
