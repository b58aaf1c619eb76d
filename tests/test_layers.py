"""The layer contract in pyproject.toml ([tool.importlinter]), kept by the code and broken by a planted import;
the command-line contract every command shares (harness.cli)."""
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LINT = Path(sys.executable).with_name("lint-imports")
needs_linter = pytest.mark.skipif(not LINT.exists(), reason="import-linter is not installed (the test extra has it)")


def _lint(root: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(LINT)], cwd=root, env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"},
                          capture_output=True, text=True, check=False)


@needs_linter
def test_the_code_keeps_every_layer_contract():
    done = _lint(ROOT)
    assert done.returncode == 0, done.stdout[-3000:]
    assert "5 kept, 0 broken" in done.stdout


@needs_linter
def test_an_import_up_the_layers_breaks_the_contract_and_is_named(tmp_path):
    for part in ("harness", "impls", "pyproject.toml"):
        source = ROOT / part
        (shutil.copytree if source.is_dir() else shutil.copy)(source, tmp_path / part)
    roster = tmp_path / "harness" / "running" / "roster.py"
    roster.write_text(roster.read_text() + "\nfrom harness.checks import verdict  # planted: running > checks\n")
    done = _lint(tmp_path)
    assert done.returncode == 1
    assert "harness.running is not allowed to import harness.checks" in done.stdout
    assert "harness.running.roster -> harness.checks.verdict" in done.stdout


@pytest.mark.parametrize("module, argv", [("harness.frameworks", ["--steps", "x"]), ("harness.bench", ["--bogus"]),
                                          ("harness.sweep", ["--jobs", "0"]), ("harness.mutate", ["--seed", "-1"]),
                                          ("harness.report", ["--results", "no-such-folder"]),
                                          ("harness.report", ["--bogus"])])
def test_every_command_says_bad_usage_in_one_line_with_exit_2(module, argv):
    """The shared parser (harness.cli): no argparse usage dump, one line, exit 2."""
    done = subprocess.run([sys.executable, "-m", module, *argv], cwd=ROOT, capture_output=True, text=True,
                          check=False)
    assert done.returncode == 2, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and "error:" in done.stderr, done.stderr
