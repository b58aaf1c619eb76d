"""The fuzzer's two stages: seeded shards generate configurations and compare each in full; then every distinct
failure is shrunk on its own.

Every example runs ``harness.compare`` on the chosen implementations and is
classified from its verdicts (never from text):

- ``fail`` / ``faulty``: an implementation failed or crashed. The failure's key
  is the implementation and the first check it failed (a trajectory's cause),
  so a bug in its gradient and one in its optimizer are shrunk apart;
- ``convention``: the verdict's status: runs parted only by what an
  implementation states (an optimizer convention, or relu'(0) at a state where a
  relu input is exactly 0), each checked by rerunning the truth under it: not a failure;
- ``harness error``: the comparison itself raised (the oracle disagreeing with
  itself, say): a bug of the harness, shrunk and reported like the others;
- ``inconclusive``: nothing failed, but what rounding allows at the end of a
  run reached how far the truth moved, so its trajectory check could not fail;
- ``pass``; ``invalid`` when nothing could be compared (every implementation
  declined the configuration).

Generation never stops at a failure: a shard draws all its examples and keeps,
for each failure key, the choices of the first example that showed it. Shrinking
then starts from those choices (one task per key, however many shards saw it):
Hypothesis looks for the smallest configuration in which the same
implementation still fails the same check, and replays it once more; that is the
reproducer. Before that replay, a configuration is compared once in a task (two choice sequences can draw the
same one: a hang would cost its time limit each time). Failures kept from an earlier run (the examples database) are
replayed before anything else.

A stage is deterministic: a shard's seed fixes what it draws, and a shrink task
carries its starting choices and database as plain bytes, so the rows are the
same in this process, in a local worker or on a Dask worker.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

from hypothesis import HealthCheck, Phase, given, reject, seed, settings as hsettings
from hypothesis.control import current_build_context
from hypothesis.database import ExampleDatabase, choices_to_bytes
from hypothesis.errors import Unsatisfiable

from harness.checks.verdict import CONVENTION, FAIL, FAULTY, INCONCLUSIVE, PASS
from harness.pipeline import compare
from harness.config import RunConfig
from harness.fuzzing import space
from harness.running import plugins
from harness.running.executors import where
from harness.running.guard import one_line

FAILING = ("fail", "faulty", "harness error")
# Where the shrink stage keeps minimal failures in the examples database (Hypothesis's primary corpus), and where
# it puts the choices a shrink task starts from (its secondary corpus: replayed and then shrunk; a primary entry
# that still fails as it was is taken as already minimal and is not shrunk again).
KEY = b"harness.fuzz"
START = KEY + b".secondary"

Key = tuple[str, str]  # (implementation, the check it failed)


class Disagreement(AssertionError):
    """An example that fails; one subclass per failure key, so Hypothesis shrinks each on its own."""


_KINDS: dict[Key, type] = {}


def _kind(key: Key) -> type:
    if key not in _KINDS:
        _KINDS[key] = type(f"Disagreement[{' '.join(key)}]", (Disagreement,), {"key": key})
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
    deadline: float | None  # time.time() after which no new example is generated
    impls: tuple[str, ...]
    plugins: tuple[str, ...] = ()
    dtypes: tuple[str, ...] = space.DTYPES
    max_steps: int = space.MAX_STEPS
    shrink_seconds: float | None = None  # per shrink task: no new shrinking step after this long
    time_limit: float | None = RunConfig.time_limit  # seconds one call into an implementation may take (--time-limit)


@dataclass(frozen=True)
class Shrink:
    """One shrink task: the failure key it keeps (None: any failure), the database it starts from, its shard."""

    key: Key | None
    database: dict
    shard: Shard


@dataclass
class Found:
    """A stage's rows (one per example run), minimal reproducers, the database to keep, and (from generation) the
    choices of the first example that showed each failure key."""

    rows: list[dict] = field(default_factory=list)
    reproducers: list[dict] = field(default_factory=list)
    database: dict = field(default_factory=dict)
    failures: dict[Key, bytes] = field(default_factory=dict)


def classify(outcome) -> tuple[str, str, list[Key]]:
    """(verdict, cause, failure keys) of one comparison, from the verdicts' statuses alone: the cause names the
    first failing implementation, dtype, check and step, or the conventions that parted runs; a key is
    (implementation, the first check it failed) of each failing implementation."""
    if not outcome.verdicts:
        return "invalid", "nothing compared: " + "; ".join(outcome.skipped.values()), []
    found = causes(outcome)
    if found:
        kind = FAULTY if any(v.status == FAULTY for v in outcome.verdicts) else FAIL
        return kind, next(iter(found.values())), list(found)
    unsure = [f"{v.impl} {v.dtype}" for v in outcome.verdicts if v.status == INCONCLUSIVE]
    if unsure:  # nothing failed, and the trajectory check could not have: not a pass
        return INCONCLUSIVE, "trajectory could not fail: " + ", ".join(unsure), []
    named = [f"{v.impl} {v.dtype}: {_short(f)}" for v in outcome.verdicts if v.status == CONVENTION
             for f in v.named if f.check == "convention"]
    if named:
        return CONVENTION, "; ".join(dict.fromkeys(named)), []
    return PASS, "", []


def _check(f) -> str:
    """The check a failure names: a trajectory's cause where it found one."""
    return f.cause if f.check == "trajectory" and f.cause else f.check


def _short(f) -> str:
    """A convention as the fuzz tables name it: the phrase of a one-step row, or the last of a trajectory's."""
    return f.detail if f.cause != "convention" else f.detail.split(":")[-1].strip()


def causes(outcome) -> dict[Key, str]:
    """Each failure key's own cause: its implementation's fault (the call and what stopped it), else its first
    failing check, step and parameter."""
    found: dict[Key, str] = {}
    for v in outcome.verdicts:
        if v.status in (FAIL, FAULTY) and v.failing:
            f = next((f for f in v.failing if f.check == "fault"), v.failing[0])
            if f.check == "fault":
                found.setdefault((v.impl, f.check), f"{v.impl} {v.dtype}: {f.detail}")
                continue
            step = f.cause_step if f.check == "trajectory" and f.cause_step is not None else f.step
            where_ = f" at step {step}" if step is not None else ""  # a trajectory's: where its cause lies
            found.setdefault((v.impl, _check(f)), f"{v.impl} {v.dtype}: {_check(f)}{where_} {f.param}".strip())
    return found  # in verdict order: the first is the comparison's cause


def _judge(chosen: dict, shard: Shard, extra: dict) -> tuple[str, str, list[Key], float, dict[Key, str]]:
    start = time.perf_counter()
    try:
        outcome = compare(space.config(chosen, shard.impls, shard.plugins, shard.time_limit), extra, timings=False)
        (verdict, cause, keys), by_key = classify(outcome), causes(outcome)
    except Exception as exc:  # noqa: BLE001 -- the harness itself failed here: a finding, shrunk like the rest
        verdict, cause, keys = "harness error", f"{type(exc).__name__}: {one_line(exc)}", [("harness", "error")]
        by_key = {keys[0]: cause}
    return verdict, cause, keys, round(time.perf_counter() - start, 3), by_key


def _row(chosen: dict, shard: Shard, phase: str, verdict: str, cause: str, seconds: float) -> dict:
    return {**{k: ",".join(map(str, v)) if isinstance(v, tuple) else v for k, v in chosen.items()},
            "verdict": verdict, "cause": cause, "seconds": seconds, "shard": shard.seed, "phase": phase, **where()}


def _settings(**kwargs):
    return hsettings(deadline=None, derandomize=False, print_blob=False, suppress_health_check=list(HealthCheck),
                     **kwargs)


def generate(shard: Shard, progress: Callable[[], None] | None = None) -> Found:
    """Compare ``shard.max_examples`` drawn configurations (fewer past ``shard.deadline``), failures included,
    and keep the choices of the first example of each failure key; ``progress`` ticks after each example."""
    extra = {reference: plugins.load(reference) for reference in shard.plugins}
    found = Found()

    @_settings(max_examples=shard.max_examples, database=None, phases=(Phase.generate,))
    @seed(shard.seed)
    @given(space.settings(shard.dtypes, max_steps=shard.max_steps))
    def example(chosen: dict) -> None:
        if shard.deadline is not None and time.time() > shard.deadline:
            reject()  # out of time: no new comparisons
        verdict, cause, keys, seconds, _ = _judge(chosen, shard, extra)
        found.rows.append(_row(chosen, shard, "generate", verdict, cause, seconds))
        if progress is not None:
            progress()
        if verdict in FAILING:
            choices = choices_to_bytes(current_build_context().data.choices)
            for key in keys:
                found.failures.setdefault(key, choices)

    try:
        example()
    except Unsatisfiable:  # every draw past the deadline
        pass
    return found


def shrink(task: Shrink, progress: Callable[[], None] | None = None) -> Found:
    """Replay the task's database, shrink what fails (as ``task.key``, or any failure where it is None) for at most
    ``shrink_seconds``, and replay each minimal example once more: those are the reproducers."""
    shard = task.shard
    extra = {reference: plugins.load(reference) for reference in shard.plugins}
    found, db = Found(), Examples(task.database)
    stop = None if shard.shrink_seconds is None else time.time() + shard.shrink_seconds
    failing: set[bytes] = set()  # the choices of every example seen failing (as the task keeps them)
    judged: dict[str, tuple] = {}  # configuration -> its judgement: two choice sequences can draw one configuration

    @_settings(max_examples=max(2, len(task.database.get(START, ()))), database=db,
               phases=(Phase.reuse, Phase.shrink), report_multiple_bugs=True)
    @seed(shard.seed)  # inside the settings: @seed alone would turn the examples database off
    @given(space.settings(shard.dtypes, max_steps=shard.max_steps))
    def example(chosen: dict) -> None:
        final = current_build_context().is_final
        choices = choices_to_bytes(current_build_context().data.choices)
        if not final and stop is not None and time.time() > stop and failing and choices not in failing:
            reject()  # out of time: shrinking stops where it is. Not before a failure is in hand (the database's
            # examples are replayed first), and never for one known to fail: Hypothesis replays it before the
            # final run, and a rejection there is "flaky", which ended the whole campaign as an internal error
        config = repr(sorted(chosen.items()))
        compared = final or config not in judged  # the final replay always runs: it is the reproducer
        if compared:
            judged[config] = _judge(chosen, shard, extra)
        verdict, cause, keys, seconds, by_key = judged[config]
        if compared:
            row = _row(chosen, shard, "replay" if final else "shrink", verdict, cause, seconds)
            found.rows.append(row)
            if progress is not None:
                progress()
        kept = [k for k in keys if task.key is None or k == task.key]
        if verdict in FAILING and kept:
            failing.add(choices)
            if final:  # Hypothesis replays each minimal failing example once more, at the end
                found.failures[kept[0]] = choices
                found.reproducers.append({**row, "cause": by_key.get(kept[0], cause),  # the kept failure's own
                                          "command": space.command(chosen, _named(kept[:1], shard), shard.plugins,
                                                                         shard.time_limit)})
            raise _kind(kept[0])(cause)

    example._hypothesis_internal_database_key = KEY  # the same key in every task and every run
    try:
        example()
    except (Disagreement, Unsatisfiable):
        pass
    except BaseExceptionGroup as group:  # several distinct disagreements, each shrunk on its own
        _, unexpected = group.split(Disagreement)
        if unexpected is not None:
            raise unexpected
    found.database = {KEY: db.entries.get(KEY, set())}
    return found


def _named(keys: list[Key], shard: Shard) -> tuple[str, ...]:
    """The built-in implementations a reproducer names: the one that failed (plugins come with --impl)."""
    failed = {impl for impl, _ in keys}
    named = tuple(name for name in shard.impls if name in failed)
    return named or (("numpy",) if shard.plugins else ())  # a plugin alone: beside the hand-written reference
