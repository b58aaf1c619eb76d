"""python -m harness.bench [--steps 100000] [--repeats 3] [--skip-default-run]

Prints, measured side by side in one run on this machine:
1. the harness's bookkeeping cost: each implementation's bare native loop
   (``impl.train`` with no checkpoints) against the same loop as the harness runs
   it (checkpoints every 1,000 steps, per-step losses to float64, the Run
   wrapper), interleaved so machine noise hits both alike; target ratio <= 1.05;
2. the wall time of the default ``python -m harness.compare``; target <= 60 s.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from harness import compare, runs
from harness.config import RunConfig
from harness.data import xor
from harness.init import initial_params
from impls.registry import available

BOOKKEEPING_TARGET = 1.05
DEFAULT_RUN_TARGET_S = 60.0


def bookkeeping(steps: int, repeats: int) -> list[tuple[str, str, list[float], list[float]]]:
    """(impl, dtype, bare seconds, harness seconds) over interleaved repeats."""
    config, x, y = RunConfig(), *xor()
    params = initial_params(config.spec("float64"), config.preset())
    rows = []
    for dtype in config.dtype:
        for impl in available(config.spec(dtype))[0].values():
            impl.train(params, x, y, config.check_every)  # compile the scan lengths both variants use
            impl.train(params, x, y, steps)
            bare, harnessed = [], []
            for _ in range(repeats):
                start = time.perf_counter()
                impl.train(params, x, y, steps)
                bare.append(time.perf_counter() - start)
                harnessed.append(runs.train(impl, params, x, y, steps, config.check_every).wall_s)
            rows.append((impl.name, dtype, bare, harnessed))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness.bench", description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100_000, help="steps per bookkeeping measurement")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved repeats per variant")
    parser.add_argument("--skip-default-run", action="store_true", help="do not time the default compare")
    args = parser.parse_args(argv)
    print(f"bookkeeping: {args.steps:,} steps, {args.repeats} interleaved repeats of each variant;")
    print(f"the ratio of the fastest repeats is the cost estimate (noise only adds time), target <= {BOOKKEEPING_TARGET}")
    print(f"{'impl':9} {'dtype':8} {'bare s':>12} {'harness s':>12} {'ratio (min)':>11} {'ratio (median)':>14}")
    for name, dtype, bare, harnessed in bookkeeping(args.steps, args.repeats):
        best, typical = min(harnessed) / min(bare), np.median(harnessed) / np.median(bare)
        flag = "" if best <= BOOKKEEPING_TARGET else "  OVER"
        print(f"{name:9} {dtype:8} {min(bare):12.4f} {min(harnessed):12.4f} {best:11.3f} {typical:14.3f}{flag}")
    if not args.skip_default_run:
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            code = compare.main(["--out", str(Path(tmp) / "run"), "--quiet", "--no-plots"])
            wall = time.perf_counter() - start
        print(f"default compare (no plots): {wall:.1f} s, exit {code}; target <= {DEFAULT_RUN_TARGET_S:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
