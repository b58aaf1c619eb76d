"""The documentation site builds strictly from docs/ and the committed results/, and the README stays short."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from harness.reporting import docs

ROOT = Path(__file__).resolve().parent.parent
README_MAX_LINES = 150  # issue 25: what it is, the two commands, a sample, the commands, exit codes, where next


def _nav_pages(nav) -> list[str]:
    pages = []
    for entry in nav:
        for value in entry.values():
            pages += _nav_pages(value) if isinstance(value, list) else [value]
    return pages


def _site_copy(tmp_path: Path) -> Path:
    """docs/ and mkdocs.yml copied, with the fragments generated from results/ as ``python -m harness.report``
    writes them (the README it updates is a copy too)."""
    site = tmp_path / "site-src"
    shutil.copytree(ROOT / "docs", site / "docs", ignore=shutil.ignore_patterns("generated"))
    shutil.copy(ROOT / "mkdocs.yml", site)
    shutil.copy(ROOT / "README.md", site)
    report = subprocess.run([sys.executable, "-m", "harness.report", "--results", str(ROOT / "results"),
                             "--docs", str(site / "docs" / "generated"), "--readme", str(site / "README.md")],
                            cwd=ROOT, capture_output=True, text=True)
    assert report.returncode == 0, report.stderr
    assert (site / "README.md").read_text() == (ROOT / "README.md").read_text(), \
        "README's reference block is stale: run python -m harness.report"
    return site


def _build(site: Path) -> subprocess.CompletedProcess:
    pytest.importorskip("mkdocs", reason="the docs extra is not installed")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    # no -q: quiet mode hides the warnings that --strict counts, and the build would pass anyway
    return subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(site / "out")],
                          cwd=site, capture_output=True, text=True, env=env)


def test_the_site_builds_strictly_from_the_committed_results(tmp_path):
    site = _site_copy(tmp_path)
    built = _build(site)
    assert built.returncode == 0, built.stderr[-3000:]
    reference = (site / "out" / "performance" / "index.html").read_text()
    summary = (ROOT / "results" / "reference" / "summary.md").read_text()
    assert "generated/reference/loss.png" in reference  # the plots travel with their fragment
    first_row = next(line for line in summary.splitlines()  # the verdict table's first row
                     if line.startswith("| numpy | float64") and line.endswith("PASS |"))
    assert first_row.split("|")[3].strip() in reference  # and its measured figures, not typed ones


def test_a_broken_link_fails_the_build(tmp_path):
    site = _site_copy(tmp_path)
    page = site / "docs" / "gpu.md"
    page.write_text(page.read_text() + "\n[gone](no-such-page.md)\n")
    built = _build(site)
    assert built.returncode != 0 and "no-such-page.md" in built.stderr


def test_every_page_is_in_the_nav_and_written():
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text())
    pages = _nav_pages(config["nav"])
    written = sorted(p.name for p in (ROOT / "docs").glob("*.md"))
    assert sorted(pages) == written
    for page in pages:
        text = (ROOT / "docs" / page).read_text()
        assert len(text.splitlines()) > 5 and "To be written" not in text, page


def test_readme_is_short():
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) <= README_MAX_LINES, f"README.md has {len(lines)} lines; the rest belongs in docs/"


def test_fragments_are_the_results_folders(tmp_path):
    results = tmp_path / "results"
    (results / "bench").mkdir(parents=True)
    (results / "bench" / "bench.txt").write_text("ratio 1.18\n")
    (results / "fuzz" / "seed-7" / "hypothesis").mkdir(parents=True)
    (results / "fuzz" / "seed-7" / "summary.md").write_text("# fuzz\n\n## Classes\n\n```\n# not a heading\n```\n")
    (results / "fuzz" / "seed-7" / "plot.png").write_bytes(b"\x89PNG")
    (results / "fuzz" / "seed-7" / "hypothesis" / "summary.md").write_text("# examples database\n")
    (results / "empty").mkdir()
    out = tmp_path / "generated"
    names = docs.write(results, out)
    assert names == ["bench", "fuzz-seed-7"]
    assert "```text\nratio 1.18\n```" in (out / "bench.md").read_text()
    fuzz = (out / "fuzz-seed-7.md").read_text()
    assert "#### fuzz" in fuzz and "##### Classes" in fuzz and "\n# not a heading" in fuzz
    assert "![plot](generated/fuzz-seed-7/plot.png)" in fuzz and (out / "fuzz-seed-7" / "plot.png").is_file()
    assert '--8<-- "generated/bench.md"' in (out / "all.md").read_text()
    assert "examples database" not in fuzz
