"""The command cosmic-ray runs for each mutant: find what it changed, compare, record the score.

It runs in a mutated copy of the repository (cwd, first on PYTHONPATH) and
compares that copy's ``impls/`` with the pristine one (``--pristine``) to learn
the module and the change, so the record is keyed to the mutant itself. The
comparison runs the registry's default implementations plus every one that
uses the mutated module, in float64 and float32, on each model of ``MODELS`` and at each of ``EDGES``.
The record goes to ``--out/<key>.json``; the exit code is 0 when every verdict
passed (cosmic-ray: survived), 1 when one failed (killed), 3 on a harness error.
"""
from __future__ import annotations

import json
import os
import time
import traceback
from pathlib import Path

from harness.mutation import classify, mutant, usage

STEPS = 300  # short trajectory: three checkpoints' teacher-forced checks plus 300 free-running steps
CHECK_EVERY = 100  # checkpoints at 0, 100, 200, 299, 300
TIME_LIMIT = 60.0  # s per call; the slowest honest call (torch.compile's first) is ~15 s here, so a hang is a fault
DTYPES = ("float64", "float32")
# Two models, so that every activation, loss and reduction the implementations branch on is executed:
# the notebook's, and a deeper one whose first layer is sigmoid so no relu input sits at its kink (biases
# start at zero and xor has the all-zero sample, so a relu first layer would get z == 0 exactly). Its widths
# are odd and even (n ^ 1 equals n + 1 for even n only), and its names are split from one string at run time,
# as the command line makes them: literals are interned, so a mutant comparing names with `is` would pass.
MODELS = {
    "notebook": {},  # 2-4-1, tanh then sigmoid, sel, sum
    "deep-bce-mean": {"layers": (2, 5, 3, 4, 1), "activations": tuple("sigmoid,relu,identity,sigmoid".split(",")),
                      "loss": "".join(["b", "ce"]), "reduction": "".join(["me", "an"])},
    # where the state-aware tolerances are widest: a saturated tanh layer feeding a one-unit layer, at lr 0.1
    # (the fuzzer's false alarms; Monte Carlo arithmetic widens the one-step allowance there), on AMSGrad
    "ill-conditioned: 2-60-1-1 tanh, amsgrad, lr 0.1": {"layers": (2, 60, 1, 1),
                                                       "activations": tuple("tanh,tanh,tanh".split(",")),
                                                       "lr": 0.1, "seed": 0, "optimizer": "amsgrad"},
    # the other optimizers' code: momentum buffers (nesterov) and AdamW's decay under a step schedule. Nesterov's
    # net is the one sel model deeper than two layers, with an output activation unlike its second: a mutant that
    # takes the output's slope from activations[1] instead of [-1] passed every other model (the 2026-12-08 rerun)
    "optimizers: nesterov, 2-4-3-1 tanh, identity, sigmoid": {
        "optimizer": "nesterov", "lr": 0.01, "layers": (2, 4, 3, 1),
        "activations": tuple("tanh,identity,sigmoid".split(","))},
    "optimizers: adamw, step schedule": {"optimizer": "adamw", "lr": 0.01, "schedule": "step",
                                         "decay_every": 100},
    # a sigmoid output that rounds to 1 within 20 steps (fuzz seed 61207): bce differenced through the outputs
    # instead of the logits is not finite there, and on no other model (the 2026-12-08 rerun's two survivors)
    "saturating bce: 5-49-41-41-1, parity:5, 20 steps": {
        "layers": (5, 49, 41, 41, 1), "activations": tuple("relu,identity,tanh,sigmoid".split(",")),
        "loss": "".join(["b", "ce"]), "dataset": "parity:5", "seed": 0, "lr": 0.1, "steps": 20, "check_every": 2},
}
# The notebook's model again at the edges of the checkpoint and chunk bookkeeping, where the first campaign's
# real misses hid: a checkpoint at every step of a 2-step run (step 1 is a checkpoint; small ints are cached,
# so `is` equals `==` there), and 4,202 steps in checkpoint segments of 2,100, 2,100, 1 and 1 (unequal
# neighbours; more steps than numpy-fast keeps outputs for between two loss passes, 16,384 / 4 = 4,096).
EDGES = {"edge: 2 steps, a checkpoint at each": {"steps": 2, "check_every": 1},
         "edge: 4202 steps, segments 2100, 2100, 1, 1": {"steps": int("4202"), "check_every": int("2100")}}
EXIT_SURVIVED, EXIT_CAUGHT, EXIT_ERROR = 0, 1, 3
TRACEBACK_LINES = 12  # of a harness error's traceback kept in the record: the innermost frames


def mutated_modules(copy: Path, pristine: Path) -> list[tuple[str, str, str]]:
    """(module, pristine source, mutated source) of every package module that differs from the pristine copy."""
    found = []
    for name, path in usage.package_modules(pristine).items():
        original, current = path.read_text(), (copy / path.relative_to(pristine)).read_text()
        if current != original:
            found.append((name, original, current))
    return found


def impls_to_run(root: Path, expected: tuple[str, ...]) -> tuple[str, ...]:
    """The default implementations plus the expected ones, in registry order."""
    wanted = set(usage.default_impls(root)) | set(expected)
    return tuple(name for name in usage.registry(root) if name in wanted)


def compare_all(impls: tuple[str, ...], copy: Path) -> list[dict]:
    """Every model's comparison, as plain data; raises whatever the harness raises."""
    import harness
    import impls as package

    for mod in (harness, package):  # the copy, not the editable install in the virtualenv
        if not Path(mod.__file__).resolve().is_relative_to(copy.resolve()):
            raise RuntimeError(f"{mod.__name__} was imported from {mod.__file__}, not from the copy {copy}")
    from harness.pipeline import compare
    from harness.config import RunConfig

    results = []
    for model, settings in {**MODELS, **EDGES}.items():
        config = RunConfig(impls=impls, dtype=DTYPES, quiet=True, time_limit=TIME_LIMIT,
                           **{"steps": STEPS, "check_every": CHECK_EVERY, **settings})
        outcome = compare(config, timings=False)
        results.append({
            "model": model,
            "verdicts": [{"impl": v.impl, "dtype": v.dtype, "status": v.status,
                          "checks": sorted({f.check for f in v.findings})} for v in outcome.verdicts],
            "failures": outcome.failures,
            "skipped": outcome.skipped,
        })
    return results


class VerdictRow:
    """One verdict of a record, as classify reads it."""

    def __init__(self, row: dict) -> None:
        self.impl, self.dtype, self.status = row["impl"], row["dtype"], row["status"]


def score(record: dict) -> str:
    """The record's category (harness error when the comparison did not finish)."""
    if record.get("error"):
        return classify.HARNESS_ERROR
    verdicts = [VerdictRow(v) for c in record["comparisons"] for v in c["verdicts"]]
    return classify.classify(verdicts, record["expected"])


def run_one(copy: Path, pristine: Path, out: Path) -> int:
    """Compare the mutated copy, write its record, return the exit code (see the module docstring)."""
    start = time.perf_counter()
    changed = mutated_modules(copy, pristine)
    everything = tuple(usage.registry(pristine))
    using = usage.users(pristine)
    modules = [name for name, _, _ in changed]
    expected = tuple(i for i in everything if any(i in using[m] for m in modules))
    record = {"modules": modules, "expected": list(expected), "ran": [], "comparisons": [], "error": None}
    record["source_key"] = mutant.source_key(changed[0][2]) if changed else "baseline"
    if changed:
        name, original, current = changed[0]
        record.update(key=mutant.key(name, original, current), summary=mutant.summary(original, current),
                      diff=mutant.unified_diff(original, current, str(usage.package_modules(pristine)[name]
                                                                      .relative_to(pristine))))
    record["ran"] = list(impls_to_run(pristine, expected) if changed else everything)
    try:
        record["comparisons"] = compare_all(tuple(record["ran"]), copy)
    except BaseException as exc:  # noqa: BLE001 -- whatever stops the comparison is the finding
        record["error"] = describe(exc, copy)
        record["traceback"] = "".join(traceback.format_exception(exc)[-TRACEBACK_LINES:])
    record["category"] = score(record)
    record["wall_s"] = round(time.perf_counter() - start, 2)
    _write(out / f"{record['source_key']}.json", record)
    return {classify.SURVIVED: EXIT_SURVIVED, classify.HARNESS_ERROR: EXIT_ERROR}.get(record["category"], EXIT_CAUGHT)


def describe(exc: BaseException, copy: Path) -> str:
    """``Type: first line at path:line``, the place being the innermost frame in the copy's own code."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__)
              if Path(f.filename).resolve().is_relative_to(copy.resolve())]
    where = f" at {Path(frames[-1].filename).resolve().relative_to(copy.resolve())}:{frames[-1].lineno}" if frames else ""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else '(no message)'}{where}"


def _write(path: Path, record: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp-{os.getpid()}")
    tmp.write_text(json.dumps(record, indent=1))
    os.replace(tmp, path)
