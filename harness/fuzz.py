"""python -m harness.fuzz [--impls ...] [--impl MODULE:ATTR] [--dtype float64,float32] [--max-examples 100]
    [--time-budget SECONDS] [--shrink-budget SECONDS] [--max-steps 500] [--seed 0] [--shards N] [--jobs 1 | --scheduler tcp://HOST:PORT]
    [--time-limit 600] [--out DIR] [--overwrite] [--quiet]

Differential fuzzing: Hypothesis searches the space of valid configurations
(``harness.fuzzing.space``: depth, widths, activations, loss and reduction,
dataset, dtype, seed, learning rate, steps, optimizer and schedule); each
example is a full comparison against the oracle. The search is split into
``--shards`` independent seeded searches that generate all their examples,
failures or not; then each distinct failure (an implementation and the check it
failed) is shrunk once to a minimal configuration, printed as a ready-to-run
``python -m harness.compare`` line. Shards and shrink tasks run in local
processes (``--jobs``) or on a Dask cluster (``--scheduler``): the rows are the
same either way, and so is isolation: an implementation that crashes, is killed
or hangs past ``--time-limit`` is one fault line and the campaign goes on.
Writes fuzz.csv, summary.md, meta.json and the examples database (replayed
first when the same --out is fuzzed again).
Exit codes: 0 no disagreement, 1 a disagreement (or a crash) was found, 2 bad usage, 3 an internal error,
4 the Dask workers run other versions than this process (nothing run), 130 interrupted (nothing written).
"""
from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from tqdm import tqdm

from harness import internal
from harness.cli import Interrupted, Parser, interrupted_code, stopping_on_signals
from harness.config import HELP, RunConfig, UsageError, repeated
from harness.fuzzing import campaign, report, space
from harness.fuzzing.search import Shard
from harness.meta import run_metadata
from harness.reporting import results
from harness.running import plugins
from harness.running.executors import VERSION_MISMATCH, SchedulerError, VersionMismatch, executor
from impls.registry import names
from impls.spec import DTYPES, RUN_DTYPES


@dataclass(frozen=True)
class Plan:
    shards: list[Shard]
    jobs: int
    scheduler: str | None
    out: Path
    quiet: bool
    database: dict


# Compiles each new network for 7 to 18 s (torch.compile of a while_loop, never cached): named, it fuzzes too,
# but by default it would spend most of a search compiling.
SLOW_TO_BUILD = ("torch-loop",)
# Each distinct failure is shrunk for at most this long: most reach their minimum in 1 to 3 minutes (an example
# takes about 12 s with every implementation), and Hypothesis itself gives up after 5.
SHRINK_SECONDS = 300.0


def parse(argv: list[str] | None) -> Plan:
    parser = Parser(prog="python -m harness.fuzz", description=__doc__.splitlines()[4])
    parser.add_argument("--impls", default=",".join(n for n in names() if n not in SLOW_TO_BUILD),
                        help=f"built-in implementations (default: all but {', '.join(SLOW_TO_BUILD)})")
    parser.add_argument("--impl", action="append", default=[], metavar="MODULE:ATTR", help="your own (repeatable)")
    parser.add_argument("--dtype", default=",".join(DTYPES),
                        help="dtypes an example may take (default: float64,float32; bfloat16, float16 and the mixed"
                             f" policies {', '.join(space.MIXED_CHOICES)} opt-in)")
    parser.add_argument("--max-examples", type=int, default=100, help="examples searched in all (default: 100)")
    parser.add_argument("--time-budget", type=float, default=None,
                        help="seconds after which no new example is generated (shrinking still runs)")
    parser.add_argument("--shrink-budget", type=float, default=SHRINK_SECONDS,
                        help=f"seconds each failure is shrunk for at most (default: {SHRINK_SECONDS:g})")
    parser.add_argument("--max-steps", type=int, default=space.MAX_STEPS, help="longest run (default: 500)")
    parser.add_argument("--seed", type=int, default=0, help="the search's seed (default: 0)")
    parser.add_argument("--shards", type=int, default=None, help="independent searches (default: --jobs)")
    parser.add_argument("--jobs", type=int, default=1, help="local processes (default: 1)")
    parser.add_argument("--scheduler", default=None, metavar="tcp://HOST:PORT", help="a Dask cluster instead")
    parser.add_argument("--time-limit", type=float, default=RunConfig.time_limit, metavar="SECONDS",
                        help=HELP["time_limit"])
    parser.add_argument("--out", default=None, help="results folder (default: a new one under results/)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out folder")
    parser.add_argument("--quiet", action="store_true", help="no progress bar; print only the verdict")
    args = parser.parse_args(argv)
    impls = tuple(n for n in args.impls.split(",") if n)
    dtypes = tuple(args.dtype.split(","))
    for flag, listed in (("--impls", impls), ("--dtype", dtypes), ("--impl", args.impl)):
        if twice := repeated(listed):
            raise UsageError(f"{flag} lists {twice!r} more than once")
    if unknown := [n for n in impls if n not in names()]:
        raise UsageError(f"unknown implementation {unknown[0]!r}; choose from {', '.join(names())}")
    if bad := [d for d in dtypes if d not in RUN_DTYPES + tuple(space.MIXED_CHOICES)]:
        raise UsageError(f"unknown dtype {bad[0]!r}; choose from {', '.join(RUN_DTYPES + tuple(space.MIXED_CHOICES))}")
    if not impls and not args.impl:
        raise UsageError("nothing to fuzz: give --impls or --impl")
    for flag, value, low in (("--max-examples", args.max_examples, 1), ("--jobs", args.jobs, 1),
                             ("--max-steps", args.max_steps, space.MIN_STEPS), ("--shards", args.shards or 1, 1)):
        if value < low:
            raise UsageError(f"{flag} must be >= {low}, got {value}")
    for flag, budget in (("--time-budget", args.time_budget), ("--shrink-budget", args.shrink_budget),
                         ("--time-limit", args.time_limit)):
        if budget is not None and not 0 < budget < math.inf:
            raise UsageError(f"{flag} must be a number of seconds > 0, got {budget}")
    for reference in args.impl:
        try:
            plugins.load(reference)
        except plugins.PluginError as exc:
            raise UsageError(str(exc)) from None
    out = Path(args.out) if args.out else results.default_out(results.RESULTS, "fuzz")
    results.check_out(out, args.overwrite)
    database = report.from_json(results.read_json(out / report.DATABASE, {}))  # earlier failures, replayed first
    count = args.shards or args.jobs
    per_shard = math.ceil(args.max_examples / count)
    deadline = None if args.time_budget is None else time.time() + args.time_budget
    shards = [Shard(args.seed * 1000 + i, per_shard, deadline, impls, tuple(args.impl), dtypes, args.max_steps,
                    args.shrink_budget, args.time_limit) for i in range(count)]
    return Plan(shards, args.jobs, args.scheduler, out, args.quiet, database)


def main(argv: list[str] | None = None) -> int:
    try:
        plan = parse(argv)
        pool = executor(plan.jobs, plan.scheduler)
    except VersionMismatch as exc:
        print(f"harness.fuzz: error: {exc}", file=sys.stderr)
        return VERSION_MISMATCH
    except (UsageError, ValueError, SchedulerError, results.ResultsError) as exc:
        print(f"harness.fuzz: error: {exc}", file=sys.stderr)
        return 2
    try:
        with stopping_on_signals():
            return _fuzz(plan, pool)
    except (Interrupted, KeyboardInterrupt) as exc:
        print(f"harness.fuzz: interrupted; nothing was written to {plan.out}", file=sys.stderr)
        return interrupted_code(exc)
    except Exception as exc:  # noqa: BLE001 -- a harness bug: one line, the traceback in a file
        return internal.report("harness.fuzz", exc, plan.out)


def _fuzz(plan: Plan, pool) -> int:
    total, ran_on = sum(s.max_examples for s in plan.shards), pool.description
    if not plan.quiet:
        print(f"harness.fuzz: up to {total} examples in {len(plan.shards)} shard(s) on {ran_on};"
              f" results go to {plan.out}", file=sys.stderr, flush=True)
    # one tick per example where the search runs here (shrinking runs past the total); none elsewhere
    bar = tqdm(total=total if pool.in_process else None, unit="example",
               disable=plan.quiet or not sys.stderr.isatty() or not pool.in_process, file=sys.stderr)
    try:
        found = campaign.run(plan.shards, pool, plan.database, bar.update)
    finally:
        pool.close()
        bar.close()
    rows = pd.DataFrame(found.rows)
    reproducers = pd.DataFrame(found.reproducers, columns=[*rows.columns, "command"])
    shard = plan.shards[0]
    title = f"harness.fuzz: {len(rows)} examples, {len(plan.shards)} shard(s), seed {shard.seed // 1000}"
    text = report.summary(title, rows, reproducers)
    meta = {"config": {"impls": list(shard.impls), "impl": list(shard.plugins), "dtypes": list(shard.dtypes),
                       "max_examples": total, "max_steps": shard.max_steps, "shards": len(plan.shards),
                       "shrink_budget_s": shard.shrink_seconds, "time_limit_s": shard.time_limit,
                       "seeds": [s.seed for s in plan.shards], "ran_on": ran_on},
            "environment": run_metadata()}
    written = results.write(plan.out, {"fuzz": rows, "reproducers": reproducers}, meta, text,
                            data={report.DATABASE: report.to_json(found.database)})
    print(text if not plan.quiet else ("\n".join(reproducers.command) if len(reproducers) else "PASS"))
    print(f"results: {written}")
    return 1 if len(reproducers) else 0


if __name__ == "__main__":
    sys.exit(main())
