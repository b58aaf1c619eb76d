"""One executor interface for sweep and fuzz: local processes and a Dask cluster give the same rows."""
from __future__ import annotations

import pandas as pd
import pytest

from harness import fuzz, sweep
from harness.running import executors
from tests.conftest import distributed_or_skip

pytestmark = pytest.mark.slow  # the edit loop leaves this module out: pytest -m 'not slow'; -n 2 runs it whole on
# one worker (tests/conftest.py's SHARED_FIXTURES), so its module-scoped fixture is made once

LocalCluster = distributed_or_skip().LocalCluster


@pytest.fixture(scope="module")
def cluster():
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=None) as running:
        yield running.scheduler_address


def test_fuzz_rows_are_the_same_on_local_processes_and_on_a_dask_cluster(tmp_path, cluster):
    argv = ["--impls", "numpy", "--dtype", "float64", "--max-examples", "6", "--max-steps", "20", "--shards", "2",
            "--quiet"]
    assert fuzz.main([*argv, "--jobs", "2", "--out", str(tmp_path / "local")]) == 0
    assert fuzz.main([*argv, "--scheduler", cluster, "--out", str(tmp_path / "dask")]) == 0
    local, remote = (pd.read_csv(tmp_path / name / "fuzz.csv").drop(columns="seconds") for name in ("local", "dask"))
    assert len(local) == 6
    pd.testing.assert_frame_equal(local, remote)
    assert {"host", "device"} <= set(remote.columns) and remote.host.notna().all()


def test_sweep_rows_are_the_same_on_local_processes_and_on_a_dask_cluster(tmp_path, cluster, monkeypatch):
    monkeypatch.setitem(sweep.GRID, "depth", (1, 2))  # the grid is drawn here: two points, one a Dask worker
    argv = ["--axes", "depth", "--impls", "numpy", "--dtype", "float64", "--steps", "20", "--quiet"]
    assert sweep.main([*argv, "--jobs", "1", "--out", str(tmp_path / "local")]) == 0
    assert sweep.main([*argv, "--scheduler", cluster, "--out", str(tmp_path / "dask")]) == 0
    kept = ["axis", "value", "impl", "dtype", "one_step_rel_err", "verdict", "passed", "host", "device"]
    local, remote = (pd.read_csv(tmp_path / name / "sweep.csv")[kept] for name in ("local", "dask"))
    pd.testing.assert_frame_equal(local, remote)


def test_an_unreachable_scheduler_is_a_one_line_error(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(executors.DaskCluster.__init__, "__defaults__", (0.5,))  # give up after 0.5 s, not 5
    assert fuzz.main(["--scheduler", "tcp://127.0.0.1:9", "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert "no Dask scheduler at tcp://127.0.0.1:9" in err and err.count("\n") == 1


def test_a_local_sweep_on_one_gpu_runs_at_most_gpu_jobs_points_and_says_so():
    from harness.running.executors import GPU_JOBS, gpu_capped

    jobs, note = gpu_capped(GPU_JOBS + 8, "cuda", None)
    assert jobs == GPU_JOBS and note.startswith(f"--jobs {GPU_JOBS + 8} lowered to {GPU_JOBS}: ")
    assert gpu_capped(GPU_JOBS + 8, "cpu", None) == (GPU_JOBS + 8, None)  # CPU points share no GPU
    assert gpu_capped(GPU_JOBS + 8, "cuda", "tcp://h:1") == (GPU_JOBS + 8, None)  # a cluster's GPUs are its own
    assert gpu_capped(2, "cuda", None) == (2, None)


def test_jax_is_told_not_to_take_most_of_the_gpu_in_every_process():
    import subprocess
    import sys

    code = "import os, impls; print(os.environ['XLA_PYTHON_CLIENT_PREALLOCATE'])"
    env = {k: v for k, v in __import__("os").environ.items() if k != "XLA_PYTHON_CLIENT_PREALLOCATE"}
    assert subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          check=True).stdout.strip() == "false"
    env["XLA_PYTHON_CLIENT_PREALLOCATE"] = "true"  # the user's own setting wins
    assert subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          check=True).stdout.strip() == "true"
