"""python -m harness.bench [--steps 100000] [--repeats 3] [--skip-default-run] [--only-fast-paths] [--against REV]

Prints, measured side by side in one run on this machine:
1. the harness's bookkeeping cost: each implementation's bare native loop
   (``impl.train`` with no checkpoints) against the same loop as the harness runs
   it (checkpoints every 1,000 steps, per-step losses to float64, the Run
   wrapper), interleaved so machine noise hits both alike; target ratio <= 1.05;
2. the wall time of the default ``python -m harness.compare``; target <= 60 s;
3. the fastest paths: per-step time of each framework's eager and fastest
   implementation at 2-4-1 float64, interleaved, and the ratios the fast paths
   are held to (``--only-fast-paths`` runs just this section);
4. with ``--against REV``: the default ``python -m harness.compare`` of this
   tree and of git revision REV (checked out into a temporary worktree), each a
   fresh process, alternated ``--pairs`` times, and the ratio of each pair
   (``--only-against`` runs just this section).
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from harness import compare
from harness.running import runs
from harness.config import RunConfig
from harness.data import xor
from harness.init import initial_params
from impls.interface import Unavailable
from impls.registry import create
from impls.spec import ModelSpec

BOOKKEEPING_TARGET = 1.05
DEFAULT_RUN_TARGET_S = 60.0
AGAINST_TARGET = 1.10  # the default compare may cost at most 10 % more than the revision it replaces

FAST_PATHS = ("numpy-fd", "numpy", "numpy-fast", "jax", "jax-step", "torch", "torch-compile")  # measuring order
TORCH_FAST = ("torch-compile",)  # the candidates for "best torch path"
# (label, numerator, denominator, target or None): numerator per-step time / denominator's
FAST_RATIOS = (
    ("numpy-fast / numpy-fd", "numpy-fast", "numpy-fd", 0.6),
    ("jax (fused loop) / numpy-fast", "jax", "numpy-fast", 0.1),
    ("jax (fused loop) / numpy (plain backprop)", "jax", "numpy", 0.1),
    ("{best} / torch (eager)", "best torch", "torch", 0.5),
    ("jax-step / jax (per-step jit vs lax.scan)", "jax-step", "jax", None),
)


def bookkeeping(steps: int, repeats: int) -> list[tuple[str, str, list[float], list[float]]]:
    """(impl, dtype, bare seconds, harness seconds) over interleaved repeats."""
    config, x, y = RunConfig(), *xor()
    params = initial_params(config.spec("float64"), config.preset())
    rows = []
    for dtype in config.dtype:
        for impl in _available(config.spec(dtype), config.impls):  # the default run's
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


def _available(spec: ModelSpec, wanted) -> list:
    """The implementations in ``wanted`` that can run ``spec`` here (the others are left out of the timing)."""
    found = []
    for name in wanted:
        try:
            found.append(create(name, spec))
        except Unavailable:
            pass
    return found


def fast_paths(steps: int, repeats: int) -> tuple[dict[str, float], dict[str, list[float]], dict[str, str]]:
    """(first-call seconds, per-step seconds of each repeat, why each missing one cannot run), 2-4-1 float64.

    Every implementation trains ``steps`` steps with no checkpoints; the first call
    (tracing, jit and torch.compile included) is timed apart, then the repeats are
    interleaved, one call of each implementation per round.
    """
    spec, (x, y) = ModelSpec(), xor()
    params = initial_params(spec, RunConfig().preset())
    impls, skipped = {}, {}
    for name in FAST_PATHS:
        try:
            impls[name] = create(name, spec)
        except Unavailable as exc:
            skipped[name] = str(exc)
    first = {}
    for name, impl in impls.items():
        start = time.perf_counter()
        impl.train(params, x, y, steps)
        first[name] = time.perf_counter() - start
    per_step: dict[str, list[float]] = {name: [] for name in impls}
    for _ in range(repeats):
        for name, impl in impls.items():
            start = time.perf_counter()
            impl.train(params, x, y, steps)
            per_step[name].append((time.perf_counter() - start) / steps)
    return first, per_step, skipped


def print_fast_paths(steps: int, repeats: int) -> None:
    print(f"fastest paths: 2-4-1 float64, {steps:,} steps, {repeats} interleaved repeats of each;"
          " first call (compilation included) timed apart")
    first, per_step, skipped = fast_paths(steps, repeats)
    print(f"{'impl':14} {'first s':>9} {'min us/step':>12} {'median us/step':>15}")
    for name, times in per_step.items():
        print(f"{name:14} {first[name]:9.3f} {min(times) * 1e6:12.2f} {np.median(times) * 1e6:15.2f}")
    for name, reason in skipped.items():
        print(f"{name:14} skipped: {reason}")
    torch_paths = [name for name in TORCH_FAST if name in per_step]
    if torch_paths:
        best = min(torch_paths, key=lambda name: min(per_step[name]))
        per_step["best torch"] = per_step[best]
    else:
        best = "best torch path"
    print(f"{'ratio':42} {'min':>7} {'median':>7}  target")
    for label, top, bottom, target in FAST_RATIOS:
        label = label.format(best=best)
        if top not in per_step or bottom not in per_step:
            print(f"{label:42} {'n/a':>7} {'n/a':>7}")
            continue
        best_ratio = min(per_step[top]) / min(per_step[bottom])
        typical = np.median(per_step[top]) / np.median(per_step[bottom])
        goal = "" if target is None else f"  <= {target}" + ("" if best_ratio <= target else "  OVER")
        print(f"{label:42} {best_ratio:7.3f} {typical:7.3f}{goal}")


def _timed_compare(root: Path, out: Path) -> float:
    """Wall seconds of one default compare run as a fresh process in ``root`` (its code, this interpreter)."""
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "harness.compare", "--out", str(out), "--overwrite", "--quiet", "--no-plots"],
                   cwd=root, env={**os.environ, "PYTHONPATH": str(root)}, check=False, capture_output=True)
    return time.perf_counter() - start


def print_against(rev: str, pairs: int) -> None:
    """The default compare of this tree against revision ``rev``, alternated, with the ratio of each pair."""
    here = Path(__file__).resolve().parent.parent
    with tempfile.TemporaryDirectory() as tmp:
        tree = Path(tmp) / "baseline"
        subprocess.run(["git", "worktree", "add", "--detach", str(tree), rev], cwd=here, check=True,
                       capture_output=True)
        try:
            print(f"default compare, this tree against {rev}: {pairs} alternating pairs, fresh processes, no plots")
            rows = []
            for _ in range(pairs):
                base = _timed_compare(tree, Path(tmp) / "base")
                mine = _timed_compare(here, Path(tmp) / "mine")
                rows.append((mine, base))
                print(f"  this tree {mine:7.1f} s   {rev} {base:7.1f} s   ratio {mine / base:.3f}", flush=True)
            ratios = [m / b for m, b in rows]
            print(f"ratio this tree / {rev}: min {min(ratios):.3f}, median {np.median(ratios):.3f},"
                  f" max {max(ratios):.3f}; target <= {AGAINST_TARGET}")
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=here, check=False,
                           capture_output=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness.bench", description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100_000, help="steps per bookkeeping measurement")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved repeats per variant")
    parser.add_argument("--skip-default-run", action="store_true", help="do not time the default compare")
    parser.add_argument("--fast-steps", type=int, default=20_000, help="steps per fastest-paths measurement")
    parser.add_argument("--fast-repeats", type=int, default=5, help="interleaved repeats per fastest path")
    parser.add_argument("--only-fast-paths", action="store_true", help="run only the fastest-paths section")
    parser.add_argument("--against", default=None, help="git revision whose default compare to time beside this one")
    parser.add_argument("--pairs", type=int, default=3, help="alternating pairs for --against")
    parser.add_argument("--only-against", action="store_true", help="run only the --against section")
    args = parser.parse_args(argv)
    if args.only_against:
        if not args.against:
            parser.error("--only-against needs --against REV")
        print_against(args.against, args.pairs)
        return 0
    if args.only_fast_paths:
        print_fast_paths(args.fast_steps, args.fast_repeats)
        return 0
    print(f"bookkeeping: {args.steps:,} steps, {args.repeats} interleaved repeats of each variant;")
    print(f"the ratio of the fastest repeats is the cost estimate (noise only adds time), target <= {BOOKKEEPING_TARGET}")
    print(f"{'impl':13} {'dtype':8} {'bare s':>12} {'harness s':>12} {'ratio (min)':>11} {'ratio (median)':>14}")
    for name, dtype, bare, harnessed in bookkeeping(args.steps, args.repeats):
        best, typical = min(harnessed) / min(bare), np.median(harnessed) / np.median(bare)
        flag = "" if best <= BOOKKEEPING_TARGET else "  OVER"
        print(f"{name:13} {dtype:8} {min(bare):12.4f} {min(harnessed):12.4f} {best:11.3f} {typical:14.3f}{flag}")
    if not args.skip_default_run:
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            code = compare.main(["--out", str(Path(tmp) / "run"), "--quiet", "--no-plots"])
            wall = time.perf_counter() - start
        print(f"default compare (no plots): {wall:.1f} s, exit {code}; target <= {DEFAULT_RUN_TARGET_S:.0f} s")
    print_fast_paths(args.fast_steps, args.fast_repeats)
    if args.against:
        print_against(args.against, args.pairs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
