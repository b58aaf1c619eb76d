"""Defaults that fit any input: --check-every follows --steps, repeated names are refused."""
import pytest

from harness import compare, sweep
from harness.config import RunConfig, UsageError, parse_args


@pytest.mark.parametrize("steps, every", [(100_000, 1000), (500, 5), (50, 1), (1, 1)])
def test_check_every_follows_steps_when_not_given(steps, every):
    assert parse_args(["--steps", str(steps)]).check_every == every
    assert RunConfig(steps=steps).check_every == every


def test_an_explicit_check_every_is_kept_and_still_validated():
    assert parse_args(["--steps", "500", "--check-every", "250"]).check_every == 250
    with pytest.raises(UsageError, match="--check-every must be in 1..500"):
        parse_args(["--steps", "500", "--check-every", "1000"])


@pytest.mark.parametrize("argv, flag", [(["--dtype", "float64,float64"], "--dtype"),
                                        (["--impls", "numpy,torch,numpy"], "--impls")])
def test_a_name_listed_twice_is_refused_in_one_line(argv, flag, tmp_path, capsys):
    out = tmp_path / "out"
    assert compare.main([*argv, "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("harness.compare: error: " + flag) and "\n" not in err
    assert not out.exists()


def test_sweep_refuses_an_axis_listed_twice(tmp_path, capsys):
    assert sweep.main(["--axes", "width,width", "--out", str(tmp_path / "s")]) == 2
    assert "--axes lists 'width' more than once" in capsys.readouterr().err
