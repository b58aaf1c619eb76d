"""The benchmark's yardstick and its machine-readable output (tiny step counts: the figures are not judged here)."""
from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest

from harness import bench
from harness.config import RunConfig
from harness.data import xor
from harness.init import initial_params
from harness.running import c_loop
from impls.interface import Unavailable
from impls.registry import create
from impls.spec import ModelSpec

pytestmark = pytest.mark.slow  # the edit loop leaves this module out: pytest -m 'not slow'

needs_cc = pytest.mark.skipif(not any(shutil.which(c) for c in c_loop.COMPILERS), reason="no C compiler here")


@needs_cc
def test_the_c_loop_trains_what_numpy_trains():
    spec, (x, y) = ModelSpec(), xor()
    params = initial_params(spec, RunConfig().preset())
    reference = create("numpy", spec).train(params, x, y, 300)
    loop = c_loop.CLoop()
    try:
        found = loop.run(params, x, y, 300, spec.lr)
    finally:
        loop.close()
    assert found.seconds > 0
    for name, value in reference.params.items():
        np.testing.assert_allclose(found.params[name], value, rtol=1e-13, atol=0)
    assert found.first_loss == pytest.approx(reference.losses[0], rel=1e-15)
    assert found.last_loss == pytest.approx(reference.losses[-1], rel=1e-13)


@needs_cc
def test_a_wrong_step_in_the_c_loop_is_seen_to_disagree(monkeypatch):
    monkeypatch.setattr(c_loop, "SOURCE", c_loop.SOURCE.replace("gb1 += dz;", "gb1 += 2 * dz;"))
    spec, (x, y) = ModelSpec(), xor()
    params = initial_params(spec, RunConfig().preset())
    loop = c_loop.CLoop()
    try:
        found = loop.run(params, x, y, 300, spec.lr)
    finally:
        loop.close()
    assert bench._rel_err(found.params, create("numpy", spec).train(params, x, y, 300).params) > bench.AGREE


def test_no_c_compiler_makes_only_the_yardstick_unavailable(monkeypatch):
    monkeypatch.setattr(c_loop.shutil, "which", lambda name: None)
    with pytest.raises(Unavailable, match="needs a C compiler; none of cc, gcc, clang is on PATH"):
        c_loop.CLoop()


def test_the_fast_paths_csv_has_a_row_per_path(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(bench, "FAST_PATHS", ("numpy", "numpy-fast"))
    bench.print_fast_paths(20, 1, csv=str(tmp_path / "fast.csv"))
    table = pd.read_csv(tmp_path / "fast.csv")
    assert tuple(table.columns) == bench.CSV_COLUMNS
    expected = {"numpy", "numpy-fast"} | ({bench.C_LOOP} if shutil.which("cc") or shutil.which("gcc") else set())
    assert set(table.path) == expected and (table.us_per_step_min > 0).all()
    assert (table.max_rel_err_vs_numpy <= bench.AGREE).all()
    out = capsys.readouterr().out
    assert "x C loop" in out and "numpy-fast: 16 NumPy calls per step x " in out


def test_a_compare_run_is_set_beside_the_floor_its_meta_records(tmp_path):
    wall, work, code = bench.default_floor(tmp_path, ("--impls", "numpy", "--dtype", "float64", "--steps", "200"))
    assert code == 0 and set(work) == {"trajectories_s", "oracle_s", "truth_s", "slots", "floor_s",
                                     "oracle_checks_s"}
    assert 0 < work["truth_s"] <= work["oracle_s"]  # the truth's trajectory, the reference runs beside it
    assert 0 < work["oracle_checks_s"] < wall  # the checks' round trips to the oracle's worker
    assert 0 < work["floor_s"] == pytest.approx((work["trajectories_s"] + work["oracle_s"]) / work["slots"])
    assert wall > work["floor_s"]  # the whole process: start, workers, checks, report


def test_several_default_runs_are_judged_by_their_median_ratio(monkeypatch, capsys):
    walls = iter([12.0, 13.0, 11.5])  # against a floor of 10 s: ratios 1.2, 1.3, 1.15
    monkeypatch.setattr(bench, "default_floor", lambda tmp: (next(walls), {
        "trajectories_s": 18.0, "oracle_s": 2.0, "slots": 2, "floor_s": 10.0}, 0))
    bench.print_default_floor(3)
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 4 and "wall / floor 1.30" in lines[1] and "OVER" not in "".join(lines[:3])
    assert lines[3].startswith("default compare, 3 runs: wall / floor min 1.150, median 1.200, max 1.300")
    assert lines[3].endswith("target <= 1.2")  # the median is judged: 1.2 meets it
    walls = iter([12.5, 13.0, 11.5])
    bench.print_default_floor(3)
    assert capsys.readouterr().out.splitlines()[3].endswith("OVER")
    walls = iter([12.5])
    bench.print_default_floor(1)
    assert capsys.readouterr().out.rstrip().endswith("target <= 1.2  OVER (and <= 60 s)")


def test_fewer_than_one_default_run_is_bad_usage(capsys):
    code = bench.main(["--only-default", "--default-runs", "0"])  # one line and 2, as every command (harness.cli)
    assert code == 2 and "--default-runs must be at least 1" in capsys.readouterr().err


@pytest.mark.parametrize("wall, code", [(11.0, 0), (13.0, 1)])
def test_bench_exits_1_when_a_target_is_missed(monkeypatch, capsys, wall, code):
    """Against a floor of 10 s the default compare's target is 1.2: 11 s meets it, 13 s misses it."""
    monkeypatch.setattr(bench, "default_floor", lambda tmp: (wall, {
        "trajectories_s": 18.0, "oracle_s": 2.0, "slots": 2, "floor_s": 10.0}, 0))
    assert bench.main(["--only-default", "--default-runs", "1"]) == code
    out = capsys.readouterr().out
    assert ("OVER" in out and "1 target(s) missed" in out) if code else "OVER" not in out


def test_a_default_run_over_its_wall_time_target_is_missed_whatever_its_floor(monkeypatch, capsys):
    """70 s against a floor of 65 s meets the ratio (1.08) but not the 60 s a default run may take."""
    monkeypatch.setattr(bench, "default_floor", lambda tmp: (70.0, {
        "trajectories_s": 120.0, "oracle_s": 10.0, "slots": 2, "floor_s": 65.0}, 0))
    assert bench.main(["--only-default", "--default-runs", "1"]) == 1
    out = capsys.readouterr().out
    assert "(and <= 60 s  OVER)" in out and "70 > 60" in out
