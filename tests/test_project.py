"""The README's commands are the contract; CI must run exactly the test command it shows."""
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _readme_commands() -> list[str]:
    return re.findall(r"```bash\n(.+?)\n```", (ROOT / "README.md").read_text())


def test_readme_opens_with_the_two_commands():
    compare_cmd, test_cmd = _readme_commands()[:2]
    assert compare_cmd.endswith("python -m harness.compare")
    assert test_cmd.endswith("python -m pytest -q -n 2")


def test_ci_runs_the_readmes_test_command():
    test_cmd = _readme_commands()[1]
    assert test_cmd in (ROOT / ".ci" / "run").read_text().splitlines()


def test_readme_shows_the_committed_reference_tables():
    readme = (ROOT / "README.md").read_text()
    block = readme.split("<!-- reference:start", 1)[1].split("<!-- reference:end -->", 1)[0]
    summary = (ROOT / "results" / "reference" / "summary.md").read_text()
    table_rows = [line for line in block.splitlines() if line.startswith("|")]
    assert table_rows and all(line in summary for line in table_rows)


def test_the_test_command_keeps_each_costly_module_on_one_worker():
    """`-n 2` with no --dist (none in addopts either, which would bypass it) takes conftest's scheduler: a module
    whose module-scoped fixture costs seconds goes whole to one worker, every other test on its own."""
    import tomllib
    from types import SimpleNamespace

    from tests import conftest

    addopts = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]["addopts"]
    assert "--dist" not in addopts
    config = SimpleNamespace(invocation_params=SimpleNamespace(args=("-q", "-n", "2")), getvalue=lambda name: "load",
                             option=SimpleNamespace(distload=False, maxschedchunk=None), getoption=lambda *a, **k: None)
    scheduler = conftest.pytest_xdist_make_scheduler(config, log=None)
    assert scheduler._split_scope("tests/test_compare.py::test_summary_reads_first") == "tests/test_compare.py"
    assert scheduler._split_scope("tests/test_data.py::test_xor") == "tests/test_data.py::test_xor"
