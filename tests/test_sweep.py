"""python -m harness.sweep: grid, tables, crossovers, plots, parallel points."""
import pandas as pd
import pytest

from harness import sweep

pytestmark = pytest.mark.slow  # the edit loop leaves this module out: pytest -m 'not slow'


@pytest.fixture
def tiny_grid(monkeypatch):
    monkeypatch.setattr(sweep, "GRID", {"width": (4, 32), "batch": (2, 3), "depth": (1, 2)})


def test_points_sweep_one_axis_at_a_time_around_the_base():
    grid = sweep.points(("width", "batch", "depth"))
    assert len(grid) == sum(len(v) for v in sweep.GRID.values())
    config = sweep.Point("batch", 4096).config(sweep.RunConfig(steps=10, check_every=5))
    assert config.dataset == "parity:12" and config.layers == (12, 16, 1)
    config = sweep.Point("depth", 3).config(sweep.RunConfig(steps=10, check_every=5))
    assert config.layers == (4, 16, 16, 16, 1) and config.activations == ("tanh", "tanh", "tanh", "sigmoid")


def test_a_small_sweep_writes_its_table_summary_and_plots(tiny_grid, tmp_path):
    out = tmp_path / "sweep"
    code = sweep.main(["--axes", "width,batch", "--impls", "numpy,jax", "--dtype", "float64", "--steps", "20",
                       "--out", str(out), "--quiet"])
    assert code == 0
    assert sorted(p.name for p in out.iterdir()) == ["meta.json", "scaling_batch.png", "scaling_width.png",
                                                     "summary.md", "sweep.csv"]
    table = pd.read_csv(out / "sweep.csv")
    assert set(zip(table.axis, table.value)) == {("width", 4), ("width", 32), ("batch", 4), ("batch", 8)}
    assert table.passed.all() and set(table.impl) == {"numpy", "jax"}
    assert (table.step_median_s >= table.step_median_s.min()).all() and table.one_step_rel_err.max() < 1e-12
    assert (table.oracle_step_s > 0).all() and table.oracle_share.between(0, 1, inclusive="neither").all()
    assert (table.groupby(["axis", "value"]).oracle_step_s.nunique() == 1).all()  # one oracle a point
    text = (out / "summary.md").read_text()
    assert "## Fastest path per framework at each size" in text and "## Crossovers" in text


def test_parallel_points_give_the_same_rows_as_serial_ones(tiny_grid, tmp_path):
    argv = ["--axes", "depth", "--impls", "numpy", "--dtype", "float64", "--steps", "20", "--quiet"]
    assert sweep.main([*argv, "--jobs", "2", "--out", str(tmp_path / "a")]) == 0
    assert sweep.main([*argv, "--jobs", "1", "--out", str(tmp_path / "b")]) == 0
    parallel, serial = (pd.read_csv(tmp_path / d / "sweep.csv") for d in "ab")
    assert list(zip(parallel.axis, parallel.value)) == [("depth", 1), ("depth", 2)]
    untimed = [c for c in serial.columns if not c.endswith("_s") and c != "oracle_share"]
    pd.testing.assert_frame_equal(parallel[untimed], serial[untimed])


def test_crossovers_name_where_the_fastest_changes():
    rows = [("width", 4, "numpy", 1e-6), ("width", 4, "torch", 9e-6), ("width", 64, "numpy", 8e-6),
            ("width", 64, "torch", 5e-6)]
    frame = pd.DataFrame([{"axis": a, "value": v, "impl": i, "dtype": "float64", "step_median_s": t}
                          for a, v, i, t in rows])
    assert sweep.crossovers(frame) == ["width, float64: numpy is fastest up to 4, torch from 64"]
    assert list(sweep.fastest(frame)["fastest numpy"]) == ["numpy", "numpy"]


@pytest.mark.parametrize("argv, message", [
    (["--axes", "height"], "unknown axis 'height'"),
    (["--jobs", "0"], "--jobs must be >= 1, got 0"),
    (["--impls", "numpy,tf"], "unknown implementation 'tf'"),
    (["--device", "tpu"], "unknown device 'tpu'"),
])
def test_bad_usage_exit_2(capsys, argv, message):
    assert sweep.main(argv) == 2
    assert message in capsys.readouterr().err


@pytest.mark.in_process("numpy's tanh' is broken by a monkeypatch, which its worker would not see")
def test_the_passed_column_is_the_verdict_and_a_planted_bug_fails_its_point(tiny_grid, tmp_path, monkeypatch):
    import impls.np_notebook as m

    monkeypatch.setitem(m.ACTIVATION_PRIME, "tanh", lambda y: 1 - y**2 + 1e-3)  # numpy's tanh' is wrong
    argv = ["--axes", "depth", "--impls", "numpy,jax", "--dtype", "float64", "--steps", "20", "--quiet"]
    assert sweep.main([*argv, "--out", str(tmp_path / "s")]) == 1
    table = pd.read_csv(tmp_path / "s" / "sweep.csv")
    assert dict(zip(table.impl, table.passed)) == {"numpy": False, "jax": True}
    assert set(table[table.impl == "numpy"].verdict) == {"fail"}
