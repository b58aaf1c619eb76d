"""One verdict, and the reproductions of issue 9: each a bug the harness once let through or misreported."""
import numpy as np
import pandas as pd
import pytest

from harness import compare
from harness.api import assert_matches_reference
from harness.checks.verdict import FAIL, PASS, Finding, decide, exit_code
from harness.checks.gradcheck import table
from harness.checks.trajectory import Divergence
from harness.config import RunConfig
from harness.truth.references import Reference, envelope

pytestmark = pytest.mark.slow  # the edit loop leaves this module out: pytest -m 'not slow'

PATCHED = "the bug is a monkeypatch of the implementation's code, which its worker would not see"
SHORT = ["--steps", "300", "--check-every", "100", "--quiet", "--no-plots", "--no-timings"]


def _main(capsys, tmp_path, *argv) -> tuple[int, list[str]]:
    code = compare.main([*SHORT, *argv, "--out", str(tmp_path / "r")])
    return code, [line for line in capsys.readouterr().out.splitlines() if not line.startswith("results:")]


@pytest.mark.in_process(PATCHED)
def test_a_wrong_update_rule_fails_whoever_uses_it(monkeypatch):
    """update_weights stepping 1.001 lr g: numpy and numpy-fd share it and fail; torch and jax pass."""
    import impls.np_notebook as m

    def update(w, b, dw, db, lr):
        w -= lr * dw * 1.001
        b -= lr * db
    monkeypatch.setattr(m, "update_weights", update)
    outcome = compare.compare(RunConfig(steps=300, check_every=100, quiet=True), timings=False)
    failed = {(v.impl, v.dtype) for v in outcome.verdicts if not v.passed}
    assert failed == {("numpy", "float64"), ("numpy-fd", "float64")}, outcome.failures
    assert "update: numpy float64 step 0 w0: error relative to the step 1.000e-03" in "\n".join(outcome.failures)


def test_a_loop_that_skips_one_update_fails_and_the_replay_says_it_cannot_repeat_it(capsys, tmp_path):
    code, lines = _main(capsys, tmp_path, "--impls", "numpy", "--impl", "tests.broken:SkipsOneUpdate")
    assert code == 1
    assert ("trajectory: skips-one-update float64 diverges at step 151 (by its loss); first disagreement: replay"
            " differs of loss at step 151") in lines[0]
    assert all("skips-one-update" in line for line in lines)


def test_a_blow_up_before_every_reference_fails(capsys, tmp_path):
    code, lines = _main(capsys, tmp_path, "--impls", "numpy", "--dtype", "float64", "--activations",
                        "tanh,identity", "--lr", "10", "--impl", "tests.broken:InfAtStep20")
    assert code == 1
    assert lines == ["trajectory: inf-at-step-20 float64 diverged at step 20 (non-finite loss) before the oracle"
                     " (never) and the reference runs in float64 (step 68)"]


def test_a_run_that_starts_from_other_weights_is_named(capsys, tmp_path):
    code, lines = _main(capsys, tmp_path, "--impls", "numpy", "--dtype", "float64",
                        "--impl", "tests.broken:NudgedStart")
    assert code == 1 and all(": nudged-start float64 " in line for line in lines)
    assert any(line.startswith("trajectory: nudged-start float64 diverges at step 0 (by its loss); first"
                               " disagreement: initial state of w0 at step 0") for line in lines)


def test_every_rendering_comes_from_the_one_verdict(capsys, tmp_path):
    code, lines = _main(capsys, tmp_path, "--impls", "numpy,torch", "--dtype", "float64",
                        "--impl", "tests.broken:TanhPrimeWrong", "--impl", "tests.broken:MisShapedWeightGrad")
    out = tmp_path / "r"
    verdicts = pd.read_csv(out / "verdicts.csv")
    assert dict(zip(verdicts.impl, verdicts.verdict)) == {"numpy": "pass", "torch": "pass", "tanh-prime-wrong": "fail",
                                                          "mis-shaped-weight-grad": "faulty"}
    assert code == 1 and lines[0].startswith("faulty: mis-shaped-weight-grad float64:")
    summary = (out / "summary.md").read_text()
    assert summary.splitlines()[2] == "**FAIL** (tanh-prime-wrong float64, mis-shaped-weight-grad float64):"
    for impl, status in zip(verdicts.impl, verdicts.verdict):
        assert f"| {impl} | float64 |" in summary and f"| {status.upper()} |" in summary


def test_the_verdict_is_decided_from_typed_records_alone():
    rows = table([{"check": "update", "impl": "a", "dtype": "float64", "step": 3, "param": "w0", "max_abs": 1.0,
                   "rel": 1e-3, "ulps": 9.0, "allowed": 1e-11, "passed": False, "judged": True, "relu_kink": False}])
    late = Divergence("b", "float64", nonfinite_at=20, reference_nonfinite_at=68)
    explained = Divergence("c", "float32", nonfinite_at=9, reference_nonfinite_at=10, overflow_explained=True)
    verdicts = decide([("a", "float64"), ("b", "float64"), ("c", "float32")], rows, [late, explained], {}, {})
    assert [v.status for v in verdicts] == [FAIL, FAIL, PASS] and exit_code(verdicts) == 1
    assert verdicts[0].findings == (Finding("update", "a", "float64", 3, "w0", 1e-3, 1e-11),)
    assert exit_code(verdicts[2:]) == 0


def test_the_api_fails_when_nothing_was_compared():
    from tests.broken import DeclinesEverything

    with pytest.raises(AssertionError, match="nothing was compared: DeclinesEverything ran in none of float64"):
        assert_matches_reference(DeclinesEverything, steps=20)


@pytest.mark.in_process(PATCHED)
def test_a_slow_implementation_is_a_fault_not_a_crash(monkeypatch, capsys, tmp_path):
    """Once, numpy hitting --time-limit crashed the run (it was the baseline). Now it is one fault line."""
    import time

    from impls.np_backprop import NumpyBackprop

    right = NumpyBackprop.train

    def slow(self, params, x, y, steps, record=()):
        if steps > 10:  # the whole trajectory, not the short calls of the checks
            time.sleep(30)
        return right(self, params, x, y, steps, record)
    monkeypatch.setattr(NumpyBackprop, "train", slow)
    # the rest: torch, whose calls fit 3 s however loaded the machine (jax's first compile did not, once)
    code = compare.main([*SHORT, "--time-limit", "3", "--impls", "numpy,torch", "--dtype", "float64",
                         "--out", str(tmp_path / "r")])
    lines = capsys.readouterr().out.splitlines()
    assert code == 1 and lines[0] == "faulty: numpy float64: train() ran past the 3 s time limit and was stopped"
    verdicts = pd.read_csv(tmp_path / "r" / "verdicts.csv")
    assert dict(zip(verdicts.impl, verdicts.verdict)) == {"torch": "pass", "numpy": "faulty"}


def test_the_envelope_is_the_spread_of_the_plain_runs_as_a_running_max():
    truth = Reference("oracle", "longdouble", np.array([1.0, 1.0, 1.0], np.longdouble), {}, 0.0)
    plain = Reference("p", "float64", np.array([1.0, 1.0 + 1e-9, 1.0]), {}, 0.0)
    twin = Reference("t", "float64", np.array([1.0 + 2e-12, 1.0, 1.0]), {}, 0.0)
    np.testing.assert_allclose(envelope(truth, [plain, twin]).loss, [2e-12, 1e-9, 1e-9], rtol=1e-3)


@pytest.mark.in_process(PATCHED)
def test_a_built_in_loop_that_returns_the_wrong_shape_is_a_fault_not_a_crash(monkeypatch, capsys, tmp_path):
    """Found by the mutation campaign: a jax loop that ran a third of its segments crashed the harness."""
    import impls.jax_grad as m

    right = m.segments
    monkeypatch.setattr(m, "segments", lambda wanted, steps: [(a, n, max(1, c // 2)) for a, n, c in right(wanted, steps)])
    code, lines = _main(capsys, tmp_path, "--impls", "numpy,jax", "--dtype", "float64")
    assert code == 1 and lines == ["faulty: jax float64: train() returned losses of shape (200,), expected (300,)"]


@pytest.mark.in_process(PATCHED)
def test_a_built_in_implementation_that_fails_to_build_is_a_fault(monkeypatch, capsys, tmp_path):
    import impls.torch_autograd as m

    def broken(self, spec):
        raise NameError("name 'oops' is not defined")
    monkeypatch.setattr(m.TorchAutograd, "__init__", broken)
    code, lines = _main(capsys, tmp_path, "--impls", "numpy,torch", "--dtype", "float64")
    assert code == 1 and lines == ["faulty: torch float64: construction raised NameError: name 'oops' is not defined"]


@pytest.mark.in_process(PATCHED)
def test_a_built_in_that_declines_a_dtype_it_supports_is_a_fault(monkeypatch, capsys, tmp_path):
    """Found by the mutation campaign: a mutated dtype check made torch 'unavailable' and the run passed."""
    import impls.torch_autograd as m

    monkeypatch.setattr(m, "require_dtype", lambda name, spec, supported: (_ for _ in ()).throw(
        m.Unavailable(f"{name} has no {spec.dtype}")))
    code, lines = _main(capsys, tmp_path, "--impls", "numpy,torch", "--dtype", "float64")
    assert code == 1 and lines == ["faulty: torch float64: declared itself unavailable in float64, which it"
                                   " supports: torch has no float64"]


def test_nothing_compared_is_a_failure_on_the_command_line(monkeypatch, capsys, tmp_path):
    from harness.running import roster
    from impls.interface import NotInstalled

    monkeypatch.setattr(roster, "create", lambda name, spec: (_ for _ in ()).throw(
        NotInstalled(f"{name}: not installed here")))
    code, lines = _main(capsys, tmp_path, "--impls", "numpy,torch", "--dtype", "float64")
    assert code == 1 and lines[0].startswith("nothing was compared")
