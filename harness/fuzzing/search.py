"""One search shard: Hypothesis draws configurations, each is compared in full, and a disagreement is shrunk.

Every example runs ``harness.compare`` on the chosen implementations and is
classified from its verdicts (never from text):

- ``fail`` / ``faulty``: an implementation failed or crashed: Hypothesis shrinks
  the example, and the smallest configuration in which the same implementation
  still fails is the reproducer (one per failing implementation);
- ``convention``: the verdict's status: runs parted only by what an
  implementation states (an optimizer convention, or relu'(0) at a state where a
  relu input is exactly 0), each checked by rerunning the truth under it: not a failure;
- ``harness error``: the comparison itself raised (the oracle disagreeing with
  itself, say): a bug of the harness, shrunk and reported like the others;
- ``pass``; ``invalid`` when nothing could be compared (every implementation
  declined the configuration).

A shard is deterministic: its seed fixes what it draws, and the examples
database it starts from (failures of earlier runs, replayed first) travels
with it as plain bytes, so a shard gives the same rows in this process, in a
local worker or on a Dask worker.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

from hypothesis import HealthCheck, Phase, given, reject, seed, settings as hsettings
from hypothesis.control import current_build_context
from hypothesis.database import ExampleDatabase
from hypothesis.errors import Unsatisfiable

from harness.checks.verdict import CONVENTION, FAIL, FAULTY, PASS
from harness.compare import compare
from harness.fuzzing import space
from harness.running import plugins
from harness.running.executors import where
from harness.running.guard import one_line

FAILING = ("fail", "faulty", "harness error")


class Disagreement(AssertionError):
    """An example that fails; one subclass per failing implementation, so Hypothesis shrinks each on its own."""


_KINDS: dict[str, type] = {}


def _kind(key: str) -> type:
    if key not in _KINDS:
        _KINDS[key] = type(f"Disagreement[{key}]", (Disagreement,), {"key": key})
    return _KINDS[key]


class Examples(ExampleDatabase):
    """Hypothesis's examples database as a plain dict of bytes, so it can travel to a worker and back."""

    def __init__(self, entries: dict[bytes, set[bytes]] | None = None) -> None:
        super().__init__()
        self.entries = {k: set(v) for k, v in (entries or {}).items()}

    def save(self, key: bytes, value: bytes) -> None:
        self.entries.setdefault(key, set()).add(value)

    def fetch(self, key: bytes):
        yield from sorted(self.entries.get(key, ()))

    def delete(self, key: bytes, value: bytes) -> None:
        self.entries.get(key, set()).discard(value)


@dataclass(frozen=True)
class Shard:
    """What one search runs: its seed, budget, implementations and the space's bounds."""

    seed: int
    max_examples: int
    deadline: float | None  # time.time() after which no new example starts (the final replay still runs)
    impls: tuple[str, ...]
    plugins: tuple[str, ...] = ()
    dtypes: tuple[str, ...] = space.DTYPES
    max_steps: int = space.MAX_STEPS
    database: dict = field(default_factory=dict)


@dataclass
class Found:
    """A shard's rows (one per example run), its minimal reproducers, and its database to keep."""

    rows: list[dict] = field(default_factory=list)
    reproducers: list[dict] = field(default_factory=list)
    database: dict = field(default_factory=dict)


def classify(outcome) -> tuple[str, str, list[str]]:
    """(verdict, cause, failing implementations) of one comparison, from the verdicts' statuses alone: the cause
    names the first failing implementation, dtype, check and step, or the conventions that parted runs."""
    if not outcome.verdicts:
        return "invalid", "nothing compared: " + "; ".join(outcome.skipped.values()), []
    failing = [(v, f) for v in outcome.verdicts if v.status in (FAIL, FAULTY) for f in v.failing]
    if failing:
        v, f = failing[0]
        what = f.cause if f.check == "trajectory" and f.cause else f.check
        kind = FAULTY if any(v.status == FAULTY for v, _ in failing) else FAIL
        where_ = f" at step {f.step}" if f.step is not None else ""
        keys = sorted({x.impl for x, _ in failing})
        return kind, f"{v.impl} {v.dtype}: {what}{where_} {f.param}".strip(), keys
    named = [f"{v.impl} {v.dtype}: {_short(f)}" for v in outcome.verdicts if v.status == CONVENTION
             for f in v.named if f.check == "convention"]
    if named:
        return CONVENTION, "; ".join(dict.fromkeys(named)), []
    return PASS, "", []


def _short(f) -> str:
    """A convention as the fuzz tables name it: the phrase of a one-step row, or the last of a trajectory's."""
    return f.detail if f.cause != "convention" else f.detail.split(":")[-1].strip()


def run_shard(shard: Shard, progress: Callable[[], None] | None = None) -> Found:
    """Search ``shard.max_examples`` configurations (fewer past ``shard.deadline``), shrinking each failure;
    ``progress`` is called after each example (where the shard runs in the caller's process)."""
    extra = {reference: plugins.load(reference) for reference in shard.plugins}
    found, db = Found(), Examples(shard.database)
    ran_on = where()
    failed: list[dict] = []  # this shard's failing rows so far: rows after the first count as shrinking

    @hsettings(max_examples=shard.max_examples, database=db, deadline=None, derandomize=False,
               phases=(Phase.reuse, Phase.generate, Phase.shrink), report_multiple_bugs=True, print_blob=False,
               suppress_health_check=list(HealthCheck))
    @seed(shard.seed)  # inside the settings: @seed alone would turn the examples database off
    @given(space.settings(shard.dtypes, max_steps=shard.max_steps))
    def example(chosen: dict) -> None:
        final = current_build_context().is_final
        if not final and shard.deadline is not None and time.time() > shard.deadline:
            reject()  # out of time: no new comparisons, and shrinking stops where it is
        start = time.perf_counter()
        try:
            outcome = compare(space.config(chosen, shard.impls, shard.plugins), extra, timings=False)
            verdict, cause, keys = classify(outcome)
        except Exception as exc:  # noqa: BLE001 -- the harness itself failed here: a finding, shrunk like the rest
            verdict, cause, keys = "harness error", f"{type(exc).__name__}: {one_line(exc)}", ["harness"]
        row = {**{k: ",".join(map(str, v)) if isinstance(v, tuple) else v for k, v in chosen.items()},
               "verdict": verdict, "cause": cause, "seconds": round(time.perf_counter() - start, 3),
               "shard": shard.seed, "phase": "replay" if final else "shrink" if failed else "generate", **ran_on}
        found.rows.append(row)
        if progress is not None:
            progress()
        if verdict in FAILING:
            failed.append(row)  # from here Hypothesis generates for at most 10 s more, then shrinks
            if final:  # Hypothesis replays each minimal failing example once more, at the end
                found.reproducers.append({**row, "command": space.command(chosen, _named(keys, shard),
                                                                          shard.plugins)})
            raise _kind(keys[0])(cause)

    try:
        example()
    except (Disagreement, Unsatisfiable):
        pass
    except BaseExceptionGroup as group:  # several distinct disagreements, each shrunk on its own
        _, unexpected = group.split(Disagreement)
        if unexpected is not None:
            raise unexpected
    found.database = db.entries
    return found


def _named(keys: list[str], shard: Shard) -> tuple[str, ...]:
    """The built-in implementations a reproducer names: those that failed (plugins come with --impl)."""
    named = tuple(name for name in shard.impls if name in keys)
    return named or (("numpy",) if shard.plugins else ())  # a plugin alone: beside the hand-written reference
