"""python -m harness.bench [--steps 100000] [--repeats 3] [--skip-default-run] [--default-runs 3] [--only-fast-paths]
[--csv FILE] [--against REV]

Prints, measured side by side in one run on this machine:
1. the harness's bookkeeping cost: each implementation's bare native loop
   (``impl.train`` with no checkpoints) against the same loop as the harness runs
   it (checkpoints every 1,000 steps, per-step losses to float64, the Run
   wrapper), interleaved so machine noise hits both alike; target ratio <= 1.05;
2. the default ``python -m harness.compare`` (plots included, a fresh process):
   its wall time beside its floor, the trajectories' CPU seconds (taken inside
   the workers, with the oracle's) spread over the slots they share, as its
   meta.json records them; target wall / floor <= 1.2, the median of ``--default-runs`` runs
   (``--only-default``);
3. the fastest paths: per-step time of each framework's eager and fastest
   implementation at 2-4-1 (float64 unless ``--fast-dtype``), interleaved with
   a scalar C loop of the same step compiled here (``harness.running.c_loop``,
   which times its own loop; every other path is timed over back-to-back calls
   of at least ``ROUND_S`` a round, as many as its previous round says;
   skipped, with the reason, where there is no C compiler), each path's ratio
   to it, its compile time, its agreement with numpy, numpy-fast against its
   call floor, and the ratios the fast paths are held to; ``--csv FILE`` writes
   one row per path (``--only-fast-paths`` runs just this section);
4. with ``--against REV``: the default ``python -m harness.compare`` of this
   tree and of git revision REV (checked out into a temporary worktree), each a
   fresh process, alternated ``--pairs`` times, and the ratio of each pair
   (``--only-against`` runs just this section).
"""
from __future__ import annotations

import argparse
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from dataclasses import dataclass

import numpy as np
import pandas as pd

from harness.cli import Parser, UsageError
from harness.reporting import results
from harness.running.c_loop import CLoop
from harness.running import runs
from harness.config import RunConfig
from harness.data import xor
from harness.init import initial_params
from impls.interface import Unavailable, exact
from impls.np_fast import call_floor_s
from impls.registry import create
from impls.spec import ModelSpec

BOOKKEEPING_TARGET = 1.05
DEFAULT_RUN_TARGET_S = 60.0
AGAINST_TARGET = 1.10  # the default compare may cost at most 10 % more than the revision it replaces

FAST_PATHS = ("numpy-fd", "numpy", "numpy-fast", "jax", "jax-step", "torch", "torch-compile", "torch-loop")
TORCH_FAST = ("torch-compile", "torch-loop")  # the candidates for "best torch path"
# (label, numerator, denominator, target or None): numerator per-step time / denominator's
FAST_RATIOS = (
    ("numpy-fast / numpy-fd", "numpy-fast", "numpy-fd", 0.6),
    ("jax (fused loop) / numpy-fast", "jax", "numpy-fast", 0.1),
    ("jax (fused loop) / numpy (plain backprop)", "jax", "numpy", 0.1),
    ("{best} / torch (eager)", "best torch", "torch", 0.5),
    ("jax-step / jax (per-step jit vs lax.scan)", "jax-step", "jax", None),
)
C_LOOP = "C loop"  # the yardstick's row (harness.running.c_loop)
C_TARGETS = {"jax": 1.0, "torch-loop": 6.0}  # each fastest path's per-step time at most this many C loops
# numpy-fast against its calls per step x the cheapest call: printed, no longer a target (retired in issue 25)
FLOOR_NOTE = ("the floor prices every call as the cheapest, an add of 4 entries; the step's matmuls, tanh and"
              " exp cost more than that whatever the loop around them does, so the ratio stays above 1.25")
DEFAULT_FLOOR_TARGET = 1.2  # the default compare's wall time at most this many times its floor (meta.json work)
# Each round times a path over back-to-back calls lasting at least this long, per step = total / steps run:
# a fused loop's whole run takes milliseconds, and waking XLA's thread pool after another path's run would
# otherwise be a large share of its figure.
ROUND_S = 0.05
AGREE = 5e-13  # every fastest path's and the C loop's final parameters within this of numpy's (max relative)
CSV_COLUMNS = ("path", "dtype", "us_per_step_min", "us_per_step_median", "ratio_to_c", "compile_s",
               "max_rel_err_vs_numpy")


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


@dataclass
class Measured:
    """One path's measurements: its first call, its per-step time in each interleaved round, its result."""

    first_s: float
    per_step: list[float]
    max_rel_err: float  # of its final parameters against numpy's
    steps: int
    exact: bool = True  # False for finite-difference gradients, which agree with numpy only to their own error

    @property
    def compile_s(self) -> float:
        """The first call's time beyond a steady call's: tracing and compilation."""
        return max(0.0, self.first_s - min(self.per_step) * self.steps)


def _rel_err(found: dict[str, np.ndarray], reference: dict[str, np.ndarray]) -> float:
    return max(float(np.max(np.abs(found[k] - reference[k])) / np.max(np.abs(reference[k]))) for k in reference)


def fast_paths(steps: int, repeats: int, dtype: str = "float64"
               ) -> tuple[dict[str, Measured], dict[str, str], float | None]:
    """Each fastest path and the C loop at 2-4-1: (measurements by name, why each missing one cannot run,
    numpy-fast's call floor: the cheapest NumPy call's seconds, its minimum over the rounds, if it ran).

    Every implementation trains ``steps`` steps with no checkpoints; the first call
    (tracing, jit and torch.compile included) is timed apart, then the repeats are
    interleaved, one call of each path (the C loop too, timed by itself) per round.
    """
    spec, (x, y) = ModelSpec(dtype=dtype), xor()
    params = initial_params(spec, RunConfig().preset())
    reference = create("numpy", spec).train(params, x, y, steps).params
    impls, skipped, found = {}, {}, {}
    for name in FAST_PATHS:
        try:
            impls[name] = create(name, spec)
        except Unavailable as exc:
            skipped[name] = str(exc)
    calls = dict.fromkeys(impls, 1)  # back-to-back calls a round: the first round's decides the next rounds'
    for name, impl in impls.items():
        start = time.perf_counter()
        result = impl.train(params, x, y, steps)
        found[name] = Measured(time.perf_counter() - start, [], _rel_err(result.params, reference), steps,
                               exact(impl))
    c_loop, floors = None, []
    if dtype == "float64":  # the yardstick is written in double
        try:
            c_loop = CLoop()
            first = c_loop.run(params, x, y, steps, spec.lr)
            found[C_LOOP] = Measured(first.seconds, [], _rel_err(first.params, reference), steps)
        except Unavailable as exc:
            skipped[C_LOOP] = str(exc)
    try:
        for _ in range(repeats):
            for name, impl in impls.items():
                start = time.perf_counter()
                for _ in range(calls[name]):
                    impl.train(params, x, y, steps)
                found[name].per_step.append((time.perf_counter() - start) / (steps * calls[name]))
                calls[name] = max(1, math.ceil(ROUND_S / (found[name].per_step[-1] * steps)))
            if c_loop:
                found[C_LOOP].per_step.append(c_loop.run(params, x, y, steps, spec.lr).seconds / steps)
            if "numpy-fast" in impls:
                floors.append(call_floor_s(repeats=1, dtype=dtype))
    finally:
        if c_loop:
            c_loop.close()
    return found, skipped, min(floors) if floors else None


def numpy_fast_calls(spec: ModelSpec) -> int:
    """numpy-fast's NumPy calls per step of ``spec`` (counted from the plan its loop runs)."""
    from impls import np_fast

    return np_fast.calls_per_step(spec)


def print_fast_paths(steps: int, repeats: int, dtype: str = "float64", csv: str | None = None) -> None:
    print(f"fastest paths: 2-4-1 {dtype}, {steps:,} steps, {repeats} interleaved repeats of each;"
          " first call (compilation included) timed apart")
    found, skipped, call_s = fast_paths(steps, repeats, dtype)
    per_step = {name: p.per_step for name, p in found.items()}
    c_min = min(per_step[C_LOOP]) if C_LOOP in per_step else None
    print(f"{'path':14} {'compile s':>9} {'min us/step':>12} {'median us/step':>15} {'x C loop':>9}"
          f" {'rel err vs numpy':>17}")
    rows = []
    for name, p in found.items():
        ratio = min(p.per_step) / c_min if c_min else float("nan")
        flag = "" if p.max_rel_err <= AGREE else "  DISAGREES" if p.exact else "  (finite differences)"
        if name in C_TARGETS:
            flag += f"  target <= {C_TARGETS[name]}" + _over(ratio, C_TARGETS[name])
        print(f"{name:14} {p.compile_s:9.3f} {min(p.per_step) * 1e6:12.3f} {np.median(p.per_step) * 1e6:15.3f}"
              f" {ratio:9.2f} {p.max_rel_err:17.1e}{flag}")
        rows.append((name, dtype, min(p.per_step) * 1e6, np.median(p.per_step) * 1e6, ratio, p.compile_s,
                     p.max_rel_err))
    for name, reason in skipped.items():
        print(f"{name:14} skipped: {reason}")
    if "torch-loop" in per_step:
        from impls import torch_pool

        why = torch_pool.unavailable()
        print("torch-loop ran on " + ("impls/torch_pool.cpp's CPU allocator" if why is None
                                      else f"torch's own CPU allocator: the pool is unavailable ({why})"))
    if call_s and "numpy-fast" in per_step:
        calls = numpy_fast_calls(ModelSpec(dtype=dtype))
        ratio = min(per_step["numpy-fast"]) / (calls * call_s)
        print(f"numpy-fast: {calls} NumPy calls per step x {call_s * 1e6:.3f} us (the cheapest call) ="
              f" {calls * call_s * 1e6:.2f} us floor; measured {ratio:.2f}x it (no target: {FLOOR_NOTE})")
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
        goal = "" if target is None else f"  <= {target}" + _over(best_ratio, target)
        print(f"{label:42} {best_ratio:7.3f} {typical:7.3f}{goal}")
    if csv:
        pd.DataFrame(rows, columns=CSV_COLUMNS).to_csv(csv, index=False)
        print(f"csv: {csv}")


def default_floor(tmp: Path, argv: tuple[str, ...] = ()) -> tuple[float, dict[str, float], int]:
    """Wall seconds of one compare (the default, plots included, unless ``argv`` says more) as a fresh process,
    its meta.json ``work`` (the trajectories' CPU seconds and the floor they set), and its exit code."""
    out = tmp / "default"
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "harness.compare", *argv, "--out", str(out), "--overwrite",
                           "--quiet"], cwd=ROOT, check=False, capture_output=True)
    wall = time.perf_counter() - start
    return wall, results.read_json(out / "meta.json", {}).get("work", {}), done.returncode


ROOT = Path(__file__).resolve().parent.parent


def _timed_compare(root: Path, out: Path) -> float:
    """Wall seconds of one default compare run as a fresh process in ``root`` (its code, this interpreter)."""
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "harness.compare", "--out", str(out), "--overwrite", "--quiet", "--no-plots"],
                   cwd=root, env={**os.environ, "PYTHONPATH": str(root)}, check=False, capture_output=True)
    return time.perf_counter() - start


def print_against(rev: str, pairs: int) -> None:
    """The default compare of this tree against revision ``rev``, alternated, with the ratio of each pair."""
    here = ROOT
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
                  f" max {max(ratios):.3f}; target <= {AGAINST_TARGET}" + _over(float(np.median(ratios)), AGAINST_TARGET))
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=here, check=False,
                           capture_output=True)


def print_default_floor(count: int = 1) -> None:
    """The default compare's wall time beside its floor (the trajectories' work over the slots), ``count`` runs,
    each a fresh process judged within itself; with more than one, the median ratio is the figure judged (one
    run's ratio moves a little between runs of the same tree). Each run's wall time is held to
    ``DEFAULT_RUN_TARGET_S`` too."""
    ratios = []
    for _ in range(count):
        with tempfile.TemporaryDirectory() as tmp:
            wall, work, code = default_floor(Path(tmp))
        if not work:
            print(f"default compare: {wall:.1f} s, exit {code}; its meta.json has no work record")
            return
        ratios.append(wall / work["floor_s"])
        print(f"default compare (plots included, a fresh process): {wall:.1f} s wall, exit {code}; trajectories"
              f" {work['trajectories_s']:.1f} s + oracle {work['oracle_s']:.1f} s over {work['slots']} slots ="
              f" floor {work['floor_s']:.1f} s; wall / floor {ratios[-1]:.2f}"
              + ("" if count > 1 else _against_floor_target(ratios[-1]))
              + f" (and <= {DEFAULT_RUN_TARGET_S:.0f} s{_over(wall, DEFAULT_RUN_TARGET_S)})", flush=True)
    if count > 1:
        print(f"default compare, {count} runs: wall / floor min {min(ratios):.3f}, median {np.median(ratios):.3f},"
              f" max {max(ratios):.3f}" + _against_floor_target(float(np.median(ratios))))


SCALING_LAYERS = (8, 256, 256, 1)  # issue 24's network: parity:8, tanh, tanh, sigmoid
SCALING_ACTIVATIONS = ("tanh", "tanh", "sigmoid")


def print_scaling(steps: int) -> None:
    """The oracle's parts on a realistic MLP, its extended products by NumPy's loop and split into float64 ones,
    one after the other in this process, and what one extended product costs in float64 products."""
    from harness.data import load
    from harness.running.oracle_cost import oracle_cost, split_against_loop
    from harness.truth.products import FLOAT64_PRODUCTS, error_factor, lead_bits

    config = RunConfig(layers=SCALING_LAYERS, activations=SCALING_ACTIVATIONS, dataset=f"parity:{SCALING_LAYERS[0]}",
                       steps=steps, dtype=("float64",))
    x, y = load(config.dataset)
    params = initial_params(config.spec("float64"), config.preset())
    print(f"scaling: the oracle's parts on {'-'.join(map(str, config.layers))} ({config.dataset}, {steps} steps,"
          f" checkpoints every {config.check_every}), wall seconds in this process")
    loop, split = oracle_cost(config, params, x, y, split=False), oracle_cost(config, params, x, y)
    rows = [("the truth's trajectory", loop.truth_s, split.truth_s),
            (f"the truth at {split.states} checkpoints", loop.states_s, split.states_s),
            ("  of which complex step", loop.complex_step_s, split.complex_step_s),
            ("extended work (the two above)", loop.extended_s, split.extended_s),
            ("reference runs (float64)", loop.references_s, split.references_s)]
    print(f"{'part':34} {'loop s':>9} {'split s':>9} {'loop / split':>14}")
    for label, before, after in rows:
        print(f"{label:34} {before:9.2f} {after:9.2f} {before / after:14.2f}")
    inner = SCALING_LAYERS[1] + 1
    print(f"one extended product of inner dimension {inner}: {FLOAT64_PRODUCTS} float64 products"
          f" ({lead_bits(inner)}-bit integer leads; bound {error_factor(inner):.1e} of the terms' sums)", flush=True)
    gap = split_against_loop(config.spec("float64"), [params, split.final], x, y)
    print(f"the truth's gradients split against by the loop, at the start and after {steps} steps: at most"
          f" {gap:.1e} of each entry's term scale (longdouble's unit roundoff: {np.finfo(np.longdouble).eps / 2:.1e})")


def _against_floor_target(ratio: float) -> str:
    return f", target <= {DEFAULT_FLOOR_TARGET}" + _over(ratio, DEFAULT_FLOOR_TARGET)


MISSED: list[str] = []  # every target missed in this run: main exits 1 when there is one


def _over(value: float, target: float) -> str:
    """The flag every figure past its target carries in the bench's output (and the miss, for the exit code)."""
    if value <= target:
        return ""
    MISSED.append(f"{value:.3g} > {target:g}")
    return "  OVER"


def main(argv: list[str] | None = None) -> int:
    parser = Parser(prog="python -m harness.bench", description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100_000, help="steps per bookkeeping measurement")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved repeats per variant")
    parser.add_argument("--skip-default-run", action="store_true", help="do not time the default compare")
    parser.add_argument("--fast-steps", type=int, default=20_000, help="steps per fastest-paths measurement")
    parser.add_argument("--fast-repeats", type=int, default=5, help="interleaved repeats per fastest path")
    parser.add_argument("--fast-dtype", default="float64", help="dtype of the fastest-paths section (the C loop"
                        " runs in float64 only)")
    parser.add_argument("--csv", default=None, metavar="FILE", help="write the fastest paths' figures here")
    parser.add_argument("--only-fast-paths", action="store_true", help="run only the fastest-paths section")
    parser.add_argument("--only-default", action="store_true", help="run only the default compare's floor")
    parser.add_argument("--default-runs", type=int, default=3, help="default compares timed (the median ratio is"
                        " judged)")
    parser.add_argument("--against", default=None, help="git revision whose default compare to time beside this one")
    parser.add_argument("--pairs", type=int, default=3, help="alternating pairs for --against")
    parser.add_argument("--only-against", action="store_true", help="run only the --against section")
    parser.add_argument("--scaling-steps", type=int, default=200, help="steps of the scaling section's network")
    parser.add_argument("--only-scaling", action="store_true", help="run only the scaling section (the oracle's"
                        " parts, products by NumPy's loop and split)")
    try:
        args = parser.parse_args(argv)
        if args.default_runs < 1:
            raise UsageError("--default-runs must be at least 1")
        if args.only_against and not args.against:
            raise UsageError("--only-against needs --against REV")
    except UsageError as exc:
        print(f"harness.bench: error: {exc}", file=sys.stderr)
        return 2
    MISSED.clear()
    if args.only_against:
        print_against(args.against, args.pairs)
    elif args.only_default:
        print_default_floor(args.default_runs)
    elif args.only_scaling:
        print_scaling(args.scaling_steps)
    elif args.only_fast_paths:
        print_fast_paths(args.fast_steps, args.fast_repeats, args.fast_dtype, args.csv)
    else:
        print_all(args)
    return _verdict()


def print_all(args: argparse.Namespace) -> None:
    """Every section but scaling (which takes minutes: ``--only-scaling``)."""
    print(f"bookkeeping: {args.steps:,} steps, {args.repeats} interleaved repeats of each variant;")
    print(f"the ratio of the fastest repeats is the cost estimate (noise only adds time), target <= {BOOKKEEPING_TARGET}")
    print(f"{'impl':13} {'dtype':8} {'bare s':>12} {'harness s':>12} {'ratio (min)':>11} {'ratio (median)':>14}")
    for name, dtype, bare, harnessed in bookkeeping(args.steps, args.repeats):
        best, typical = min(harnessed) / min(bare), np.median(harnessed) / np.median(bare)
        flag = _over(best, BOOKKEEPING_TARGET)
        print(f"{name:13} {dtype:8} {min(bare):12.4f} {min(harnessed):12.4f} {best:11.3f} {typical:14.3f}{flag}")
    if not args.skip_default_run:
        print_default_floor(args.default_runs)
    print_fast_paths(args.fast_steps, args.fast_repeats, args.fast_dtype, args.csv)
    if args.against:
        print_against(args.against, args.pairs)


def _verdict() -> int:
    """0 when every target this run measured was met; else 1, after a line counting the misses."""
    if not MISSED:
        return 0
    print(f"harness.bench: {len(MISSED)} target(s) missed ({'; '.join(MISSED)})")
    return 1

if __name__ == "__main__":
    sys.exit(main())
