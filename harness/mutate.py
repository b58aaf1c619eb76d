"""python -m harness.mutate [--sample 300|all] [--modules np_fast,spec] [--jobs 2] [--seed 0] [--out results/mutation]
    [--work DIR] [--keep]

Mutation testing of the harness itself: does it blame the right implementation?
cosmic-ray mutates every module of ``impls/`` in private copies of the working
tree (never in this checkout) and runs, for each mutant,
``python -m harness.mutate run-one`` there: a short comparison of the default
implementations plus every one that uses the mutated module, scored as caught
and blamed right, blamed on another, survived, or harness error (see
harness/mutation/). Writes mutants.csv, summary.md, records.jsonl,
campaign.json and judgements.csv to --out, atomically.

    python -m harness.mutate report [--out results/mutation]

re-renders mutants.csv and summary.md after survivors are judged in
judgements.csv (``equivalent`` with a one-line reason, or ``miss``).

Exit codes: 0 the target is met (``report.TARGET`` caught and blamed right, none blamed on
another), 1 it is not (or the unmutated copy fails), 2 bad usage, 130
interrupted (nothing written).
"""
from __future__ import annotations

import argparse
import os
import shlex
import sys
from pathlib import Path

from harness.cli import Interrupted, Parser, UsageError, interrupted_code, stopping_on_signals
from harness.mutation import session
from harness.mutation.session import SessionError

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = Path("results/mutation")
DEFAULT_SAMPLE = 300  # ~30 min with 2 jobs on this 2-core machine (measured: 10 s a numpy mutant, 20-25 s a torch one)
DEFAULT_JOBS = 2  # one per core; each job is one process at a time


_Parser = Parser


def _sample(text: str) -> int | None:
    if text == "all":
        return None
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"--sample must be a whole number >= 1 or 'all', got {text!r}")
    return int(text)


def parse_campaign(argv: list[str]):
    """Options of a campaign; raises UsageError with one line on bad input."""
    from harness.mutation import usage
    from harness.mutation.campaign import Options

    p = _Parser(prog="python -m harness.mutate", description="Mutation testing of the harness's blame.")
    p.add_argument("--sample", type=_sample, default=DEFAULT_SAMPLE, help=f"mutants to run, or all (default {DEFAULT_SAMPLE})")
    p.add_argument("--modules", default="", help="comma-separated modules of impls/ to mutate (default: all)")
    p.add_argument("--jobs", type=int, default=DEFAULT_JOBS, help=f"copies run side by side (default {DEFAULT_JOBS})")
    p.add_argument("--seed", type=int, default=0, help="seed of the sample (default 0)")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"results folder (default {DEFAULT_OUT})")
    p.add_argument("--work", type=Path, default=None, help="work folder for the copies (default: a new temporary one)")
    p.add_argument("--keep", action="store_true", help="keep the work folder")
    args = p.parse_args(argv)
    known = usage.package_modules(ROOT)
    modules = tuple(_module(name.strip(), known) for name in args.modules.split(",") if name.strip())
    cpus = os.cpu_count() or 1
    if not 1 <= args.jobs <= cpus:
        raise UsageError(f"--jobs must be in 1..{cpus} (the CPU count), got {args.jobs}")
    if args.seed < 0:
        raise UsageError(f"--seed must be >= 0, got {args.seed}")
    if args.out.exists() and not args.out.is_dir():
        raise UsageError(f"--out {args.out} is a file, not a folder")
    if args.work is not None and args.work.exists():
        raise UsageError(f"--work {args.work} exists; give a new folder")
    command = "python -m harness.mutate " + " ".join(shlex.quote(a) for a in argv)
    return Options(args.sample, modules, args.jobs, args.seed, args.out, args.work, args.keep, command.strip())


def _module(name: str, known: dict[str, Path]) -> str:
    """``np_fast``, ``impls.np_fast`` or ``impls/np_fast.py`` -> ``impls.np_fast``."""
    dotted = name.removesuffix(".py").replace("/", ".")
    dotted = dotted if dotted.startswith("impls.") else f"impls.{dotted}"
    if dotted not in known:
        short = ", ".join(k.split(".", 1)[1] for k in known if "." in k)
        raise UsageError(f"unknown module {name!r} in --modules; choose from {short}")
    return dotted


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        if argv[:1] == ["run-one"]:
            return _run_one(argv[1:])
        if argv[:1] == ["report"]:
            return _report(argv[1:])
        opts = parse_campaign(argv)
        session.cosmic_ray()  # installed? (the tests' environment has no cosmic-ray: it is the mutate extra)
    except (UsageError, ValueError, SessionError) as exc:
        print(f"harness.mutate: error: {exc}", file=sys.stderr)
        return 2
    return _campaign(opts)


def _campaign(opts) -> int:
    from harness.mutation.campaign import campaign

    try:
        with stopping_on_signals():
            out, counts = campaign(ROOT, opts)
    except SessionError as exc:
        print(f"harness.mutate: {exc}", file=sys.stderr)
        return 1
    except BaseException as exc:  # Ctrl-C or SIGTERM (anything else propagates as before)
        if not isinstance(exc, (KeyboardInterrupt, Interrupted)):
            raise
        print("harness.mutate: interrupted; nothing was written", file=sys.stderr)
        return interrupted_code(exc)
    return _verdict(out, counts)


def _verdict(out: Path, counts) -> int:
    from harness.mutation import classify as c
    from harness.mutation.report import TARGET, score

    s = score(counts)
    print(f"harness.mutate: {', '.join(f'{k}: {counts[k]}' for k in c.CATEGORIES)}; score"
          f" {'-' if s is None else f'{100 * s:.1f} %'} (impls.spec apart); see {out / 'summary.md'}")
    return 0 if s is not None and s >= TARGET and not counts[c.CAUGHT_OTHER] else 1


def _report(argv: list[str]) -> int:
    from harness.mutation import report

    p = _Parser(prog="python -m harness.mutate report")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = p.parse_args(argv)
    if not (args.out / "records.jsonl").exists():
        raise UsageError(f"{args.out} holds no finished campaign (records.jsonl)")
    rows, meta = report.load(args.out)
    return _verdict(*report.write(args.out, rows, meta))


def _run_one(argv: list[str]) -> int:
    from harness.mutation.runone import run_one

    p = _Parser(prog="python -m harness.mutate run-one")
    p.add_argument("--pristine", type=Path, required=True, help="the unmutated copy")
    p.add_argument("--out", type=Path, required=True, help="folder of the records")
    args = p.parse_args(argv)
    if not (args.pristine / "impls").is_dir():
        raise UsageError(f"--pristine {args.pristine} has no impls/ folder")
    return run_one(Path.cwd(), args.pristine, args.out)


if __name__ == "__main__":
    sys.exit(main())
