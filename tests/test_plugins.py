"""Your own implementation: loaded with --impl or passed to the Python API, validated, and held to account.

The negative controls (tests/broken.py) are how we know the checks can fail:
each planted bug must be caught and named down to its step and parameter.
"""
import pytest

from harness import compare
from harness.api import assert_matches_reference
from harness.running.plugins import PluginError, load
from tests import broken

pytestmark = pytest.mark.slow  # the edit loop leaves this module out: pytest -m 'not slow'

RUN = ["--steps", "300", "--check-every", "100", "--dtype", "float64", "--impls", "numpy", "--quiet", "--no-plots",
       "--no-timings"]


def test_the_documented_example_passes_from_the_api_and_the_cli(tmp_path, capsys):
    assert_matches_reference("examples.minimal_impl:MinimalNumpy", steps=500, dtype=("float64", "float32"))
    assert_matches_reference("examples.minimal_impl:MinimalNumpy", steps=300, layers=(3, 6, 5, 1),
                             activations=("relu", "identity", "sigmoid"), dataset="parity:3", reduction="mean")
    code = compare.main([*RUN, "--impl", "examples.minimal_impl:MinimalNumpy", "--out", str(tmp_path / "r")])
    assert code == 0 and capsys.readouterr().out.startswith("PASS")


def test_the_documented_example_declines_what_its_loop_does_not_do():
    with pytest.raises(AssertionError, match="nothing was compared.*plain SGD only, not adam"):
        assert_matches_reference("examples.minimal_impl:MinimalNumpy", steps=20, optimizer="adam")


@pytest.mark.parametrize("cls, model, expected", [
    (broken.TanhPrimeWrong, {}, "trajectory: tanh-prime-wrong float64 diverges at step 1 (by its loss);"
                                " first disagreement: gradient of w0 at step 0"),
    (broken.BiasGradMean, {}, "trajectory: bias-grad-mean float64 diverges at step 1 (by its loss);"
                              " first disagreement: gradient of b1 at step 0"),
    (broken.SignErrorLayer0, {}, "trajectory: sign-error-layer0 float64 diverges at step 1 (by its loss);"
                                 " first disagreement: gradient of w0 at step 0"),
    (broken.TransposedWeightGrad, {"layers": (2, 4, 4, 1), "activations": ("tanh", "tanh", "sigmoid")},
     "trajectory: transposed-weight-grad float64 diverges at step 1 (by its loss);"
     " first disagreement: gradient of w1 at step 0"),
    (broken.UpdateBeforeGradient, {}, "trajectory: update-before-gradient float64 diverges at step 1 (by its loss);"
                                      " first disagreement: update of "),
])
def test_negative_controls_are_caught_and_named(cls, model, expected):
    with pytest.raises(AssertionError) as caught:
        assert_matches_reference(cls, steps=300, **model)
    assert expected in str(caught.value)


def test_a_stated_convention_passes_the_api_unless_strict():
    model = {"steps": 200, "activations": ("relu", "sigmoid")}  # the notebook's init puts a relu at its kink
    assert_matches_reference(broken.ReluHalfAtKink, **model)
    with pytest.raises(AssertionError, match=r"convention: relu-half-at-kink float64: teacher-forced at a relu"
                                             r" kink: relu'\(0\) = 0.5"):
        assert_matches_reference(broken.ReluHalfAtKink, strict=True, **model)
    with pytest.raises(AssertionError, match="teacher-forced: relu-claims-half-takes-one float64 step 0 b0"):
        assert_matches_reference(broken.ReluClaimsHalfTakesOne, **model)


def test_a_mis_shaped_gradient_is_named_by_validation():
    with pytest.raises(AssertionError, match=r"faulty: mis-shaped-weight-grad float64: loss_and_grads\(\) returned"
                                             r" w0 of shape \(4, 2\), expected \(2, 4\)"):
        assert_matches_reference(broken.MisShapedWeightGrad, steps=50)


def test_mutating_the_inputs_is_a_fault():
    with pytest.raises(AssertionError, match=r"loss_and_grads\(\) changed its input b0"):
        assert_matches_reference(broken.MutatesInputs, steps=50)


def test_a_faulty_plugin_is_left_out_and_the_rest_still_compared(tmp_path, capsys):
    code = compare.main([*RUN, "--impl", "tests.broken:MisShapedWeightGrad", "--out", str(tmp_path / "r")])
    out = capsys.readouterr().out
    assert code == 1 and "faulty: mis-shaped-weight-grad float64" in out
    summary = (tmp_path / "r" / "summary.md").read_text()
    assert "| mis-shaped-weight-grad | float64 | - | - | - | - | - | FAULTY |" in summary  # a row of its own
    assert "| numpy | float64 |" in summary and summary.count("| PASS |") == 1


@pytest.mark.parametrize("reference, message", [
    ("examples.minimal_impl", "is not of the form module:attr"),
    ("examples.minimal_impl:Nope", "has no class or function 'Nope'"),
    ("no_such_package.mod:Impl", "cannot import no_such_package.mod (ModuleNotFoundError"),
])
def test_a_bad_reference_is_one_line_and_exit_2(reference, message, capsys):
    with pytest.raises(PluginError, match=message.replace("(", r"\(")):
        load(reference)
    assert compare.main(["--impl", reference]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_an_implementation_may_decline_a_spec_with_a_reason(tmp_path, capsys):
    code = compare.main([*RUN, "--loss", "bce", "--impl", "examples.minimal_impl:MinimalNumpy",
                         "--out", str(tmp_path / "r")])
    assert code == 0
    meta = (tmp_path / "r" / "meta.json").read_text()
    assert "minimal-numpy implements the sel loss only" in meta


def test_the_api_refuses_unknown_settings():
    with pytest.raises(TypeError, match="unknown settings \\['widht'\\]"):
        assert_matches_reference(broken.TanhPrimeWrong, widht=3)
