"""What ``python -m harness.fuzz`` writes: fuzz.csv, summary.md (counts, reproducers) and its examples database."""
from __future__ import annotations

import pandas as pd

from harness.reporting import tables

DATABASE = "hypothesis/examples.json"  # Hypothesis's examples database, inside the output folder


def merge(databases: list[dict]) -> dict[bytes, set[bytes]]:
    """The union of the shards' databases."""
    merged: dict[bytes, set[bytes]] = {}
    for db in databases:
        for key, values in db.items():
            merged.setdefault(key, set()).update(values)
    return merged


def to_json(db: dict[bytes, set[bytes]]) -> dict[str, list[str]]:
    return {key.hex(): sorted(v.hex() for v in values) for key, values in db.items() if values}


def from_json(data: dict) -> dict[bytes, set[bytes]]:
    return {bytes.fromhex(key): {bytes.fromhex(v) for v in values} for key, values in data.items()}


def summary(title: str, rows: pd.DataFrame, reproducers: pd.DataFrame) -> str:
    """Counts by verdict and by cause, then every minimal reproducer as a command line."""
    failed = len(reproducers)
    verdict = (f"**FAIL**: {failed} disagreement(s), each shrunk to a minimal reproducer below." if failed else
               f"**PASS**: no disagreement in {len(rows)} example(s).")
    counts = rows.groupby("verdict").size().rename("examples").reset_index() if len(rows) else rows
    causes = rows[rows.cause.astype(bool)].groupby(["verdict", "cause"]).size().rename("examples").reset_index() \
        if len(rows) else rows
    sections: dict = {"Examples by verdict": counts, "Examples by cause": causes if len(causes) else "None."}
    if "phase" in rows:  # generated examples apart from shrinking and the final replays
        sections["Examples by phase"] = rows.groupby("phase").size().rename("examples").reset_index()
    if failed:
        sections["Minimal reproducers"] = "\n\n".join(
            f"- {r.cause}\n\n  `{r.command}`" for r in reproducers.itertuples())
    sections["How to read this"] = (
        "Every example is a full comparison (teacher-forced, finite differences, trajectories) of the chosen"
        " implementations against the oracle, classified from the verdicts' statuses. `convention`: runs parted"
        " only by a stated convention (an optimizer's, or relu'(0) at a state where a relu input is exactly 0),"
        " each checked by rerunning the truth under it: not a failure. `invalid`:"
        " every implementation declined the configuration. fuzz.csv has one row per example run, shrinking"
        " steps included; a rerun with the same --out replays the failures kept in " + DATABASE + " first.")
    return tables.summary(title, verdict, sections)
