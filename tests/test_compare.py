"""The ``python -m harness.compare`` entry point: files, exit codes, and planted bugs caught."""
import json

import pandas as pd
import pytest

from harness import compare, config, notebook
from harness.data import xor
from harness.init import initial_params
from impls.spec import ModelSpec
from tests.broken import BiasGradMean, LrDoubledInLoop, TanhPrimeWrong, register
from tests.conftest import make

pytestmark = pytest.mark.slow  # the edit loop leaves this module out: pytest -m 'not slow'; -n 2 runs it whole on
# one worker (tests/conftest.py's SHARED_FIXTURES), so its module-scoped fixture is made once

SHORT = ["--steps", "300", "--check-every", "100"]
FILES = ["summary.md", "gradients.csv", "trajectory.csv", "parameters.csv", "divergence.csv", "final.csv",
         "timings.csv", "agreement.csv", "verdicts.csv", "meta.json", "loss.png", "deviation.png", "timings.png"]
REGISTERED = "the planted class is registered by monkeypatching the registry, which a worker would not see"


@pytest.fixture(scope="module")
def short_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "short"
    code = compare.main([*SHORT, "--out", str(out), "--quiet"])
    return code, out


def test_short_run_passes_and_writes_every_file(short_run):
    code, out = short_run
    assert code == 0
    assert sorted(p.name for p in out.iterdir()) == sorted(FILES)
    assert not list(out.parent.glob(".short.*"))  # no temporary folder left beside it


def test_final_table_has_the_documented_columns(short_run):
    final = pd.read_csv(short_run[1] / "final.csv")
    assert list(final.columns[:9]) == ["impl", "dtype", "step", "loss", "pred_0", "pred_1", "pred_2", "pred_3",
                                       "solved"]
    assert set(zip(final.impl, final.dtype)) == {
        ("numpy", "float64"), ("numpy-fd", "float64"), ("torch", "float64"), ("jax", "float64"),
        ("numpy", "float32"), ("torch", "float32"), ("jax", "float32")}
    assert (final.step == 299).all()


def test_tables_hold_every_check(short_run):
    out = short_run[1]
    grads = pd.read_csv(out / "gradients.csv")
    assert set(grads.check) == {"teacher-forced", "update", "finite-difference"}
    assert set(grads.param) == {"loss", "w0", "b0", "w1", "b1"}
    assert sorted(grads[grads.check == "teacher-forced"].step.unique()) == [0, 100, 200, 299, 300]
    assert grads.passed.all() and (grads.rel <= grads.allowed).all()
    losses = pd.read_csv(out / "trajectory.csv")
    assert {0, 299} <= set(losses.step) and (losses.rel_err <= losses.allowed).all()
    timings = pd.read_csv(out / "timings.csv")
    assert set(timings.measure) == {"first_call", "loss_and_grads", "train_step", "trajectory"}
    assert set(zip(timings.impl, timings.dtype)) == set(zip(grads.impl, grads.dtype))


def test_meta_records_config_versions_and_threads(short_run):
    meta = json.loads((short_run[1] / "meta.json").read_text())
    assert meta["format_version"] == 1 and meta["config"]["steps"] == 300
    env = meta["environment"]
    assert env["numpy"]["version"] and env["torch"]["num_threads"] >= 1
    assert env["jax"]["x64_enabled_globally"] is False
    assert "numpy-fd float32" in meta["skipped"]


def test_summary_reads_first(short_run):
    text = (short_run[1] / "summary.md").read_text()
    assert text.splitlines()[2] == "**PASS**: every check passed (7 implementation-dtype runs)."
    for heading in ("Verdict per implementation", "Pairwise agreement, float64", "Pairwise agreement, float32",
                    "First divergence", "Final state", "Timings", "Tolerances"):
        assert f"## {heading}" in text


@pytest.mark.in_process(REGISTERED)
@pytest.mark.parametrize("cls, expected", [
    (TanhPrimeWrong, "diverges at step 1 (by its loss); first disagreement: gradient of w0 at step 0"),
    (BiasGradMean, "diverges at step 1 (by its loss); first disagreement: gradient of b1 at step 0"),
    (LrDoubledInLoop, "diverges at step 1 (by its loss); first disagreement: update of "),
])
def test_a_planted_bug_exits_1_naming_step_and_parameter(monkeypatch, capsys, tmp_path, cls, expected):
    name = register(monkeypatch, cls)
    code = compare.main([*SHORT, "--impls", f"numpy,{name}", "--dtype", "float64", "--out", str(tmp_path / "r"),
                         "--quiet", "--no-plots", "--no-timings"])
    out = capsys.readouterr().out
    assert code == 1
    assert f"trajectory: {name} float64 {expected}" in out
    assert "numpy float64" not in out  # the correct implementation is not blamed


@pytest.mark.in_process(REGISTERED)
def test_one_step_checks_name_the_parameter(monkeypatch, capsys, tmp_path):
    name = register(monkeypatch, TanhPrimeWrong)
    assert compare.main([*SHORT, "--impls", name, "--dtype", "float64", "--out", str(tmp_path / "r"), "--quiet",
                         "--no-plots", "--no-timings"]) == 1
    out = capsys.readouterr().out
    assert f"teacher-forced: {name} float64 step 0 w0: relative error" in out
    assert f"finite-difference: {name} float64 step 0 w0: relative error" in out


@pytest.mark.in_process(REGISTERED)
def test_a_planted_bug_is_caught_in_float32_too(monkeypatch, capsys, tmp_path):
    name = register(monkeypatch, BiasGradMean)
    code = compare.main([*SHORT, "--impls", name, "--dtype", "float32", "--out", str(tmp_path / "r"), "--quiet",
                         "--no-plots", "--no-timings"])
    out = capsys.readouterr().out
    assert code == 1
    # float32's floor lets the loss drift a few steps before it shows; the replay still finds step 0.
    assert f"trajectory: {name} float32 diverges at step " in out
    assert "first disagreement: gradient of b1 at step 0" in out


def test_existing_out_folder_needs_overwrite(tmp_path, capsys):
    out = tmp_path / "taken"
    out.mkdir()
    (out / "meta.json").write_text("{}")  # an earlier run
    (out / "stale.csv").write_text("old")
    argv = ["--steps", "20", "--check-every", "10", "--impls", "numpy", "--dtype", "float64", "--out", str(out),
            "--quiet", "--no-plots"]
    assert compare.main(argv) == 2
    assert "exists; pass --overwrite" in capsys.readouterr().err
    assert (out / "stale.csv").exists()
    assert compare.main([*argv, "--overwrite"]) == 0
    assert (out / "summary.md").exists() and not (out / "stale.csv").exists()


def test_overwrite_never_replaces_a_folder_that_is_not_a_run(tmp_path, capsys):
    out = tmp_path / "my-documents"
    out.mkdir()
    (out / "thesis.tex").write_text("precious")
    assert compare.main(["--out", str(out), "--overwrite"]) == 2
    assert "not a results folder" in capsys.readouterr().err
    assert (out / "thesis.tex").read_text() == "precious"


def _line_after(steps: int) -> str:
    impl = make("numpy", ModelSpec())
    x, y = xor()
    run = impl.train(initial_params(ModelSpec()), x, y, steps, record=[steps - 1])
    return notebook.printed_line(run.losses[-1], impl.forward(run.checkpoints[steps - 1], x))


def test_exit_1_when_the_notebook_is_not_reproduced(monkeypatch, capsys, tmp_path):
    """Shrink the notebook run to 30 steps: the real line passes, a wrong one fails."""
    monkeypatch.setattr(config, "STEPS", 30)
    argv = ["--steps", "30", "--check-every", "10", "--impls", "numpy,jax", "--dtype", "float64", "--quiet",
            "--no-plots", "--no-timings"]
    monkeypatch.setattr(notebook, "PRINTED", _line_after(30))
    assert compare.main([*argv, "--out", str(tmp_path / "a")]) == 0
    monkeypatch.setattr(notebook, "PRINTED", _line_after(31))
    assert compare.main([*argv, "--out", str(tmp_path / "b")]) == 1
    assert "did not reproduce the notebook" in capsys.readouterr().out


def test_any_mlp_loss_and_dataset_from_the_command_line(tmp_path):
    argv = ["--dataset", "parity:3", "--layers", "3,6,4,1", "--activations", "tanh,identity,sigmoid", "--loss", "bce",
            "--reduction", "mean", "--lr", "0.05", "--steps", "400", "--check-every", "100", "--dtype", "float64",
            "--out", str(tmp_path / "r"), "--quiet", "--no-plots", "--no-timings"]
    assert compare.main(argv) == 0
    final = pd.read_csv(tmp_path / "r" / "final.csv")
    assert [c for c in final.columns if c.startswith("pred_")] == [f"pred_{i}" for i in range(8)]


def test_relu_convention_is_checked_named_and_passes(tmp_path, capsys):
    # numpy-fd states relu'(0) = 0.5 and the notebook's init puts a relu exactly at its kink: the truth is rerun
    # with relu'(0) = 0.5, numpy-fd matches it, so the verdict is "convention" (exit 0), not a failure.
    argv = ["--activations", "relu,sigmoid", "--impls", "numpy,numpy-fd,torch,jax", "--dtype", "float64",
            "--steps", "200", "--check-every", "100", "--out", str(tmp_path / "r"), "--quiet", "--no-plots",
            "--no-timings"]
    assert compare.main(argv) == 0
    out = capsys.readouterr().out
    assert "convention: numpy-fd float64: teacher-forced at a relu kink: relu'(0) = 0.5" in out
    assert "torch float64" not in out and "jax float64" not in out  # same convention as the oracle
    verdicts = pd.read_csv(tmp_path / "r" / "verdicts.csv")
    assert dict(zip(verdicts.impl, verdicts.verdict)) == {"numpy": "pass", "numpy-fd": "convention", "torch": "pass",
                                                          "jax": "pass"}
    assert "## relu'(0) conventions" in (tmp_path / "r" / "summary.md").read_text()


def test_strict_fails_a_stated_convention(tmp_path, capsys):
    argv = ["--activations", "relu,sigmoid", "--impls", "numpy-fd", "--dtype", "float64", "--steps", "200",
            "--out", str(tmp_path / "r"), "--quiet", "--no-plots", "--no-timings", "--strict"]
    assert compare.main(argv) == 1
    out = capsys.readouterr().out
    assert "convention: numpy-fd float64: teacher-forced at a relu kink" in out
    assert pd.read_csv(tmp_path / "r" / "verdicts.csv").verdict.tolist() == ["fail"]


@pytest.mark.parametrize("plugin, code, status", [("tests.broken:ReluHalfAtKink", 0, "convention"),
                                                  ("tests.broken:ReluClaimsHalfTakesOne", 1, "fail")])
def test_a_bug_on_the_relu_kink_is_not_excused_by_the_stated_convention(tmp_path, capsys, plugin, code, status):
    argv = ["--activations", "relu,sigmoid", "--impls", "numpy", "--impl", plugin, "--dtype", "float64",
            "--steps", "200", "--out", str(tmp_path / "r"), "--quiet", "--no-plots", "--no-timings"]
    assert compare.main(argv) == code
    verdicts = pd.read_csv(tmp_path / "r" / "verdicts.csv")
    assert verdicts.verdict.tolist() == ["pass", status]
    if status == "fail":
        assert "teacher-forced: relu-claims-half-takes-one float64 step 0 b0" in capsys.readouterr().out


def test_layers_that_do_not_fit_the_dataset_are_bad_usage(capsys):
    assert compare.main(["--dataset", "parity:3"]) == 2
    assert "--layers 2,4,1 does not fit parity:3: it needs 3 inputs and 1 output" in capsys.readouterr().err


def test_no_timings_gives_the_same_checks_and_says_none_were_taken(short_run, tmp_path):
    out = tmp_path / "untimed"
    assert compare.main([*SHORT, "--out", str(out), "--quiet", "--no-timings"]) == short_run[0] == 0
    assert sorted(p.name for p in out.iterdir()) == sorted(set(FILES) - {"timings.png"})
    timings = pd.read_csv(out / "timings.csv")
    assert timings.empty and list(timings.columns) == list(pd.read_csv(short_run[1] / "timings.csv").columns)
    for table in ("verdicts.csv", "gradients.csv", "final.csv"):  # what is checked does not move
        pd.testing.assert_frame_equal(pd.read_csv(out / table), pd.read_csv(short_run[1] / table))
    assert "Not taken (--no-timings)" in (out / "summary.md").read_text()
    assert "no_timings" not in json.loads((out / "meta.json").read_text())["config"]
