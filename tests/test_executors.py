"""One executor interface for sweep and fuzz: local processes and a Dask cluster give the same rows."""
from __future__ import annotations

import pandas as pd
import pytest

from harness import fuzz, sweep
from harness.running import executors
from tests.conftest import REQUIRE_ALL

try:
    from dask.distributed import LocalCluster
except ImportError as exc:  # the dask extra is optional; CI installs it
    if REQUIRE_ALL:
        raise
    pytest.skip(f"dask.distributed is not installed ({exc})", allow_module_level=True)


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


def test_sweep_rows_are_the_same_on_local_processes_and_on_a_dask_cluster(tmp_path, cluster):
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
