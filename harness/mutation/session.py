"""The cosmic-ray side: a private copy per job, one session per copy, the sample, execution.

Mutants are enumerated by ``cosmic-ray init`` with every core operator and run
by ``cosmic-ray exec`` (local distributor), which writes each mutant into the
copy, runs ``python -m harness.mutate run-one`` there and restores the file.
Mutants left out of the sample, or given to another job, are marked SKIPPED
in a session before it is executed, as cosmic-ray's own filters do.
"""
from __future__ import annotations

import os
import random
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

MIN_PER_MODULE = 10  # every module is sampled, even one with few mutation sites
MUTANT_TIMEOUT = 420  # s; run-one's honest work is ~10-30 s, a hung call stops at runone.TIME_LIMIT (60 s)
PROGRESS_EVERY = 60  # s between progress lines on stderr
COPIED = ("impls", "harness", "tests", "examples", "pyproject.toml", "README.md", "constraints.txt")
CONFIG = """[cosmic-ray]
module-path = {modules}
timeout = {timeout}
excluded-modules = []
test-command = "{command}"

[cosmic-ray.distributor]
name = "local"
"""


class SessionError(Exception):
    """cosmic-ray is missing or failed; ``str(exc)`` is the one-line reason."""


@dataclass(frozen=True)
class Mutant:
    """One work item of a session, identified across the copies by (path, operator, occurrence)."""

    job_id: str
    path: str  # relative to the copy, e.g. impls/np_fast.py
    operator: str
    occurrence: int
    line: int
    column: int

    @property
    def ident(self) -> tuple[str, str, int]:
        return self.path, self.operator, self.occurrence

    @property
    def site(self) -> tuple[str, int, int, str]:
        """Where and what kind: one AST position and operator family (e.g. every ``a - b`` replacement)."""
        return self.path, self.line, self.column, self.operator.split("/")[-1].split("_")[0]


def cosmic_ray() -> Path:
    """The cosmic-ray command of this interpreter's environment."""
    path = Path(sys.executable).parent / "cosmic-ray"
    if not path.exists():
        raise SessionError("cosmic-ray is not installed in this environment;"
                           " pip install -c constraints.txt -e '.[mutate]'")
    return path


def tracked_files(root: Path) -> list[Path]:
    """The working tree's files under COPIED (tracked or untracked, not ignored), uncommitted edits included."""
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "--", *COPIED], cwd=root,
                            capture_output=True, text=True)
    if listed.returncode != 0:
        raise SessionError(f"git ls-files failed in {root}: {listed.stderr.strip()}")
    return [Path(line) for line in listed.stdout.splitlines() if (root / line).is_file()]


def copy_tree(root: Path, dest: Path, files: list[Path]) -> None:
    """Copy ``files`` (relative to ``root``) into ``dest``."""
    for rel in files:
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(root / rel, dest / rel)


def write_config(copy: Path, modules: list[str], command: str) -> Path:
    """The cosmic-ray configuration of one copy."""
    path = copy / "cosmic-ray.toml"
    path.write_text(CONFIG.format(modules="[" + ", ".join(f'"{m}"' for m in modules) + "]",
                                  timeout=MUTANT_TIMEOUT, command=command))
    return path


def init(copy: Path) -> list[Mutant]:
    """``cosmic-ray init`` in ``copy``; every mutant it generated."""
    _run([str(cosmic_ray()), "init", "cosmic-ray.toml", "session.sqlite"], copy)
    from cosmic_ray.work_db import WorkDB, use_db

    with use_db(str(copy / "session.sqlite"), WorkDB.Mode.open) as db:
        items = db.work_items
    return sorted((Mutant(w.job_id, str(m.module_path), m.operator_name, m.occurrence, *m.start_pos)
                   for w in items for m in w.mutations[:1]), key=lambda m: m.ident)


def skip(copy: Path, job_ids: list[str], reason: str) -> None:
    """Mark work items as done without running them (what cosmic-ray's filters do)."""
    from cosmic_ray.work_db import WorkDB, use_db
    from cosmic_ray.work_item import WorkerOutcome, WorkResult

    with use_db(str(copy / "session.sqlite"), WorkDB.Mode.open) as db:
        db.set_multiple_results(job_ids, WorkResult(worker_outcome=WorkerOutcome.SKIPPED, output=reason))


def results(copy: Path) -> dict[tuple[str, str, int], dict]:
    """Mutant ident -> cosmic-ray's outcome of every executed (not skipped) work item of the copy."""
    from cosmic_ray.work_db import WorkDB, use_db
    from cosmic_ray.work_item import WorkerOutcome

    with use_db(str(copy / "session.sqlite"), WorkDB.Mode.open) as db:
        done = db.completed_work_items
    return {(str(m.module_path), m.operator_name, m.occurrence): {
        "worker_outcome": r.worker_outcome.value, "test_outcome": r.test_outcome and r.test_outcome.value,
        "output": (r.output or "")[-2000:]}
        for w, r in done for m in w.mutations[:1] if r.worker_outcome != WorkerOutcome.SKIPPED}


def sample(mutants: list[Mutant], budget: int | None, seed: int) -> list[Mutant]:
    """A seeded sample of about ``budget`` mutants, stratified by module and then by site.

    Each module gets at least ``MIN_PER_MODULE`` (or all it has); the rest of the
    budget goes to modules in proportion to their mutation sites (D'Hondt). Inside
    a module every site is visited once, in a seeded random order, before any site
    gets a second mutant, so the binary operators' eleven replacements per site do
    not crowd out the rest. ``None``: every mutant.
    """
    if budget is None or budget >= len(mutants):
        return list(mutants)
    by_module: dict[str, list[Mutant]] = {}
    for m in mutants:
        by_module.setdefault(m.path, []).append(m)
    sites = {p: len({m.site for m in ms}) for p, ms in by_module.items()}
    quota = {p: min(len(ms), MIN_PER_MODULE) for p, ms in by_module.items()}
    while sum(quota.values()) < budget:
        open_ = [p for p in by_module if quota[p] < len(by_module[p])]
        best = max(open_, key=lambda p: (sites[p] / (quota[p] + 1), p))
        quota[best] += 1
    chosen = []
    for path, ms in by_module.items():
        chosen += _site_order(ms, random.Random(f"{seed}:{path}"))[:quota[path]]
    return sorted(chosen, key=lambda m: m.ident)


def _site_order(mutants: list[Mutant], rng: random.Random) -> list[Mutant]:
    """The module's mutants in rounds: one per site in each round, sites and replacements in seeded order."""
    by_site: dict[tuple, list[Mutant]] = {}
    for m in mutants:
        by_site.setdefault(m.site, []).append(m)
    order = sorted(by_site)
    rng.shuffle(order)
    for site in order:
        rng.shuffle(by_site[site])
    rounds = max(len(v) for v in by_site.values())
    return [by_site[s][r] for r in range(rounds) for s in order if r < len(by_site[s])]


def execute(copies: list[Path], env: dict[str, str], count_done, total: int, log=sys.stderr) -> None:
    """``cosmic-ray exec`` in every copy at once; a progress line every PROGRESS_EVERY seconds."""
    start, procs = time.monotonic(), []
    next_line = start + PROGRESS_EVERY
    for copy in copies:
        with open(copy / "exec.log", "w") as out:
            procs.append(subprocess.Popen([str(cosmic_ray()), "exec", "cosmic-ray.toml", "session.sqlite"], cwd=copy,
                                          env={**env, "PYTHONPATH": str(copy)}, stdout=out, stderr=subprocess.STDOUT))
    try:
        while any(p.poll() is None for p in procs):
            time.sleep(1)
            if time.monotonic() >= next_line:
                next_line += PROGRESS_EVERY
                elapsed, done = time.monotonic() - start, count_done()
                eta = elapsed / done * (total - done) if done else float("nan")
                print(f"harness.mutate: {done}/{total} mutants after {elapsed / 60:.1f} min,"
                      f" about {eta / 60:.0f} min to go", file=log, flush=True)
    finally:
        for p in procs:
            if p.poll() is None:
                p.terminate()
                p.wait()
    bad = [(c, p.returncode) for c, p in zip(copies, procs) if p.returncode != 0]
    if bad:
        raise SessionError(f"cosmic-ray exec exited {bad[0][1]} in {bad[0][0]} (see exec.log there)")


def _run(argv: list[str], cwd: Path) -> None:
    done = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(cwd)})
    if done.returncode != 0:
        last = (done.stderr.strip() or done.stdout.strip() or "(no output)").splitlines()[-1]
        raise SessionError(f"{' '.join(argv[1:3])} failed in {cwd} (exit {done.returncode}): {last}")
