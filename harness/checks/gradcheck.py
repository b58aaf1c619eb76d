"""One-step checks: loss and gradients at given parameters, against the oracle and finite differences."""
from __future__ import annotations

from typing import Mapping

import numpy as np
import pandas as pd

from harness.checks.arrays import along, error_row, fd_directions, finite_difference_grads, term_scale
from harness.truth.tolerances import FD_CHECK_F64, FD_CHECK_STEP, NOTEBOOK_FD, allowed

FD_MAX_DIRECTIONS = 16  # a parameter with more entries is probed along 16 seeded random +-1 directions
from impls.interface import Implementation, Params, exact

COLUMNS = ["check", "impl", "dtype", "step", "param", "max_abs", "rel", "ulps", "allowed", "passed", "judged",
           "relu_kink"]


def _table(rows: list[dict]) -> pd.DataFrame:
    """Typed even when empty, so tables concatenate without turning ``passed`` into objects."""
    return pd.DataFrame(rows, columns=COLUMNS).astype({"step": int, "passed": bool, "judged": bool,
                                                      "relu_kink": bool})


def at_relu_kink(oracle: Implementation, params: Params, x: np.ndarray) -> bool:
    """Whether some relu layer's pre-activation is exactly 0 here, where relu'(0) conventions part."""
    relu = [i for i, act in enumerate(oracle.spec.activations) if act == "relu"]
    if not relu:
        return False
    z = oracle.preactivations(params, x)
    return any(np.any(z[i] == 0) for i in relu)


def _cast(params: Params, dtype: str) -> dict[str, np.ndarray]:
    return {k: np.asarray(v, dtype=dtype) for k, v in params.items()}


def _loss_and_grads(impl: Implementation, params: Params, x, y) -> dict[str, np.ndarray]:
    loss, grads = impl.loss_and_grads(params, x, y)
    return {"loss": np.asarray(loss), **grads}


def teacher_forced(impls: list[Implementation], oracle: Implementation, plain: Mapping[str, Implementation],
                   states: Mapping[int, Params], x: np.ndarray, y: np.ndarray) -> pd.DataFrame:
    """Every implementation at the same parameters (``states``, cast to its dtype) against the oracle.

    Errors are relative to the gradients' per-sample terms (``checks.term_scale``).
    The allowed error at each point is set by plain NumPy's own error there (``plain[dtype]``).
    """
    rows = []
    for step, state in states.items():
        for dtype in dict.fromkeys(impl.spec.dtype for impl in impls):  # in run order
            params = _cast(state, dtype)
            truth = _loss_and_grads(oracle, params, x, y)
            scale = term_scale(oracle, params, x, y)
            kink = at_relu_kink(oracle, params, x)
            baseline = _loss_and_grads(plain[dtype], params, x, y)
            for impl in (i for i in impls if i.spec.dtype == dtype):
                got = baseline if impl is plain[dtype] else _loss_and_grads(impl, params, x, y)
                for name, ref in truth.items():
                    error = error_row(got[name], ref, dtype, scale[name])
                    limit = allowed(dtype, error_row(baseline[name], ref, dtype, scale[name])["rel"], exact(impl))
                    rows.append({"check": "teacher-forced", "impl": impl.name, "dtype": dtype, "step": step,
                                 "param": name, **error, "allowed": float(limit), "passed": bool(error["rel"] <= limit),
                                 "judged": True, "relu_kink": kink})
    return _table(rows)


def finite_differences(impls: list[Implementation], oracle: Implementation, states: Mapping[int, Params],
                       x: np.ndarray, y: np.ndarray) -> pd.DataFrame:
    """Each float64 implementation's gradients against central differences of its own forward pass.

    A row is judged only where the difference quotient is a derivative: not at a relu
    kink (a pre-activation exactly 0), and only where the estimates with h and h/2
    agree to a tenth of the tolerance (steep, saturated states after a blow-up fail that).
    Rows not judged are kept, with ``judged`` False, and never fail.
    """
    rows = []
    for step, state in states.items():
        params = _cast(state, "float64")
        scale = term_scale(oracle, params, x, y)
        kink = at_relu_kink(oracle, params, x)  # a difference quotient across a kink is no derivative
        for impl in impls:
            limit = FD_CHECK_F64.rel if exact(impl) else NOTEBOOK_FD.rel
            _, grads = impl.loss_and_grads(params, x, y)
            estimate = finite_difference_grads(impl, params, x, y, FD_CHECK_STEP, FD_MAX_DIRECTIONS)
            halved = finite_difference_grads(impl, params, x, y, FD_CHECK_STEP / 2, FD_MAX_DIRECTIONS)
            for name, ref in estimate.items():
                directions = fd_directions(params[name].shape, name, FD_MAX_DIRECTIONS)
                size = along(np.abs(directions), scale[name])
                error = error_row(along(directions, grads[name]), ref, "float64", size)
                stable = error_row(halved[name], ref, "float64", size)["rel"] <= limit / 10
                judged = stable and not kink
                rows.append({"check": "finite-difference", "impl": impl.name, "dtype": "float64", "step": step,
                             "param": name, **error, "allowed": float(limit),
                             "passed": bool(not judged or error["rel"] <= limit), "judged": judged,
                             "relu_kink": kink})
    return _table(rows)
