"""The campaign: copies, sessions, the sample, the baseline, execution, and the rows of the report."""
from __future__ import annotations

import json
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

from harness.mutation import classify as c
from harness.mutation import mutant as m
from harness.mutation import runone, session, usage
from harness.mutation.session import Mutant, SessionError

PER_MUTANT = (f"`python -m harness.mutate run-one`: the registry's default implementations plus every one that"
              f" uses the mutated module (imports, read with `ast`), {runone.STEPS} steps, checkpoints every"
              f" {runone.CHECK_EVERY}, {' and '.join(runone.DTYPES)}, on two models: "
              + "; ".join(f"{k} {v or '(2-4-1 tanh, sigmoid, sel, sum)'}" for k, v in runone.MODELS.items())
              + "; and the notebook's model at two edges of the checkpoint bookkeeping: "
              + "; ".join(f"{k} {v}" for k, v in runone.EDGES.items())
              + f"; per-call time limit {runone.TIME_LIMIT:g} s.")
CATEGORIES_NOTE = ("caught, blamed right: some verdict fails or is faulty, and every failing one belongs to an"
                   " implementation that uses the module; blamed on another: a failing verdict of an implementation"
                   " that does not; survived: every verdict passes (each inspected: equivalent, or a real miss);"
                   " harness error: the comparison raised or its process died.")


@dataclass(frozen=True)
class Options:
    """What one campaign runs."""

    sample: int | None  # None: every mutant
    modules: tuple[str, ...]  # impls.* names; empty: all
    jobs: int
    seed: int
    out: Path
    work: Path | None
    keep: bool
    command: str


def campaign(root: Path, opts: Options, log=sys.stderr) -> tuple[Path, dict]:
    """Run the whole campaign and write the results folder; (folder, category counts)."""
    start = time.perf_counter()
    work = opts.work or Path(tempfile.mkdtemp(prefix="xor-mutate-"))
    try:
        pristine, copies, records = _prepare(root, work, opts)
        mutants = session.init(copies[0])
        for copy in copies[1:]:
            session.init(copy)
        chosen = session.sample(mutants, opts.sample, opts.seed)
        _assign(copies, chosen)
        env = {**_env(), "TORCHINDUCTOR_CACHE_DIR": str(work / "inductor-cache")}
        base = _baseline(copies[0], pristine, work / "baseline", env)
        print(f"harness.mutate: {len(chosen)} of {len(mutants)} mutants in {opts.jobs} job(s); the unmutated"
              f" copy passes in {base['wall_s']:.0f} s, so about {base['wall_s'] * len(chosen) / opts.jobs / 60:.0f}"
              f" min (more where torch.compile recompiles)", file=log, flush=True)
        session.execute(copies, env, lambda: len(list(records.glob("*.json"))), len(chosen), log)
        done = {}
        for copy in copies:
            done.update(session.results(copy))
        rows = rows_of(chosen, pristine, records, done)
        meta = _meta(opts, mutants, chosen, pristine, time.perf_counter() - start)
        from harness.mutation import report

        return report.write(opts.out, rows, meta)
    finally:
        if not opts.keep:
            shutil.rmtree(work, ignore_errors=True)


def _prepare(root: Path, work: Path, opts: Options) -> tuple[Path, list[Path], Path]:
    files = session.tracked_files(root)
    pristine, records = work / "pristine", work / "records"
    copies = [work / f"copy-{j}" for j in range(opts.jobs)]
    for dest in [pristine, *copies]:
        session.copy_tree(root, dest, files)
    records.mkdir(parents=True)
    names = usage.package_modules(pristine)
    modules = [str(names[n].relative_to(pristine)) for n in (opts.modules or names)]
    command = f"{sys.executable} -m harness.mutate run-one --pristine {pristine} --out {records}"
    for copy in copies:
        session.write_config(copy, modules, command)
    return pristine, copies, records


def _assign(copies: list[Path], chosen: list[Mutant]) -> None:
    """Give the chosen mutants to the copies in turn; every other work item of a copy is skipped."""
    for j, copy in enumerate(copies):
        from cosmic_ray.work_db import WorkDB, use_db

        with use_db(str(copy / "session.sqlite"), WorkDB.Mode.open) as db:
            items = {(str(x.module_path), x.operator_name, x.occurrence): w.job_id
                     for w in db.work_items for x in w.mutations[:1]}
        mine = {mu.ident for mu in chosen[j::len(copies)]}
        sampled = {mu.ident for mu in chosen}
        session.skip(copy, [v for k, v in items.items() if k not in sampled], "sampled out")
        session.skip(copy, [v for k, v in items.items() if k in sampled and k not in mine], "another job's")


def _env() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}


def _baseline(copy: Path, pristine: Path, out: Path, env: dict[str, str]) -> dict:
    """run-one on the unmutated copy: every verdict must pass, or no mutant can be scored."""
    subprocess.run([sys.executable, "-m", "harness.mutate", "run-one", "--pristine", str(pristine), "--out",
                    str(out)], cwd=copy, env={**env, "PYTHONPATH": str(copy)}, capture_output=True, timeout=
                   session.MUTANT_TIMEOUT)
    path = out / "baseline.json"
    if not path.exists():
        raise SessionError("the baseline run on the unmutated copy wrote no record")
    record = json.loads(path.read_text())
    if record["category"] != c.SURVIVED:
        why = record["error"] or "; ".join(line for cmp in record["comparisons"] for line in cmp["failures"])
        raise SessionError(f"the unmutated copy does not pass, so no mutant can be scored: {why}")
    return record


def rows_of(chosen: list[Mutant], pristine: Path, records: Path, done: dict) -> list[dict]:
    """One raw row per chosen mutant: its record joined by the mutated source's key, or the harness error."""
    import cosmic_ray.plugins
    from cosmic_ray.mutating import mutate_code

    everything = tuple(usage.registry(pristine))
    using = usage.users(pristine)
    rows, seen = [], {}
    for mu in chosen:
        module = usage.module_name(pristine / mu.path, pristine)
        original = (pristine / mu.path).read_text()
        mutated = mutate_code(original, cosmic_ray.plugins.get_operator(mu.operator)(), mu.occurrence) or original
        path = records / f"{m.source_key(mutated)}.json"
        record = json.loads(path.read_text()) if path.exists() else _missing(done.get(mu.ident))
        key = m.key(module, original, mutated)
        seen[key] = seen.get(key, 0) + 1
        rows.append({
            "id": f"{module.split('.')[-1]}:{mu.line}:{mu.operator.split('/')[-1]}#{mu.occurrence}",
            "key": key if seen[key] == 1 else f"{key}-{seen[key]}", "module": module,
            "group": usage.group(module, using[module], everything), "line": m.changed_lines(original, mutated)[0],
            "operator": mu.operator, "change": m.summary(original, mutated),
            "expected": ",".join(using[module]), "ran": ",".join(record.get("ran", [])),
            "failing": failing_text(record), "measured": record["category"], "error": record.get("error") or "",
            "wall_s": record.get("wall_s", ""), "failures": [ln for cmp in record.get("comparisons", [])
                                                            for ln in cmp["failures"][:4]],
            "diff": m.unified_diff(original, mutated, mu.path),
            "by_model": by_model(record, using[module]),
        })
    return rows


def by_model(record: dict, expected: tuple[str, ...]) -> dict[str, str]:
    """model -> the mutant's category from that model's comparison alone (what each configuration catches)."""
    return {cmp["model"]: c.classify([runone.VerdictRow(v) for v in cmp["verdicts"]], expected)
            for cmp in record.get("comparisons", [])}


def failing_text(record: dict) -> str:
    """``model: impl dtype status (checks)`` for every failing verdict."""
    return "; ".join(f"{cmp['model']}: {v['impl']} {v['dtype']} {v['status']} ({','.join(v['checks'])})"
                     for cmp in record.get("comparisons", []) for v in cmp["verdicts"] if v["status"] in c.FAILING)


def _missing(outcome: dict | None) -> dict:
    """The record of a mutant whose run-one wrote nothing: what cosmic-ray saw instead."""
    if outcome is None:
        return {"category": c.HARNESS_ERROR, "error": "no record and no cosmic-ray result (not run)"}
    said = "timed out" if outcome["output"] == "timeout" else (outcome["output"].strip().splitlines() or ["-"])[-1]
    return {"category": c.HARNESS_ERROR, "error": f"run-one wrote no record; cosmic-ray: {outcome['worker_outcome']}"
                                                  f"/{outcome['test_outcome']}: {said[:300]}"}


def _meta(opts: Options, mutants: list[Mutant], chosen: list[Mutant], pristine: Path, wall_s: float) -> dict:
    everything = tuple(usage.registry(pristine))
    using = usage.users(pristine)
    generated: dict[str, int] = {}
    for mu in mutants:
        name = usage.module_name(pristine / mu.path, pristine)
        group = usage.group(name, using[name], everything)
        generated[group] = generated.get(group, 0) + 1
    sample_note = ("every mutant." if opts.sample is None or len(chosen) == len(mutants) else
                   f"seeded (seed {opts.seed}) sample of {len(chosen)}, stratified by module (at least"
                   f" {session.MIN_PER_MODULE} each, the rest in proportion to mutation sites) and, inside a module,"
                   " one mutant per site before any site gets a second.")
    return {
        "command": opts.command, "finished": time.strftime("%Y-%m-%d %H:%M"), "wall_s": round(wall_s, 1),
        "jobs": opts.jobs, "seed": opts.seed, "sample": opts.sample, "modules": list(opts.modules),
        "generated": generated, "run": len(chosen),
        "tool": f"cosmic-ray {version('cosmic-ray')}, local distributor, one session per job",
        "versions": f"Python {platform.python_version()}, numpy {version('numpy')}, torch {version('torch')},"
                    f" jax {version('jax')}",
        "operators": "every core operator cosmic-ray generates (binary, comparison, unary and boolean operator"
                     " replacement, number replacer, AddNot, zero-iteration for, remove decorator, exception"
                     " replacer, break/continue)",
        "sample_note": sample_note, "per_mutant": PER_MUTANT, "categories_note": CATEGORIES_NOTE,
    }
