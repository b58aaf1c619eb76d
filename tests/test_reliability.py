"""The harness never misleads: bad input, faulty implementations, blow-ups, interruptions, determinism."""
import json
import signal
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from harness import compare
from harness.reporting import results
from harness.config import parse_args
from tests.conftest import Lines, descendants, kill_group, wait_until

pytestmark = pytest.mark.slow  # the edit loop leaves this module out: pytest -m 'not slow'

ROOT = Path(__file__).resolve().parent.parent
SMALL = ["--steps", "200", "--check-every", "100", "--quiet", "--no-plots"]

BAD_INPUT = [
    (["--lr", "0"], "lr must be a finite number > 0, got 0.0"),
    (["--lr", "-0.1"], "got -0.1"),
    (["--lr", "nan"], "got nan"),
    (["--lr", "inf"], "got inf"),
    (["--steps", "0"], "--steps must be >= 1, got 0"),
    (["--steps", "-5"], "--steps must be >= 1, got -5"),
    (["--steps", "2.5"], "invalid int value: '2.5'"),
    (["--layers", "2,0,1"], "layers must be two or more sizes >= 1, got (2, 0, 1)"),
    (["--layers", "3,4,1"], "--layers 3,4,1 does not fit xor: it needs 2 inputs and 1 output"),
    (["--layers", "2,4,2"], "--layers 2,4,2 does not fit xor"),
    (["--impls", "numpy,tensorflow"], "unknown implementation 'tensorflow'"),
    (["--activations", "tanh,softmax"], "unknown activation 'softmax'"),
    (["--loss", "hinge"], "unknown loss 'hinge'"),
    (["--reduction", "max"], "unknown reduction 'max'"),
    (["--dtype", "float8"], "unknown dtype 'float8'"),
    (["--dataset", "mnist"], "unknown dataset 'mnist'"),
    (["--impl", "nocolon"], "--impl 'nocolon' is not of the form module:attr"),
    (["--impl", "no_such_module:Impl"], "cannot import no_such_module"),
    (["--check-every", "300", "--steps", "200"], "--check-every must be in 1..200 (--steps), got 300"),
    (["--time-limit", "0"], "--time-limit must be a finite number of seconds > 0, got 0.0"),
    (["--loss", "bce", "--activations", "tanh,tanh"], "loss bce needs a sigmoid output layer, got tanh"),
    (["--seed", "-3"], "--seed must be in 0..2**32-1, got -3"),
    (["--device", "tpu"], "unknown device 'tpu'; choose from cpu, cuda"),
    (["--bogus"], "unrecognized arguments: --bogus"),
]


@pytest.mark.parametrize("argv, message", BAD_INPUT, ids=[" ".join(a) for a, _ in BAD_INPUT])
def test_bad_input_is_one_line_exit_2_and_nothing_written(tmp_path, capsys, argv, message):
    out = tmp_path / "run"
    assert compare.main([*argv, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("harness.compare: error: ") and err.count("\n") == 1
    assert message in err
    assert list(tmp_path.iterdir()) == []


def test_an_existing_or_unwritable_output_folder_is_bad_input(tmp_path, capsys):
    (tmp_path / "taken").mkdir()
    assert compare.main(["--out", str(tmp_path / "taken")]) == 2
    (tmp_path / "a-file").write_text("x")
    assert compare.main(["--out", str(tmp_path / "a-file" / "run")]) == 2
    err = capsys.readouterr().err.splitlines()
    assert "exists; pass --overwrite" in err[0] and "is a file, not a folder" in err[1]


def test_a_blow_up_is_reported_per_run_without_nan_in_the_tables(tmp_path):
    out = tmp_path / "run"
    code = compare.main(["--activations", "tanh,identity", "--lr", "10", "--impls", "numpy,torch,jax", *SMALL, "--no-timings",
                         "--out", str(out)])
    assert code == 0  # every run overflows where the reference runs in its dtype do, or where rounding explains it
    div = pd.read_csv(out / "divergence.csv", keep_default_na=False)
    f64 = div[div.dtype == "float64"]
    assert set(f64.nonfinite_at) == set(f64.reference_nonfinite_at) == {68}
    assert set(div.oracle_nonfinite_at) == {""}  # longdouble's range reaches 1e4932: the truth stays finite
    assert (div[div.dtype == "float32"].nonfinite_at.astype(int) < 68).all()  # float32 overflows sooner
    for path in out.glob("*.csv"):
        assert "nan" not in path.read_text().lower(), path.name
    assert "## Non-finite losses" in (out / "summary.md").read_text()


@pytest.mark.parametrize("cls, fault", [
    ("RaisesMidRun", "train() raised RuntimeError: out of cheese"),
    ("HangsMidRun", "train() ran past the 8 s time limit and was stopped"),
    ("MisShapedWeightGrad", "loss_and_grads() returned w0 of shape (4, 2), expected (2, 4)"),
    ("WrongNames", "loss_and_grads() returned names ['b0', 'w0', 'w1'], expected ['b0', 'b1', 'w0', 'w1']"),
    ("ReturnsNaN", "forward() returned non-finite values in predictions"),
    ("MutatesInputs", "loss_and_grads() changed its input b0"),
    ("WrongDtype", "loss_and_grads() returned w0 as float32, expected float64"),
])
def test_a_faulty_implementation_is_named_and_the_rest_still_compared(tmp_path, capsys, cls, fault):
    out = tmp_path / "run"
    code = compare.main(["--impls", "numpy,jax", "--dtype", "float64", "--impl", f"tests.broken:{cls}",
                         # 8 s: a hang is stopped soon, while jax's first compile on a loaded machine fits
                         "--time-limit", "8", *SMALL, "--no-timings", "--out", str(out)])
    assert code == 1
    assert fault in capsys.readouterr().out
    final = pd.read_csv(out / "final.csv")
    assert list(final.impl) == ["numpy", "jax"]


@pytest.mark.in_process("torch and jax are made missing in this process's sys.modules, not in a worker's")
def test_missing_frameworks_are_unavailable_and_the_rest_runs(tmp_path, monkeypatch):
    for framework, module in (("torch", "impls.torch_autograd"), ("jax", "impls.jax_grad")):
        monkeypatch.setitem(sys.modules, framework, None)
        monkeypatch.delitem(sys.modules, module, raising=False)
    out = tmp_path / "run"
    assert compare.main([*SMALL, "--out", str(out)]) == 0
    meta = json.loads((out / "meta.json").read_text())
    assert meta["skipped"]["torch float64"].startswith("torch: torch is not installed")
    assert meta["skipped"]["jax float32"].startswith("jax: jax is not installed")
    assert meta["environment"]["torch"]["available"] is False
    assert set(pd.read_csv(out / "final.csv").impl) == {"numpy", "numpy-fd"}


@pytest.mark.parametrize("signum, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_an_interrupted_run_writes_nothing_and_says_so(tmp_path, signum, code):
    out = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "harness.compare", "--impls", "numpy", "--steps", "2000000",
                             "--check-every", "1000", "--out", str(out)], cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    err = Lines(proc.stderr)
    try:
        started = err.wait_for("", 60, "its first line")  # once the signal handlers are in place
        assert started.startswith("harness.compare: 2,000,000 steps of numpy")
        # said once the workers are built and calibrated, as the trajectories start: training under way
        err.wait_for("harness.compare: estimated ", 120, "the run's estimate")
        proc.send_signal(signum)
        assert proc.wait(timeout=60) == code
        assert "interrupted; nothing was written" in err.rest(60)
        assert list(tmp_path.iterdir()) == []
    finally:
        kill_group(proc)  # what a failed check left running


def test_reading_back_validates_the_folder(tmp_path):
    out = tmp_path / "run"
    assert compare.main(["--impls", "numpy", "--dtype", "float64", *SMALL, "--out", str(out)]) == 0
    config = compare.run_config(parse_args(["--impls", "numpy", "--dtype", "float64", *SMALL]))
    meta, tables = results.read(out, config)
    assert meta["config"]["steps"] == 200 and "final" in tables
    with pytest.raises(results.ResultsError, match="different configuration \\(differs in steps\\)"):
        results.read(out, {**config, "steps": 300})
    meta["format_version"] = results.FORMAT_VERSION + 1
    (out / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(results.ResultsError, match="newer than this harness reads"):
        results.read(out)
    (out / "meta.json").unlink()
    with pytest.raises(results.ResultsError, match="has no meta.json"):
        results.read(out)


def test_written_files_are_only_csv_json_markdown_and_png(tmp_path):
    out = tmp_path / "run"
    compare.main(["--impls", "numpy", "--dtype", "float64", "--steps", "50", "--check-every", "25", "--quiet",
                  "--out", str(out)])
    assert {p.suffix for p in out.iterdir()} == {".csv", ".json", ".md", ".png"}


def _without_timings(summary: str) -> str:
    head, _, rest = summary.partition("## Timings")
    return head + rest.partition("\n## ")[2]


def test_two_runs_give_identical_non_timing_outputs(tmp_path):
    argv = ["--impls", "numpy,torch,jax", "--steps", "200", "--check-every", "100", "--quiet"]
    a, b = tmp_path / "a", tmp_path / "b"
    assert compare.main([*argv, "--out", str(a)]) == 0
    assert compare.main([*argv, "--out", str(b)]) == 0
    timing_files = {"timings.csv", "timings.png", "summary.md"}
    names = sorted(p.name for p in a.iterdir())
    assert names == sorted(p.name for p in b.iterdir())
    for name in names:
        if name not in timing_files | {"meta.json"}:
            assert (a / name).read_bytes() == (b / name).read_bytes(), name
    meta_a, meta_b = (json.loads((d / "meta.json").read_text()) for d in (a, b))
    assert set(meta_a.pop("work")) == set(meta_b.pop("work")) == {"trajectories_s", "oracle_s", "truth_s",
                                                                  "slots", "floor_s", "oracle_checks_s"}
    memory_a, memory_b = meta_a.pop("memory"), meta_b.pop("memory")  # measured peaks vary; what was measured not
    assert set(memory_a["peak_bytes"]) == set(memory_b["peak_bytes"]) and memory_a.pop("peak_bytes")
    assert memory_a == {k: v for k, v in memory_b.items() if k != "peak_bytes"}  # the estimate
    assert meta_a == meta_b  # all but the seconds it took and the memory it held
    assert _without_timings((a / "summary.md").read_text()) == _without_timings((b / "summary.md").read_text())


def test_asking_for_cuda_without_a_gpu_is_bad_usage(tmp_path, capsys):
    from harness.config import cuda_missing

    if cuda_missing() is None:
        pytest.skip("this machine has a CUDA device")
    assert compare.main(["--device", "cuda", "--out", str(tmp_path / "r")]) == 2
    assert "--device cuda: no CUDA device here (" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_the_device_is_recorded_in_the_metadata(tmp_path):
    out = tmp_path / "run"
    assert compare.main(["--impls", "numpy,torch,jax", "--dtype", "float64", "--device", "cpu", *SMALL, "--no-timings",
                         "--out", str(out)]) == 0
    assert json.loads((out / "meta.json").read_text())["config"]["device"] == "cpu"


def test_results_in_worker_processes_equal_those_computed_here(tmp_path, monkeypatch):
    """Every implementation and the oracle run in workers; the results must not depend on where they ran."""
    from harness.running import remote

    argv = ["--impls", "numpy,torch,jax", "--dtype", "float64", "--steps", "200", "--check-every", "100", "--quiet",
            "--no-plots"]
    monkeypatch.setattr(remote, "ENABLED", False)
    assert compare.main([*argv, "--out", str(tmp_path / "here")]) == 0
    monkeypatch.setattr(remote, "ENABLED", True)
    assert compare.main([*argv, "--out", str(tmp_path / "workers")]) == 0
    for name in ("trajectory.csv", "parameters.csv", "gradients.csv", "final.csv", "divergence.csv"):
        assert (tmp_path / "here" / name).read_bytes() == (tmp_path / "workers" / name).read_bytes(), name


@pytest.mark.in_process("the timing is patched here, where a worker would not see it")
def test_a_timing_that_raises_is_a_fault_of_that_implementation_and_its_trajectory_stands(monkeypatch):
    from harness.config import RunConfig
    from harness.running import timing

    def broken(impl, *args):
        if impl.name == "numpy-fd":
            raise RuntimeError("clock went backwards")
        return real(impl, *args)

    real = timing.measure
    monkeypatch.setattr(timing, "measure", broken)
    outcome = compare.compare(RunConfig(impls=("numpy", "numpy-fd"), dtype=("float64",), steps=50, quiet=True))
    lines = outcome.failures
    assert any("numpy-fd float64" in line and "timing raised RuntimeError: clock went backwards" in line
               for line in lines), lines
    timed = set(outcome.tables["timings"]["impl"])
    assert timed == {"numpy"} and set(outcome.tables["final"]["impl"]) == {"numpy", "numpy-fd"}


def test_a_network_whose_truth_takes_split_products_reruns_identically(tmp_path):
    """8-64-64-1 on 256 samples: the oracle's 256 x 65 x 64 products go through float64 slices (harness.truth.
    products), whose BLAS sums are exact, so every non-timing output is the same bytes on a rerun."""
    from harness.truth.products import worth_splitting

    assert worth_splitting(256, 65, 64)
    argv = ["--impls", "numpy", "--dtype", "float64", "--layers", "8,64,64,1", "--activations", "tanh,tanh,sigmoid",
            "--dataset", "parity:8", "--steps", "10", "--quiet", "--no-plots"]
    a, b = tmp_path / "a", tmp_path / "b"
    assert compare.main([*argv, "--out", str(a)]) == 0
    assert compare.main([*argv, "--out", str(b)]) == 0
    for name in ("gradients.csv", "trajectory.csv", "parameters.csv", "final.csv", "verdicts.csv"):
        assert (a / name).read_bytes() == (b / name).read_bytes(), name


@pytest.mark.parametrize("argv, said", [
    (["harness.sweep", "--axes", "width", "--impls", "numpy", "--dtype", "float64", "--steps", "200000"],
     "harness.sweep: "),
    (["harness.fuzz", "--impls", "numpy", "--dtype", "float64", "--max-examples", "1000"], "harness.fuzz: up to")])
def test_sweep_and_fuzz_answer_sigterm_with_143_and_write_nothing(tmp_path, argv, said):
    """The shared signal handling (harness.cli), as compare's above."""
    out = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", *argv, "--out", str(out)], cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    err = Lines(proc.stderr)
    try:
        started = err.wait_for("", 60, "its first line")  # once the signal handlers are in place
        assert started.startswith(said), started
        wait_until(lambda: descendants(proc.pid), 120, "the first comparison's workers")  # work under way
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=120)  # a loaded machine: the workers are stopped and reaped first
        rest = err.rest(60)
        assert code == 143, rest
        assert "interrupted; nothing was written" in rest
        assert list(tmp_path.iterdir()) == []
    finally:
        kill_group(proc)  # what a failed check left running
