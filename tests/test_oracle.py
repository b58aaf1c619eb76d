"""The oracle: complex step and reverse mode agree, the forms are complex-safe, and a slip stops the run."""
import numpy as np
import pytest

from harness import compare
from harness.data import load, parity, xor
from harness.init import InitPreset, initial_params
from harness.truth import oracle as oracle_module
from harness.truth.oracle import Oracle, OracleError
from impls.spec import ModelSpec
from tests.conftest import make

SPECS = {
    "notebook": (ModelSpec(), "xor"),
    "relu-bce-mean": (ModelSpec(activations=("relu", "sigmoid"), loss="bce", reduction="mean"), "xor"),
    "deep": (ModelSpec(layers=(3, 6, 4, 1), activations=("tanh", "identity", "sigmoid"), loss="bce"), "parity:3"),
}


@pytest.mark.parametrize("name", SPECS)
def test_complex_step_matches_hand_written_backprop_in_longdouble(name):
    """Two codes that share nothing, numpy's backprop in longdouble and the oracle's complex step, agree to
    longdouble precision (this cross-check lives in the tests only: the harness never uses numpy as truth)."""
    spec, dataset = SPECS[name]
    x, y = xor() if dataset == "xor" else parity(3)
    params = initial_params(spec, InitPreset(3))
    truth = Oracle(spec).truth(params, x, y)
    assert truth.method == "complex step, every entry"
    loss, grads = make("numpy", ModelSpec(**{**spec.__dict__, "dtype": "longdouble"})).loss_and_grads(params, x, y)
    assert abs(truth.loss - loss) / loss < 1e-16
    for k, g in grads.items():
        assert np.max(np.abs(truth.grads[k] - g)) / np.max(np.abs(truth.scale[k])) < 1e-17, k


def test_bce_and_sigmoid_stay_finite_and_exact_far_out():
    """At z = +-800 e^z overflows in float64 and longdouble alike; the split forms never evaluate it."""
    spec = ModelSpec(layers=(1, 1), activations=("sigmoid",), loss="bce")
    x, y = np.array([[1.0], [1.0]]), np.array([[0.0], [1.0]])
    for z in (800.0, -800.0):
        truth = Oracle(spec).truth({"w0": np.array([[z]]), "b0": np.array([[0.0]])}, x, y)
        s = 1.0 if z > 0 else 0.0
        assert np.isfinite(float(truth.loss)) and float(truth.loss) == pytest.approx(abs(z) / 2)
        assert float(truth.grads["w0"][0, 0]) == pytest.approx((s - 0.0) + (s - 1.0))


def test_relu_takes_zero_slope_at_its_kink(data, notebook_params):
    """At the notebook's init the [0, 0] sample puts every hidden z at exactly 0 (zero biases)."""
    spec = ModelSpec(activations=("relu", "sigmoid"))
    o = Oracle(spec)
    assert np.any(o.preactivations(notebook_params, data[0])[0] == 0)
    _, grads = make("numpy", spec).loss_and_grads(notebook_params, *data)  # relu'(0) = 0 too
    truth = o.truth(notebook_params, *data)
    for k in grads:
        assert np.max(np.abs(truth.grads[k] - grads[k])) / np.max(np.abs(truth.scale[k])) < 1e-15, k


def test_a_wide_network_is_checked_along_directions():
    spec = ModelSpec(layers=(4, 256, 1))
    x, y = parity(4)
    truth = Oracle(spec).truth(initial_params(spec, InitPreset(1)), x, y)
    assert truth.method == "reverse mode, checked by complex step along 4 directions"


@pytest.mark.in_process("the slip is a monkeypatch of the oracle's code, which its worker would not see")
def test_a_slip_in_the_oracle_stops_the_run_with_exit_3(monkeypatch, capsys, tmp_path, data, notebook_params):
    right = oracle_module._activation_slope
    monkeypatch.setattr(oracle_module, "_activation_slope",
                        lambda *args: right(*args) * (1 + 1e-9))
    with pytest.raises(OracleError, match="reverse mode and complex step disagree entry by entry"):
        Oracle(ModelSpec()).truth(notebook_params, *data)
    out = tmp_path / "r"
    code = compare.main(["--steps", "20", "--check-every", "10", "--impls", "numpy", "--dtype", "float64",
                         "--quiet", "--no-plots", "--out", str(out)])
    err = capsys.readouterr().err.splitlines()
    assert code == 3 and err[-1].startswith("harness.compare: internal error: OracleError: the oracle's reverse mode")
    assert not out.exists()


def test_complex_step_along_directions_takes_an_exact_zero_relu_input_as_the_kink():
    # Found by harness.fuzz: with zero biases the [0, 0, 0] sample gives every layer a pre-activation of exactly
    # 0; perturbing every entry at once gave the relu layer's a real part of O(STEP^2), whose sign picked a
    # branch at random, and the oracle's two methods disagreed by 1e-2.
    from harness.config import RunConfig

    config = RunConfig(layers=(3, 1, 2, 46, 1), activations=("tanh", "tanh", "relu", "sigmoid"), loss="bce",
                       dataset="parity:3", seed=0)
    spec = config.spec("float64")
    x, y = load("parity:3")
    params = initial_params(spec, config.preset())
    oracle = Oracle(spec)
    assert not oracle.full_complex_step(sum(v.size for v in params.values()), x)  # the directional check
    assert any(np.any(z == 0) for z in oracle.preactivations(params, x))
    truth = oracle.truth(params, x, y)  # raised OracleError before
    assert "along 4 directions" in truth.method


@pytest.mark.parametrize("imag", [1e-30, 1e-12, 1e-3])  # complex step's (both below STEP_IMAG_MAX), and not
def test_complex_tanh_of_a_wide_layer_matches_numpys_to_a_few_extended_ulps(imag):
    """Complex step through a wide tanh layer takes tanh by its identity in real functions; NumPy's complex tanh
    is the yardstick, the far tails (|Re z| > 40) and small arrays are NumPy's own."""
    from harness.truth.oracle import FAST_COMPLEX_TANH_MIN, _tanh

    rng = np.random.default_rng(11)
    z = (rng.standard_normal(FAST_COMPLEX_TANH_MIN) * 8).astype(np.longdouble) \
        + 1j * np.longdouble(imag) * rng.standard_normal(FAST_COMPLEX_TANH_MIN)
    z.real[:4] = [60.0, -6000.0, 0.0, 1e-25]
    found, numpy = _tanh(z), np.tanh(z)
    unit = np.finfo(np.longdouble).eps
    assert np.all(np.abs(found.real - numpy.real) <= 8 * unit * np.abs(numpy.real))
    assert np.all(np.abs(found.imag - numpy.imag) <= 8 * unit * np.abs(numpy.imag))
    assert found[0] == numpy[0] and found[1] == numpy[1]
    small = z[:FAST_COMPLEX_TANH_MIN - 1]
    assert np.array_equal(_tanh(small), np.tanh(small))


def test_complex_step_copies_of_one_network_share_their_real_part_and_give_the_same_bits():
    """Copies stepped along several directions differ only in Im z: tanh of their common real part is taken once,
    and each copy gets exactly what it gets alone; a copy whose real part differs is taken whole."""
    from harness.truth.oracle import FAST_COMPLEX_TANH_MIN, _tanh

    rng = np.random.default_rng(12)
    real = (rng.standard_normal(FAST_COMPLEX_TANH_MIN) * 4).astype(np.longdouble)
    z = real + 1j * np.longdouble(1e-30) * rng.standard_normal((3, FAST_COMPLEX_TANH_MIN))
    alone = np.stack([_tanh(copy) for copy in z])
    assert np.array_equal(_tanh(z), alone)
    z.real[2, 7] += 1e-3
    assert np.array_equal(_tanh(z), np.stack([_tanh(copy) for copy in z]))


def test_a_large_networks_truths_are_shared_by_two_oracle_workers_and_match_one():
    from harness.running.remote import PARALLEL_PARAMS, RemoteOracle
    from harness.truth.oracle import Oracle

    spec = ModelSpec(layers=(2, 100, 100, 1), activations=("tanh", "tanh", "sigmoid"))
    assert sum(n * m for n, m in spec.param_shapes().values()) >= PARALLEL_PARAMS
    x, y = load("xor")
    rng = np.random.default_rng(2)
    states = [{k: rng.standard_normal(shape) / 10 for k, shape in spec.param_shapes().items()} for _ in range(3)]
    remote = RemoteOracle(spec)
    remote.prefetch([("truth", (state, x, y), {}) for state in states])
    assert remote._second is not None and remote.seconds > 0
    here = Oracle(spec)
    for state in states:
        far, near = remote.truth(state, x, y), here.truth(state, x, y)
        assert far.loss == near.loss and all(np.array_equal(far.grads[k], near.grads[k]) for k in near.grads)


def test_the_truths_bce_losses_come_with_the_scale_their_rounding_is_judged_by(data):
    """Each step's terms' magnitudes (bce) are those of the state the loss was reported at; sel has none."""
    from harness.truth.oracle import Oracle

    x, y = data
    spec = ModelSpec(layers=(2, 3, 1), activations=("tanh", "sigmoid"), loss="bce")
    params = {"w0": np.array([[0.5, -1.0, 2.0], [1.5, 0.3, -0.7]]), "b0": np.zeros((1, 3)),
              "w1": np.array([[3.0], [-2.0], [4.0]]), "b1": np.zeros((1, 1))}
    oracle = Oracle(spec)
    (losses, _, kept), = oracle.train([params], x, y, 40, [0, 17, 39], np.longdouble)
    terms = oracle.loss_terms[0]
    for step in (0, 17, 39):
        expected = oracle.loss_scale(kept[step], x, y)
        assert abs(terms[step] - expected) <= 1e-17 * expected and terms[step] > losses[step]
    sel = Oracle(ModelSpec(layers=(2, 3, 1), activations=("tanh", "sigmoid")))
    sel.train([params], x, y, 3, [], np.longdouble)
    assert sel.loss_terms == [None]
