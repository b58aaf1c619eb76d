"""mutants.csv, summary.md and records.jsonl, from the campaign's rows and the human judgements.

judgements.csv (key, module, change, judgement, reason) holds what a person
decided about a mutant after reading it: ``equivalent`` turns a survivor into
EQUIVALENT; ``miss`` (a real miss) and ``note`` only add the reason. Keys are
the changed lines' text, so judgements outlive edits elsewhere in a module.
Every file is written into a temporary folder that then replaces the old one.
"""
from __future__ import annotations

import csv
import io
import json
import os
import shutil
from collections import Counter
from pathlib import Path

from harness.mutation import classify as c
from harness.mutation.usage import SPEC_GROUP

TARGET = 0.99  # the bar: share of non-equivalent mutants caught and blamed on the mutated module
JUDGEMENTS = "judgements.csv"
JUDGEMENT_FIELDS = ("key", "module", "change", "judgement", "reason")
JUDGEMENT_KINDS = ("equivalent", "miss", "note")
CSV_FIELDS = ("id", "key", "module", "group", "line", "operator", "change", "expected", "ran", "failing",
              "category", "explanation", "error", "wall_s")
COUNTED = (c.CAUGHT_RIGHT, c.CAUGHT_OTHER, c.SURVIVED)  # the score's denominator: run, not equivalent, no error
SPEC_NOTE = (f"{SPEC_GROUP} is reported apart and left out of the score: it is the definition the oracle reads"
             " too (layers, activations, loss, lr, the parameter shapes), so a mutant there changes the question"
             " for the truth and every implementation alike, and no comparison can name an implementation for it;"
             " what catches it is the spec's own validation (a run refused with a one-line error, counted here as"
             " a harness error) and the notebook's printed line in the default run.")


def scored(rows: list[dict]) -> list[dict]:
    """The rows the score counts: every module but the spec."""
    return [r for r in rows if r["group"] != SPEC_GROUP]


def read_judgements(folder: Path) -> dict[str, dict]:
    """key -> judgement row; a bad judgement kind is a ValueError naming the key."""
    path = folder / JUDGEMENTS
    if not path.exists():
        return {}
    rows = {r["key"]: r for r in csv.DictReader(path.open(newline=""))}
    for key, row in rows.items():
        if row.get("judgement") not in JUDGEMENT_KINDS:
            raise ValueError(f"{path}: key {key}: judgement must be one of {', '.join(JUDGEMENT_KINDS)},"
                             f" got {row.get('judgement')!r}")
    return rows


def judged(rows: list[dict], judgements: dict[str, dict]) -> list[dict]:
    """The rows with each survivor's judgement applied and every explanation filled in."""
    out = []
    for row in rows:
        row = dict(row)
        j = judgements.get(row["key"])
        if row["measured"] == c.SURVIVED and j and j["judgement"] == "equivalent":
            row["category"], row["explanation"] = c.EQUIVALENT, j["reason"]
        else:
            row["category"] = row["measured"]
            row["explanation"] = (f"{j['judgement']}: {j['reason']}" if j else
                                  "NOT YET INSPECTED" if row["measured"] == c.SURVIVED else "")
        out.append(row)
    return out


def score(counts: Counter) -> float | None:
    """Caught and blamed right over every non-equivalent mutant that ran without a harness error."""
    total = sum(counts[k] for k in COUNTED)
    return counts[c.CAUGHT_RIGHT] / total if total else None


CAUSE_CHARS = 40  # a reason's text before its first colon names the cause when it is at most this long


def cause(explanation: str) -> str:
    """The cause a judgement names (``config gap: ...`` -> ``config gap``), or ``uninspected``/``other``."""
    text = explanation.removeprefix("miss: ")
    if text.startswith("NOT YET INSPECTED"):
        return "uninspected"
    head = text.split(":", 1)[0]
    return head if ":" in text and len(head) <= CAUSE_CHARS else "other"


def _table(header: list[str], rows: list[list]) -> str:
    cell = lambda v: str(v).replace("|", "\\|").replace("\n", " ")  # noqa: E731
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(cell(v) for v in r) + " |" for r in rows])


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f} %"


def per_group(rows: list[dict], meta: dict) -> list[list]:
    """The score table: one line per module (the shared ones as one group) and the total."""
    groups = sorted({r["group"] for r in rows} | set(meta["generated"]),
                    key=lambda g: (g == SPEC_GROUP, g == "shared", g))
    table = []
    for g in groups + ["all"]:  # "all": every module the score counts (the spec apart)
        mine = [r for r in (scored(rows) if g == "all" else rows) if g in ("all", r["group"])]
        counts = Counter(r["category"] for r in mine)
        gen = sum(v for k, v in meta["generated"].items() if (g == "all" and k != SPEC_GROUP) or g == k)
        table.append(["**all but the spec**" if g == "all" else g, gen, gen - len(mine), len(mine),
                      *(counts[k] for k in c.CATEGORIES), _pct(score(counts))])
    return table


def per_model(rows: list[dict]) -> list[list]:
    """One line per configuration: of the mutants the score counts (the spec apart, no harness error, not
    equivalent), how many that configuration's comparison alone catches and blames right, blames on another,
    or lets through."""
    counted = [r for r in scored(rows) if r["category"] in COUNTED]
    models = list(dict.fromkeys(m for r in counted for m in r.get("by_model", {})))
    table = []
    for model in models:
        found = Counter(r["by_model"].get(model, "not run") for r in counted)
        total = sum(found.values())
        table.append([model, total, found[c.CAUGHT_RIGHT], found[c.CAUGHT_OTHER], found[c.SURVIVED],
                      _pct(found[c.CAUGHT_RIGHT] / total if total else None)])
    return table


def summary_md(rows: list[dict], meta: dict) -> str:
    """summary.md: the score, per module, the survivors, the mis-blames and the harness errors."""
    counts = Counter(r["category"] for r in scored(rows))
    overall = score(counts)
    met = overall is not None and overall >= TARGET and not counts[c.CAUGHT_OTHER]
    parts = [
        "# Mutation testing: does the harness blame the right implementation?", "",
        f"Command: `{meta['command']}` ({meta['finished']}, wall time {meta['wall_s'] / 60:.1f} min,"
        f" {meta['jobs']} job(s)).", "",
        f"**Score: {_pct(overall)}** of {sum(counts[k] for k in COUNTED)} non-equivalent mutants caught and blamed on"
        f" an implementation that uses the mutated module; {counts[c.CAUGHT_OTHER]} blamed on another;"
        f" {counts[c.HARNESS_ERROR]} harness errors (not in the score). Target: at least {_pct(TARGET)} and none"
        f" blamed on another: **{'met' if met else 'NOT met'}**.", "", SPEC_NOTE, "",
        "## What was run", "",
        f"- Tool: {meta['tool']}; {meta['versions']}.",
        f"- Operators: {meta['operators']}.",
        f"- Sample: {meta['sample_note']} Generated {sum(meta['generated'].values())}, run {len(rows)},"
        f" sampled out {sum(meta['generated'].values()) - len(rows)}.",
        f"- Per mutant: {meta['per_mutant']}",
        f"- Categories: {meta['categories_note']}", "",
        "## Per module", "",
        _table(["module", "generated", "sampled out", "run", *c.CATEGORIES, "score"], per_group(rows, meta)), "",
        "## Per configuration", "",
        "What each configuration's comparison catches on its own, of the mutants the score counts (a mutant is"
        " caught when any configuration catches it).", "",
        _table(["configuration", "mutants", "caught alone, blamed right", "blamed on another", "not caught there",
                "share"], per_model(rows)), "",
    ]
    causes = Counter(cause(r["explanation"]) for r in rows if r["category"] == c.SURVIVED)
    if causes:
        parts += ["## Real misses by cause", "", "The cause is what a judgement's reason names before its first colon.",
                  "", _table(["cause", "mutants"], [[k, v] for k, v in causes.most_common()]), ""]
    survivors = [r for r in rows if r["category"] in (c.SURVIVED, c.EQUIVALENT)]
    parts += ["## Survivors, each inspected", "",
              _table(["id", "change", "verdict", "reason"],
                     [[r["id"], f"`{r['change']}`", "equivalent" if r["category"] == c.EQUIVALENT else "REAL MISS",
                       r["explanation"]] for r in survivors]) if survivors else "None.", ""]
    for title, cat, col in (("Blamed on another implementation", c.CAUGHT_OTHER, "failing"),
                            ("Harness errors", c.HARNESS_ERROR, "error")):
        found = [r for r in rows if r["category"] == cat]
        parts += [f"## {title}", "", _table(["id", "change", "expected", col, "note"],
                                            [[r["id"], f"`{r['change']}`", r["expected"], r[col], r["explanation"]]
                                             for r in found]) if found else "None.", ""]
    return "\n".join(parts)


def mutants_csv(rows: list[dict]) -> str:
    """One row per mutant run."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, CSV_FIELDS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def judgements_template(rows: list[dict], judgements: dict[str, dict]) -> str:
    """judgements.csv: the existing judgements, plus an empty line for every survivor not yet judged."""
    keep = dict(judgements)
    for r in rows:
        if r["measured"] == c.SURVIVED and r["key"] not in keep:
            keep[r["key"]] = {"key": r["key"], "module": r["module"], "change": r["change"], "judgement": "miss",
                              "reason": "NOT YET INSPECTED"}
    buf = io.StringIO()
    writer = csv.DictWriter(buf, JUDGEMENT_FIELDS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(sorted(keep.values(), key=lambda j: (j["module"], j["change"])))
    return buf.getvalue()


def write(out: Path, raw: list[dict], meta: dict) -> tuple[Path, Counter]:
    """Judge the raw rows, write every file into a temporary folder, swap it in; (folder, category counts of
    the rows the score counts: the spec apart)."""
    judgements = read_judgements(out)
    rows = judged(raw, judgements)
    files = {"mutants.csv": mutants_csv(rows), "summary.md": summary_md(rows, meta),
             "records.jsonl": "".join(json.dumps(r) + "\n" for r in raw), "campaign.json": json.dumps(meta, indent=1),
             JUDGEMENTS: judgements_template(rows, judgements)}
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp, old = out.parent / f".{out.name}.partial-{os.getpid()}", out.parent / f".{out.name}.old-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    for name, text in files.items():
        (tmp / name).write_text(text)
    if out.exists():
        os.rename(out, old)
    os.rename(tmp, out)
    shutil.rmtree(old, ignore_errors=True)
    return out, Counter(r["category"] for r in scored(rows))


def load(out: Path) -> tuple[list[dict], dict]:
    """The raw rows and the metadata a finished campaign left in ``out`` (for ``report``)."""
    rows = [json.loads(line) for line in (out / "records.jsonl").read_text().splitlines() if line.strip()]
    return rows, json.loads((out / "campaign.json").read_text())
