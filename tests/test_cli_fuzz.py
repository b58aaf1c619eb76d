"""A fuzz test of the command lines: argument lists, valid and invalid, never end in a traceback.

Every generated list runs for real (short runs), and the contract is asserted: exit
code 0, 1 or 2 only; on 2, one line on stderr and nothing written. The budget here
fits the 3-minute suite; run it longer with e.g.
``XOR_HARNESS_FUZZ_EXAMPLES=500 python -m pytest tests/test_cli_fuzz.py``.
"""
import os

import pytest

hypothesis = pytest.importorskip("hypothesis", reason="hypothesis is not installed (pip install -e '.[test]')")
from hypothesis import HealthCheck, given, settings, strategies as st  # noqa: E402

from harness import compare, sweep  # noqa: E402

pytestmark = pytest.mark.slow  # the edit loop leaves this module out: pytest -m 'not slow'

EXAMPLES = int(os.environ.get("XOR_HARNESS_FUZZ_EXAMPLES", "12"))
SETTINGS = settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                    suppress_health_check=list(HealthCheck))

# Per flag, values that are valid and values that are not; a run stays short because --steps is small when valid.
VALUES = {
    "--impls": ["numpy", "numpy,torch", "jax", "numpy,numpy", "nope", "", ","],
    "--dtype": ["float64", "float32", "float64,float32", "float64,float64", "float16", ""],
    "--steps": ["1", "2", "7", "30", "0", "-3", "x", "1e3", "20000000000"],
    "--check-every": ["1", "5", "1000", "0", "y"],
    "--lr": ["0.001", "0.5", "1e308", "-1", "nan", "inf", "1e-320"],
    "--layers": ["2,4,1", "2,3,3,1", "2,1", "3,4,1", "2,200000,200000,1", "2,0,1", "a"],
    "--activations": ["tanh,sigmoid", "relu,sigmoid", "tanh,tanh,sigmoid", "swish,sigmoid", ""],
    "--loss": ["sel", "bce", "hinge"],
    "--reduction": ["sum", "mean", "max"],
    "--dataset": ["xor", "parity:2", "parity:3", "parity:0", "parity:x", "mnist"],
    "--seed": ["0", "7", "-1", "4294967296"],
    "--time-limit": ["60", "0", "-1", "inf"],
    "--max-hours": ["1", "0", "1e-9"],
    "--device": ["cpu", "tpu"],
    "--impl": ["tests.broken:TanhPrimeWrong", "nope:Nothing", "os:path", "not a reference"],
    "--bogus": ["1"],
}


def _argv(pairs: list[tuple[str, str]]) -> list[str]:
    return [part for flag, value in pairs for part in (flag, value)]


arguments = st.lists(st.sampled_from(sorted(VALUES)).flatmap(
    lambda flag: st.tuples(st.just(flag), st.sampled_from(VALUES[flag]))), max_size=5)


def _short(argv: list[str]) -> list[str]:
    """Keep valid runs short: a default of 3 steps on numpy unless the list says otherwise."""
    given_flags = set(argv[::2])
    return argv + [flag for flag, value in (("--steps", "3"), ("--impls", "numpy")) if flag not in given_flags
                   for flag in (flag, value)]


@SETTINGS
@given(arguments)
def test_compare_never_crashes(tmp_path_factory, capsys, pairs):
    out = tmp_path_factory.mktemp("fuzz") / "out"
    argv = _short(_argv(pairs)) + ["--out", str(out), "--quiet", "--no-plots"]
    code = compare.main(argv)
    captured = capsys.readouterr()
    _assert_contract(code, captured, out, argv)


SWEEP_VALUES = {"--axes": ["depth", "width,width", "height", ""], "--jobs": ["1", "0", "x"],
                "--steps": ["2", "0", "z"], "--dtype": ["float64", "float8"], "--impls": ["numpy", "nope"]}
sweep_arguments = st.lists(st.sampled_from(sorted(SWEEP_VALUES)).flatmap(
    lambda flag: st.tuples(st.just(flag), st.sampled_from(SWEEP_VALUES[flag]))), max_size=3)


@SETTINGS
@given(sweep_arguments)
def test_sweep_never_crashes(tmp_path_factory, capsys, monkeypatch, pairs):
    monkeypatch.setattr(sweep, "GRID", {"width": (4,), "batch": (2,), "depth": (1,)})  # one point per axis
    out = tmp_path_factory.mktemp("fuzz") / "out"
    argv = _argv(pairs)
    given_flags = set(argv[::2])
    argv += [part for flag, value in (("--steps", "2"), ("--impls", "numpy"), ("--dtype", "float64"),
                                      ("--axes", "depth")) if flag not in given_flags for part in (flag, value)]
    code = sweep.main(argv + ["--out", str(out), "--quiet"])
    _assert_contract(code, capsys.readouterr(), out, argv)


def _assert_contract(code: int, captured, out, argv: list[str]) -> None:
    text = captured.out + captured.err
    assert code in (0, 1, 2), (argv, code, text)
    assert "Traceback" not in text, (argv, text)
    if code == 2:
        assert not out.exists(), argv
        assert len(captured.err.strip().splitlines()) == 1, (argv, captured.err)
