"""Comparisons of losses, predictions and parameters, with failures that say what was compared."""
from __future__ import annotations

from typing import Callable, Mapping

import numpy as np

from harness.params import cast  # noqa: F401 -- where the checks have always found it
from harness.truth.tolerances import Tolerance


def rel_diff(got: np.ndarray | float, ref: np.ndarray | float) -> float:
    """max |got - ref| / max |ref| (norm-wise relative difference), in float64."""
    got, ref = np.asarray(got, dtype=np.float64), np.asarray(ref, dtype=np.float64)
    if got.shape != ref.shape:
        raise ValueError(f"shape {got.shape} differs from the reference's {ref.shape}")
    scale = np.max(np.abs(ref), initial=0.0)
    diff = np.max(np.abs(got - ref), initial=0.0)
    return float(diff / scale) if scale > 0 else float(diff)


def param_diffs(got: Mapping[str, np.ndarray], ref: Mapping[str, np.ndarray]) -> dict[str, float]:
    """rel_diff per parameter, in the reference's order; a missing or extra name is an error."""
    if set(got) != set(ref):
        raise ValueError(f"parameter names {sorted(got)} differ from the reference's {sorted(ref)}")
    return {name: rel_diff(got[name], ref[name]) for name in ref}


def assert_close(got, ref, tol: Tolerance, what: str) -> None:
    """Raise AssertionError naming ``what`` (implementation, dtype, step, quantity) when out of tolerance."""
    if isinstance(ref, Mapping):
        diffs = param_diffs(got, ref)
    else:
        diffs = {"": rel_diff(got, ref)}
    for name, diff in diffs.items():
        if not diff <= tol.rel:  # also fails on NaN
            label = f"{what} {name}".strip()
            raise AssertionError(f"{label}: relative difference {diff:.3e} > {tol.rel:.0e}")


def objective(predictions: np.ndarray, y: np.ndarray, reduction: str, loss: str = "sel") -> float:
    """The loss whose gradient the implementations follow, in float64: sum or mean of sel or bce."""
    p, y = np.asarray(predictions, np.float64), np.asarray(y, np.float64)
    if loss == "bce":
        per_element = -(y * np.log(p) + (1 - y) * np.log1p(-p))
    else:
        per_element = 0.5 * (y - p) ** 2
    return float(per_element.sum() if reduction == "sum" else per_element.mean())


def _moved(params: Mapping[str, np.ndarray], name: str, shift: np.ndarray) -> dict[str, np.ndarray]:
    moved = {k: np.array(v, dtype=np.float64) for k, v in params.items()}
    moved[name] += shift
    return moved


def fd_directions(shape: tuple[int, ...], name: str, max_coordinates: int) -> np.ndarray:
    """Unit coordinate directions, or for a larger array ``max_coordinates`` seeded random +-1 directions.

    Shape (count, *shape). The seed comes from the parameter's name and shape, so
    every implementation and every run is probed along the same directions.
    """
    size = int(np.prod(shape))
    if size <= max_coordinates:
        return np.eye(size).reshape((size, *shape))
    rng = np.random.default_rng([size, *map(ord, name)])
    return rng.choice((-1.0, 1.0), size=(max_coordinates, *shape))


def finite_difference_grads(impl, params: Mapping[str, np.ndarray], x: np.ndarray, y: np.ndarray,
                            step: float, max_coordinates: int = 10**9,
                            forwards: Callable[[list[dict]], list] | None = None) -> dict[str, np.ndarray]:
    """Per parameter: the objective's central differences along ``fd_directions`` (one coordinate at a time
    for small arrays), as a vector with one entry per direction.

    Uses only the implementation's forward pass, so it checks any implementation's gradients, a hand-written
    one included; meant for float64 specs. ``forwards``: the forward pass at many parameter sets at once (one
    round trip to a worker, given a generator), else ``impl.forward`` one at a time."""
    directions = {name: fd_directions(value.shape, name, max_coordinates) for name, value in params.items()}
    moved = (_moved(params, name, sign * step * d) for name, found in directions.items() for d in found
             for sign in (1.0, -1.0))  # made as they are sent: a large network's copies are never all held
    outputs = forwards(moved) if forwards else (impl.forward(m, x) for m in moved)
    values = iter(objective(out, y, impl.spec.reduction, impl.spec.loss) for out in outputs)
    return {name: np.array([(next(values) - next(values)) / (2 * step) for _ in found])
            for name, found in directions.items()}


def along(directions: np.ndarray, values: np.ndarray) -> np.ndarray:
    """The directional derivatives of ``values`` (a gradient, or its term scale with |directions|)."""
    return np.tensordot(directions, np.asarray(values, np.longdouble), axes=directions.ndim - 1)


def error_row(got, ref, dtype: str, scale=None) -> dict[str, float]:
    """max_abs, rel and ulps of ``got`` against ``ref``, for one array or scalar.

    ``rel`` and ``ulps`` are taken at ``scale``'s largest magnitude (default: ``ref``'s).
    A gradient is a sum over samples that can cancel to almost nothing while its
    rounding error stays the size of the terms; passing the summed magnitude of
    the terms as ``scale`` keeps the relative error meaningful there.
    """
    ref = np.asarray(ref, np.longdouble)
    diff = np.max(np.abs(np.asarray(got, np.longdouble) - ref), initial=0.0)
    size = np.max(np.abs(ref if scale is None else np.asarray(scale, np.longdouble)), initial=0.0)
    spacing = np.spacing(np.asarray(size, dtype=dtype))
    return {"max_abs": float(diff), "rel": float(diff / size) if size > 0 else float(diff),
            "ulps": float(diff / spacing) if spacing > 0 else float("inf")}

