"""python -m harness.report: copy results/reference/summary.md's headline tables into README.md."""
from __future__ import annotations

from pathlib import Path

from harness.reporting.tables import update_readme

if __name__ == "__main__":
    Path("README.md").write_text(update_readme(Path("README.md").read_text(),
                                               Path("results/reference/summary.md").read_text()))
