"""python -m harness.compare [--impls numpy,torch] [--dtypes float64] [--steps 100000] ...

Trains every available implementation from the same Glorot weights and prints,
per implementation and dtype, the state the notebook prints (its last forward
pass, after steps - 1 updates), the agreement with ``numpy`` in the same dtype
at the initial weights, after 2,000 steps and at the end, and the wall time.
Exit codes: 0 done, 1 the notebook's printed line was not reproduced, 2 bad usage.
"""
from __future__ import annotations

import sys
import time

import numpy as np

from harness import notebook
from harness.checks import param_diffs, rel_diff
from harness.config import RunConfig, UsageError, parse_args
from harness.data import xor
from harness.init import initial_params
from impls.registry import available

MIDWAY = 2_000  # the step at which trajectories are also compared (the tests' horizon)


def run_dtype(config: RunConfig, dtype: str) -> bool:
    """Train every implementation in one dtype and print its rows; False if the notebook was not reproduced."""
    spec = config.spec(dtype)
    x, y = xor()
    params = initial_params(spec, config.preset())
    ready, skipped = available(spec, list(config.impls))
    record = sorted({k for k in (MIDWAY, config.steps - 1) if 0 <= k <= config.steps})
    results, reproduced = {}, True
    for name, impl in ready.items():
        start = time.perf_counter()
        results[name] = impl.train(params, x, y, config.steps, record=record)
        results[name].wall_s = time.perf_counter() - start
    ref = results.get("numpy")
    print(f"\n{dtype}  ({config.steps:,} steps; agreement is max relative difference from numpy {dtype})")
    print(f"{'impl':9} {'notebook line (loss, predictions at step ' + str(config.steps - 1) + ')':75} {'solved':6}"
          f" {'init':>8} {'@' + str(MIDWAY):>8} {'final':>8} {'wall s':>7}")
    for name, result in results.items():
        state = result.checkpoints[config.steps - 1]
        preds = ready[name].forward(state, x)
        line = notebook.printed_line(result.losses[-1], preds)
        solved = bool(np.all(np.round(preds) == y))
        agree = _agreement(ready[name], ready.get("numpy"), params, x, y, result, ref)
        if config.is_notebook_run and dtype == "float64" and line != notebook.PRINTED:
            reproduced = False
        print(f"{name:9} {line:75} {'yes' if solved else 'NO':6} {agree} {result.wall_s:7.2f}")
    for name, reason in skipped.items():
        print(f"{name:9} skipped: {reason}")
    return reproduced


def _agreement(impl, ref_impl, params, x, y, result, ref) -> str:
    """Max relative difference from numpy at init (loss and grads), step MIDWAY and the end."""
    if ref_impl is None:
        return f"{'-':>8} {'-':>8} {'-':>8}"
    loss, grads = impl.loss_and_grads(params, x, y)
    ref_loss, ref_grads = ref_impl.loss_and_grads(params, x, y)
    at_init = max(rel_diff(loss, ref_loss), *param_diffs(grads, ref_grads).values())
    midway = (max(param_diffs(result.checkpoints[MIDWAY], ref.checkpoints[MIDWAY]).values())
              if MIDWAY in result.checkpoints else float("nan"))
    final = max(param_diffs(result.params, ref.params).values())
    return " ".join(f"{d:8.1e}" for d in (at_init, midway, final))


def main(argv: list[str] | None = None) -> int:
    try:
        config = parse_args(argv)
    except UsageError as exc:
        print(f"harness.compare: error: {exc}", file=sys.stderr)
        return 2
    if config.is_notebook_run:
        print(f"notebook printed: {notebook.PRINTED}")
    reproduced = all([run_dtype(config, dtype) for dtype in config.dtypes])
    if not reproduced:
        print("\nFAILED: a float64 implementation did not reproduce the notebook's printed line")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
