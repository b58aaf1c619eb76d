"""The one writer of results folders: tidy CSV tables, meta.json, summary.md and PNG plots.

A run is written into a hidden temporary folder beside its destination and
renamed into place only when every file is complete, so a folder under
``results/`` is either a whole run or absent. Only CSV, JSON, Markdown and
PNG are written: nothing a reader must unpickle.
"""
from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path
from typing import Callable

import pandas as pd

from harness.forking import fork_context

FORMAT_VERSION = 1
RESULTS = Path("results")

Plot = tuple[str, Callable[[pd.DataFrame, Path], None], pd.DataFrame]  # file name, plotter, its data


def default_out(root: Path = RESULTS, kind: str = "run") -> Path:
    """A new folder under results/ named by the local time, never an existing one."""
    stem = time.strftime(f"{kind}-%Y%m%d-%H%M%S")
    out, n = root / stem, 1
    while out.exists():
        n += 1
        out = root / f"{stem}-{n}"
    return out


def check_out(out: Path, overwrite: bool) -> None:
    """Raise ValueError (one line) if ``out`` cannot receive a run."""
    if out.exists() and not overwrite:
        raise ValueError(f"output folder {out} exists; pass --overwrite to replace it")
    if out.exists() and not out.is_dir():
        raise ValueError(f"output path {out} is not a folder")
    if out.exists() and not (out / "meta.json").exists() and any(out.iterdir()):
        raise ValueError(f"output folder {out} holds files but no meta.json: not a results folder, so it is"
                         f" not replaced even with --overwrite")
    parent = out.parent if out.parent != Path("") else Path(".")
    probe = parent
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        raise ValueError(f"output folder {out} cannot be written ({probe} is a file, not a folder)")
    if not os.access(probe, os.W_OK):
        raise ValueError(f"output folder {out} cannot be written ({probe} is not writable)")


def write(out: Path, tables: dict[str, pd.DataFrame], meta: dict, summary: str,
          plots: list[Plot] = (), data: dict[str, object] | None = None) -> Path:
    """Write every file into a temporary folder, then move it to ``out`` (replacing an old run); ``data``:
    more JSON files, by relative path (the fuzzer's examples database)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.partial-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        for name, table in tables.items():
            table.to_csv(tmp / f"{name}.csv", index=False, float_format="%.17g")
        (tmp / "meta.json").write_text(json.dumps({"format_version": FORMAT_VERSION, **meta}, indent=2) + "\n")
        (tmp / "summary.md").write_text(summary)
        _draw(list(plots), tmp)
        for relative, value in (data or {}).items():
            (tmp / relative).parent.mkdir(parents=True, exist_ok=True)
            (tmp / relative).write_text(json.dumps(value, indent=1, sort_keys=True) + "\n")
        if out.exists():
            old = out.parent / f".{out.name}.old-{os.getpid()}"
            out.rename(old)
            tmp.rename(out)
            shutil.rmtree(old)
        else:
            tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def _draw(plots: list[Plot], folder: Path) -> None:
    """Each plot to its file. Where a plain fork of this process is safe (``harness.forking``), all but
    the last are drawn in forks, side by side with the last drawn here (about 0.4 s of drawing in 0.2 s on
    two cores); a plot a fork did not write whole is drawn again here, so its error is raised here."""
    context = fork_context() if len(plots) > 1 else None
    forks = []
    try:
        for file_name, plotter, frame in plots[:-1] if context else []:
            forks.append(context.Process(target=plotter, args=(frame, folder / file_name), daemon=True))
            forks[-1].start()
        for file_name, plotter, frame in plots[len(forks):]:
            plotter(frame, folder / file_name)
        for fork, (file_name, plotter, frame) in zip(forks, plots):
            fork.join()
            if fork.exitcode != 0:
                plotter(frame, folder / file_name)
    finally:
        for fork in forks:
            if fork.is_alive():
                fork.kill()
                fork.join()


class ResultsError(Exception):
    """A results folder that cannot be read back as asked; ``str(exc)`` is the one-line reason."""


def read_json(path: Path, default: object) -> object:
    """A JSON file written by ``write`` (``data``), or ``default`` where there is none."""
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        return default
    except (OSError, ValueError) as exc:
        raise ResultsError(f"{path} cannot be read ({exc})") from None


def read(folder: Path, expected_config: dict | None = None) -> tuple[dict, dict[str, pd.DataFrame]]:
    """(meta, tables) of a complete results folder; only JSON and CSV are parsed, nothing is executed.

    Refuses a folder without a valid meta.json, one from a newer format, or (given
    ``expected_config``) one from a different configuration.
    """
    folder = Path(folder)
    try:
        meta = json.loads((folder / "meta.json").read_text())
    except FileNotFoundError:
        raise ResultsError(f"{folder} has no meta.json: not a complete results folder") from None
    except (OSError, ValueError) as exc:
        raise ResultsError(f"{folder}/meta.json cannot be read ({exc})") from None
    version = meta.get("format_version") if isinstance(meta, dict) else None
    if not isinstance(version, int):
        raise ResultsError(f"{folder}/meta.json has no format_version")
    if version > FORMAT_VERSION:
        raise ResultsError(f"{folder} was written in format {version}, newer than this harness reads ({FORMAT_VERSION})")
    if expected_config is not None:
        expected_config = json.loads(json.dumps(expected_config))  # tuples become lists, as stored
    if expected_config is not None and meta.get("config") != expected_config:
        differing = sorted(k for k in set(expected_config) | set(meta.get("config") or {})
                           if expected_config.get(k) != (meta.get("config") or {}).get(k))
        raise ResultsError(f"{folder} is from a different configuration (differs in {', '.join(differing)})")
    tables = {path.stem: pd.read_csv(path) for path in sorted(folder.glob("*.csv"))}
    return meta, tables
