"""``python -m harness.frameworks``: where torch.optim, optax and keras part from the spec, and from each other.

Every case of ``harness.reporting.frameworks`` (each optimizer; schedules, weight
decay and eps = 0 where conventions show) is compared twice over: a short run
checkpointed at every step for the early distances, and a full run for the
verdict and the end; then again on each library's own defaults. The table goes
to ``results/optimizers/`` (``--out``) with the summary and meta.json.
"""
from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd

from harness import internal
from harness.pipeline import compare, run_config
from harness.config import RunConfig
from harness.cli import Interrupted, Parser, UsageError, interrupted_code, stopping_on_signals
from harness.meta import run_metadata
from harness.reporting import frameworks as report, results
from harness.reporting import tables

OUT = Path("results/optimizers")


def main(argv: list[str] | None = None) -> int:
    parser = Parser(prog="python -m harness.frameworks", description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=2000, help="updates in each full run (default: 2000)")
    parser.add_argument("--out", type=Path, default=OUT, help=f"results folder (default: {OUT})")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out folder")
    try:
        args = parser.parse_args(argv)
        if args.steps < max(report.EARLY):
            raise UsageError(f"--steps must be >= {max(report.EARLY)}, got {args.steps}")
        results.check_out(args.out, args.overwrite)
    except (UsageError, ValueError) as exc:
        print(f"harness.frameworks: error: {exc}", file=sys.stderr)
        return 2
    try:
        with stopping_on_signals():
            return _run(args.steps, args.out)
    except (Interrupted, KeyboardInterrupt) as exc:
        print(f"harness.frameworks: interrupted; nothing was written to {args.out}", file=sys.stderr)
        return interrupted_code(exc)
    except Exception as exc:  # noqa: BLE001 -- a harness bug: one line, the traceback in a file
        return internal.report("harness.frameworks", exc, args.out)


def _run(steps: int, out: Path) -> int:
    found, configs = [], []
    for label, settings, on_defaults in report.CASES:
        for defaults in (False, True) if on_defaults else (False,):
            mode = "library defaults" if defaults else "shared"
            print(f"harness.frameworks: {label}, {mode}", file=sys.stderr, flush=True)
            common = dict(impls=report.IMPLS, dtype=("float64",), quiet=True, framework_defaults=defaults,
                          **settings)
            # a run's parameters are compared at checkpoints before its last step: one more step than reported
            early = compare(RunConfig(steps=max(report.EARLY) + 1, check_every=1, **common), timings=False)
            whole = compare(RunConfig(steps=steps, **common), timings=False)
            found += report.rows(label, mode, early.tables["parameters"], whole.tables["parameters"],
                                 whole.verdicts, steps - 1)
            configs.append(run_config(RunConfig(steps=steps, **common)))
    table = pd.DataFrame(found, columns=report.COLUMNS)
    failed = ~table.verdict.str.startswith("pass")
    verdict = "**PASS**: every run passed or parted only by what it states." if not failed.any() else \
        "**FAIL**: " + ", ".join(f"{r.impl} ({r.case}, {r.hyperparameters})" for r in table[failed].itertuples())
    text = tables.summary(f"harness.frameworks: {len(report.CASES)} cases, float64, {steps:,} steps", verdict, {
        "Distance from the shared spec's truth (largest parameter error relative to the largest parameter)":
            tables.markdown(report.markdown_rows(table))})
    written = results.write(out, {"frameworks": table}, {"config": configs, "environment": run_metadata()}, text)
    print(text)
    print(f"results: {written}")
    return 1 if failed.any() else 0


if __name__ == "__main__":
    raise SystemExit(main())
