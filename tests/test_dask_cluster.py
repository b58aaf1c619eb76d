"""On a real Dask cluster (``dask scheduler`` and ``dask worker`` started as commands, a nanny each) a task keeps
what a local run guarantees: a crash or a hang inside C is one fault line, the hang is stopped at --time-limit,
the rest is compared and written; the workers' versions are checked before anything runs."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from harness import fuzz, sweep
from harness.running import executors
from harness.running.executors import TaskDied, in_own_process, mismatches, versions
from harness.running.workers import Worker, pid_of
from tests.conftest import distributed_or_skip

pytestmark = pytest.mark.slow  # the edit loop leaves this module out: pytest -m 'not slow'; -n 2 runs it whole on
# one worker (tests/conftest.py's SHARED_FIXTURES), so its module-scoped fixture is made once

Client = distributed_or_skip().Client

ROOT = Path(__file__).resolve().parent.parent
DASK = shutil.which("dask", path=str(Path(sys.executable).parent)) or shutil.which("dask")
# --time-limit: short where the plugin hangs (every call of numpy's and the plugin's must still fit in it on a
# loaded machine), generous where it crashes
LIMIT = 3.0
HANG = ("tests.cluster_faults:HangsInTrain", LIMIT,
        f"hangs float64: train() ran past the {LIMIT:g} s time limit and was stopped")
SEGFAULT = ("tests.cluster_faults:SegfaultsInTrain", 60.0, "segfaults float64: killed by SIGSEGV during train()")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A scheduler and a worker process with two nannied workers of one thread, as `dask` starts them; every
    process group they started is killed at the end, whatever happened."""
    if DASK is None:
        pytest.skip("no dask command next to this Python")
    folder = tmp_path_factory.mktemp("cluster")
    address_file = folder / "scheduler.json"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    started: list[subprocess.Popen] = []

    def start(*argv: str, log: str) -> None:
        with open(folder / log, "w") as out:
            started.append(subprocess.Popen([DASK, *argv], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
                                            start_new_session=True))

    try:
        start("scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
              "--scheduler-file", str(address_file), log="scheduler.log")
        start("worker", "--scheduler-file", str(address_file), "--nworkers", "2", "--nthreads", "1",
              "--no-dashboard", "--local-directory", str(folder), log="worker.log")
        with Client(scheduler_file=str(address_file), timeout=30) as client:  # waits for the scheduler's file
            client.wait_for_workers(2, timeout=60)
        yield json.loads(address_file.read_text())["address"]
    finally:
        for process in started:
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            process.wait()


@pytest.mark.parametrize("plugin, limit, line", [HANG, SEGFAULT], ids=["hang", "segfault"])
def test_a_fuzz_campaign_on_a_cluster_gets_one_fault_line_and_writes_its_results(cluster, tmp_path, plugin, limit,
                                                                                 line):
    out = tmp_path / "out"
    code = fuzz.main(["--impls", "numpy", "--impl", plugin, "--dtype", "float64", "--max-examples", "1",
                      "--max-steps", "20", "--time-limit", f"{limit:g}", "--scheduler", cluster, "--out", str(out),
                      "--quiet"])
    assert code == 1  # a fault found: not 3, an internal error
    rows = pd.read_csv(out / "fuzz.csv")
    assert set(rows.verdict) == {"faulty"} and set(rows.cause) == {line}, rows[["verdict", "cause"]]
    assert f"- {line}\n" in (out / "summary.md").read_text()  # the one reproducer: the plugin's, numpy's is clean
    assert "--impls numpy" in pd.read_csv(out / "reproducers.csv").command.iloc[0]
    if plugin == HANG[0]:  # stopped at the limit: each example is the hang plus one comparison of numpy
        assert rows.seconds.between(LIMIT, LIMIT + 10).all(), rows.seconds


@pytest.mark.parametrize("plugin, limit, line", [HANG, SEGFAULT], ids=["hang", "segfault"])
def test_a_sweep_on_a_cluster_gets_one_fault_line_per_point_and_the_rest_is_compared(cluster, tmp_path, capsys,
                                                                                     monkeypatch, plugin, limit, line):
    monkeypatch.setitem(sweep.GRID, "depth", (1, 2))  # the grid is drawn here: two points, one a worker
    out = tmp_path / "out"
    start = time.perf_counter()
    code = sweep.main(["--axes", "depth", "--impls", "numpy", "--impl", plugin, "--dtype", "float64",
                       "--steps", "20", "--time-limit", f"{limit:g}", "--scheduler", cluster, "--out", str(out),
                       "--quiet"])
    assert code == 1 and time.perf_counter() - start < 60
    printed = capsys.readouterr().out.splitlines()
    impl, detail = line.split(" float64: ")
    assert [p for p in printed if "faulty" in p] == [f"depth={d}: faulty: {impl} float64: {detail}" for d in (1, 2)], \
        printed
    rows = pd.read_csv(out / "sweep.csv")
    numpy = rows[rows.impl == "numpy"]
    assert len(numpy) == 2 and numpy.passed.all() and numpy.step_median_s.notna().all()  # compared and timed
    assert list(rows[rows.impl == impl].verdict) == ["faulty", "faulty"]


def test_the_workers_report_this_processs_versions(cluster):
    with Client(cluster, timeout=10) as client:
        here = versions()
        reported = client.run(versions)
        assert len(reported) == 2 and all(got == here for got in reported.values())
        assert client.run_on_scheduler(versions) == here
    assert here["numpy"] and "code " in here["xor-harness"]


def test_other_versions_on_a_worker_stop_the_campaign_before_it_starts(cluster, tmp_path, capsys, monkeypatch):
    real = executors._version
    monkeypatch.setattr(executors, "_version", lambda name: "0.0-here" if name == "numpy" else real(name))
    out = tmp_path / "out"
    code = fuzz.main(["--impls", "numpy", "--max-examples", "1", "--scheduler", cluster, "--out", str(out)])
    err = capsys.readouterr().err
    assert code == executors.VERSION_MISMATCH == 4 and err.count("\n") == 1, err
    assert "has numpy " in err and "where this process has 0.0-here (and 2 more)" in err and "Traceback" not in err
    assert not out.exists()


def test_a_version_mismatch_names_the_worker_and_package():
    here = {"python": "3.11.7", "numpy": "2.4.6", "keras": None}
    same = dict(here)
    assert mismatches(here, {"tcp://a:1": same, "tcp://b:1": same}) == []
    assert mismatches(here, {"tcp://a:1": {**same, "numpy": "2.4.5"}}) == [
        "tcp://a:1 has numpy 2.4.5 where this process has 2.4.6"]
    assert mismatches(here, {"tcp://a:1": {**same, "numpy": None}}) == [
        "tcp://a:1 has numpy not installed where this process has 2.4.6"]
    # a package this process lacks: the workers must agree among themselves
    assert mismatches(here, {"tcp://a:1": {**same, "keras": "3.15.1"}, "tcp://b:1": {**same, "keras": "3.15.1"}}) == []
    assert mismatches(here, {"tcp://a:1": {**same, "keras": "3.15.1"}, "tcp://b:1": same}) == [
        "tcp://b:1 has keras not installed where tcp://a:1 has 3.15.1"]
    assert mismatches(here, {"tcp://a:1": ModuleNotFoundError("No module named 'harness'")}) == [
        "tcp://a:1 cannot run this project (ModuleNotFoundError: No module named 'harness')"]


def test_a_task_in_its_own_process_returns_raises_or_dies_as_one_line():
    assert in_own_process(abs, -3) == 3
    with pytest.raises(ValueError, match="invalid literal") as raised:
        in_own_process(int, "x")
    assert any("raised in the task's own process" in note for note in raised.value.__notes__)
    with pytest.raises(TaskDied, match=r"ended without an answer \(exited with code 3\)"):
        in_own_process(os._exit, 3)


def test_a_tasks_process_ends_with_its_workers_when_the_process_that_started_it_dies():
    psutil = pytest.importorskip("psutil")
    code = ("from harness.running.executors import in_own_process; from tests.cluster_faults import"
            " sleep_in_a_worker; in_own_process(sleep_in_a_worker, 600)")
    parent = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, start_new_session=True)
    try:
        deadline = time.monotonic() + 30
        while len(started := psutil.Process(parent.pid).children(recursive=True)) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)  # until the task's process, its fork server and the implementation's worker run
        assert len(started) == 3
        parent.kill()  # as a Dask worker killed by its nanny or the OOM killer
        parent.wait()
        gone, alive = psutil.wait_procs(started, timeout=10)
        assert not alive
    finally:
        try:
            os.killpg(parent.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


@pytest.mark.parametrize("tool", [fuzz, sweep], ids=["fuzz", "sweep"])
@pytest.mark.parametrize("limit", ["0", "inf", "soon"])
def test_a_bad_time_limit_is_one_line_and_exit_2(tool, limit, tmp_path, capsys):
    assert tool.main(["--time-limit", limit, "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "--time-limit" in err and err.count("\n") == 1 and not (tmp_path / "out").exists()


@pytest.mark.skipif(not Path("/proc/self/oom_score_adj").exists(), reason="no /proc (not Linux)")
def test_the_oom_killer_takes_an_implementations_process_first():
    from impls.registry import create
    from impls.spec import ModelSpec

    worker = Worker("numpy float64", create, ("numpy", ModelSpec()))
    try:
        worker.attributes  # noqa: B018 -- built
        assert Path(f"/proc/{pid_of(worker)}/oom_score_adj").read_text().strip() == "1000"
    finally:
        worker.stop()
