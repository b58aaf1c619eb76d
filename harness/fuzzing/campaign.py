"""A whole fuzz campaign on an executor: replay the failures kept from earlier runs, generate every shard, then
shrink each distinct failure once, however many shards met it."""
from __future__ import annotations

from typing import Callable

from harness.fuzzing.report import merge
from harness.fuzzing.search import KEY, START, Found, Shard, Shrink, generate, shrink


def run(shards: list[Shard], pool, database: dict, progress: Callable[[], None] | None = None) -> Found:
    """Every row, reproducer and the database to keep, in a fixed order (replays, shards, then shrink tasks);
    ``progress`` ticks after each example and is only passed where ``pool`` runs tasks in this process."""
    tick = progress if pool.in_process else None
    found = Found()
    stages: list[Found] = []
    if database.get(KEY):  # earlier minimal failures: replayed first, as they were kept
        stages += pool.run(shrink, [Shrink(None, {KEY: set(database[KEY])}, shards[0])], tick)
    shown = {key for stage in stages for key in stage.failures}
    generated = pool.run(generate, shards, tick)
    starts: dict = {}
    for shard, result in zip(shards, generated):
        for key, choices in result.failures.items():
            if key not in shown and (key not in starts or _simpler(choices, starts[key][0])):
                starts[key] = (choices, shard)
    tasks = [Shrink(key, {START: {choices}}, shard) for key, (choices, shard) in sorted(starts.items())]
    shrunk = pool.run(shrink, tasks, tick) if tasks else []
    for stage in (*stages, *generated, *shrunk):
        found.rows += stage.rows
        found.reproducers += stage.reproducers
    found.database = merge([stage.database for stage in (*stages, *shrunk)])
    return found


def _simpler(a: bytes, b: bytes) -> bool:
    """Shorter choices first, then the smaller bytes: a fixed order, so any executor starts from the same one."""
    return (len(a), a) < (len(b), b)
