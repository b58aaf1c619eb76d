"""python -m harness.compare [--impls numpy,torch] [--dtype float64] [--steps 100000] [--out DIR] ...

Compares every available implementation on one configuration (defaults: the
notebook's run, every implementation, float64 and float32) against an oracle
that shares no code with them. This command parses, calls the library
(``harness.pipeline.compare``: configuration, weights, training, checks, verdict)
and writes the report (harness/reporting/: tables, summary.md, plots, atomically).
Exit codes: 0 every check passed, 1 a check failed (printed), 2 bad usage,
3 an internal error (the oracle disagreed with itself, or another harness bug: one line, the
traceback saved to a file), 130/143 interrupted (nothing written).
"""
from __future__ import annotations

import gc
import sys
from pathlib import Path

import pandas as pd

from harness import internal
from harness.checks import verdict
from harness.cli import Interrupted, interrupted_code, stopping_on_signals
from harness.config import UsageError, parse_args
from harness.data import load
from harness.meta import run_metadata
from harness.pipeline import Outcome, compare, run_config  # re-exported: the public API (__all__)
from harness.reporting import results, summary
from harness.running import plugins, resources
from harness.running.plugins import PluginError

__all__ = ["Outcome", "compare", "main", "run_config"]


def _plots(tables: dict[str, pd.DataFrame]) -> list[results.Plot]:
    # Imported here, not at the top: matplotlib is the report's alone. The workers' fork server preloads what
    # this process has imported, and matplotlib there would add about 0.4 s before the first trajectory starts.
    from harness.reporting import plots

    return [("loss.png", plots.plot_losses, tables["trajectory"]),
            ("deviation.png", plots.plot_deviation, tables["trajectory"]),
            ("timings.png", plots.plot_timings, tables["timings"])]


def _run(config, extra: dict, out: Path) -> tuple[Outcome, Path]:
    """The comparison and its report, written atomically: (what it found, where it was written)."""
    if not config.quiet:
        print(f"harness.compare: {config.steps:,} steps of {', '.join(config.impls + config.impl)} in"
              f" {', '.join(config.dtype)}; results go to {out}", file=sys.stderr, flush=True)
    outcome = compare(config, extra, timings=not config.no_timings)
    text = summary.summary_md(config, outcome)
    meta = {"config": run_config(config), "skipped": outcome.skipped, "oracle": summary.oracle_info(),
            "work": outcome.work, "memory": outcome.memory, "environment": run_metadata(outcome.environment)}
    plots_ = [] if config.no_plots else [p for p in _plots(outcome.tables)
                                         if not (config.no_timings and p[0] == "timings.png")]
    return outcome, results.write(out, outcome.tables, meta, text, plots_)


def main(argv: list[str] | None = None) -> int:
    try:
        config = parse_args(argv)
        extra = {reference: plugins.load(reference) for reference in config.impl}
        out = Path(config.out) if config.out else results.default_out()
        results.check_out(out, config.overwrite)
        needs = resources.estimate(config, load(config.dataset)[0])
        if why := resources.refusal(needs, config.max_hours, resources.available_bytes(), resources.COARSE_MARGIN):
            raise UsageError(why)
    except (UsageError, PluginError, ValueError) as exc:
        print(f"harness.compare: error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # noqa: BLE001
        return internal.report("harness.compare", exc)
    try:
        with stopping_on_signals():
            outcome, written = _run(config, extra, out)
    except UsageError as exc:  # the calibrated estimate is past --max-hours: refused before any trajectory
        print(f"harness.compare: error: {exc}", file=sys.stderr)
        return 2
    except (Interrupted, KeyboardInterrupt) as exc:
        print(f"harness.compare: interrupted; nothing was written to {out}", file=sys.stderr)
        return interrupted_code(exc)
    except Exception as exc:  # noqa: BLE001 -- the oracle disagreeing with itself, or any other harness bug
        return internal.report("harness.compare", exc, out)
    if config.quiet:
        unsure = summary.inconclusive_lines(outcome.verdicts)  # exit 1 too: never printed as PASS
        print("\n".join(outcome.failures + unsure + outcome.conventions_named)
              or ("PASS" if verdict.exit_code(outcome.verdicts) == 0 else "NOTHING COMPARED"))
    else:
        print(summary.summary_md(config, outcome, short=True))
    print(f"results: {written}")
    return verdict.exit_code(outcome.verdicts)


if __name__ == "__main__":
    code = main()
    # Frozen, the ~110,000 objects left here are skipped by the interpreter's collections at exit: it took
    # 0.27 s after main returned, 0.05 s frozen (the default run; nothing is left to clean up but memory).
    gc.freeze()
    sys.exit(code)
