"""torch-loop against numpy through segment and call boundaries, the same arithmetic however a run is cut,
Unavailable where the loop cannot be built, and a planted wrong update caught by the harness.

The loop compiles once per test process, in the module-scoped fixture (about 7 s here, 15-18 s where
Inductor's cache lacks its C++ build): impls.torch_loop keeps compiled loops per (class, spec, data shape),
so every later instance of the notebook's net in the process reuses it, the in-process compare's included.
"""
import contextlib

import numpy as np
import pytest
import torch

from harness.checks.arrays import assert_close
from harness.compare import compare
from harness.config import RunConfig
from harness.data import xor
from harness.init import NOTEBOOK, initial_params
from harness.truth.tolerances import SAME_MATH_F64
from impls import torch_loop, torch_pool
from impls.interface import Unavailable
from impls.spec import ModelSpec
from tests.conftest import make

pytestmark = pytest.mark.slow  # the edit loop leaves this module out: pytest -m 'not slow'; -n 2 runs it whole on
# one worker (tests/conftest.py's SHARED_FIXTURES), so its module-scoped fixture is made once

SPEC = ModelSpec()
STEPS = 37
RECORD = [0, 5, 16, 37]  # segments of 5, 11 and 21 steps: each ends in the single-step remainder loop


@pytest.fixture(scope="module")
def trained():
    """(x, y, initial params, torch-loop's run of STEPS with RECORD): the one compile of this module."""
    x, y = xor()
    params = initial_params(SPEC, NOTEBOOK)
    for array in params.values():
        array.flags.writeable = False  # any in-place write to the caller's arrays raises
    return x, y, params, make("torch-loop", SPEC).train(params, x, y, STEPS, RECORD)


def test_the_interface_contract_on_the_same_compile(trained):
    """What tests/test_interface.py checks of every other implementation's train(), on this module's run
    (its own compile there would cost 7-18 s per dtype)."""
    x, y, params, run = trained
    assert run.losses.shape == (STEPS,) and np.all(np.isfinite(run.losses))
    assert sorted(run.checkpoints) == RECORD
    for name, value in params.items():
        np.testing.assert_array_equal(run.checkpoints[0][name], value)
        np.testing.assert_array_equal(run.checkpoints[STEPS][name], run.params[name])
        assert not np.shares_memory(run.checkpoints[STEPS][name], run.params[name])  # a copy, not the buffer
        assert not np.shares_memory(run.params[name], value) and run.params[name].dtype == np.float64


def test_losses_checkpoints_and_final_params_match_numpy(trained):
    x, y, params, run = trained
    ref = make("numpy", SPEC).train(params, x, y, STEPS, RECORD)
    assert sorted(run.checkpoints) == RECORD and run.losses.shape == (STEPS,)
    for step in RECORD:
        assert_close(run.checkpoints[step], ref.checkpoints[step], SAME_MATH_F64, f"torch-loop step {step}")
    assert_close(run.params, ref.checkpoints[STEPS], SAME_MATH_F64, "torch-loop final params")
    assert_close(run.losses, ref.losses, SAME_MATH_F64, "torch-loop per-step loss")
    assert np.all(np.diff(run.losses) < 0)  # each entry is its own step's loss, not a repeat or a zero


def test_every_way_of_cutting_a_run_is_the_same_arithmetic(trained):
    """Stops, calls of a few steps and the 8-step unroll change where Python steps in, never a bit of a result."""
    x, y, params, run = trained
    whole = make("torch-loop", SPEC)
    plain = whole.train(params, x, y, STEPS)
    short_calls = make("torch-loop", SPEC)
    short_calls.steps_per_call = 3  # every step in the single-step loop; the plain run takes 32 in the unrolled one
    cut = short_calls.train(params, x, y, STEPS, [0, 1, 2, 9, 36])
    for other in (plain, cut):
        np.testing.assert_array_equal(other.losses, run.losses)
        for name in run.params:
            np.testing.assert_array_equal(other.params[name], run.params[name])
    for name in run.params:
        np.testing.assert_array_equal(cut.checkpoints[0][name], params[name])
    assert whole.compile_seconds == 0.0 and short_calls.compile_seconds == 0.0  # the fixture's loop, reused


def test_a_loop_that_cannot_compile_is_unavailable_with_its_reason(monkeypatch):
    def no_compiler(fn, **options):
        def compiled(*args):
            raise RuntimeError("no C++ compiler\nsecond line")
        return compiled

    monkeypatch.setattr(torch, "compile", no_compiler)
    spec = ModelSpec(layers=(2, 3, 1))
    impl, compiled = make("torch-loop", spec), dict(torch_loop._LOOPS)
    with pytest.raises(Unavailable) as refused:
        impl.train(initial_params(spec), *xor(), 3)
    assert str(refused.value) == (f"torch-loop: torch {torch.__version__} cannot compile the training loop here"
                                  " (RuntimeError: no C++ compiler)")
    assert torch_loop._LOOPS == compiled  # nothing half-built is kept


def test_no_cpp_compiler_is_refused_at_construction(monkeypatch):
    from torch._inductor import cpp_builder

    def missing():
        raise FileNotFoundError("g++")

    torch_loop._cannot_compile.cache_clear()
    monkeypatch.setattr(cpp_builder, "get_cpp_compiler", missing)
    try:
        with pytest.raises(Unavailable, match=r"^torch-loop: torch .* cannot build a compiled loop here"
                                              r" \(FileNotFoundError: g\+\+\)$"):
            torch_loop.TorchLoop(SPEC)
    finally:
        torch_loop._cannot_compile.cache_clear()


@pytest.mark.in_process("the wrong rate is a monkeypatch, and the module's compiled loop is reused only here")
def test_a_wrong_update_is_caught_and_blamed_on_torch_loop(monkeypatch, trained):
    """Negative control: the loop steps with 1.001 * lr (its own compiled loop, reused, fed a wrong rate)."""
    right = torch_loop.TorchLoop._rate
    monkeypatch.setattr(torch_loop.TorchLoop, "_rate", lambda self: right(self) * 1.001)
    outcome = compare(RunConfig(impls=("numpy", "torch-loop"), dtype=("float64",), steps=200, check_every=100,
                                quiet=True), timings=False)
    failed = {(v.impl, v.dtype) for v in outcome.verdicts if not v.passed}
    assert failed == {("torch-loop", "float64")}, outcome.failures
    assert outcome.failures and all(line.split(": ", 1)[1].startswith("torch-loop float64")
                                    for line in outcome.failures), outcome.failures
    assert any("update of" in line for line in outcome.failures), outcome.failures


def test_the_allocator_pool_changes_no_bit_and_is_in_effect_only_inside_train(monkeypatch, trained):
    """torch-loop trains on impls/torch_pool.cpp's allocator, installed for its loop only: the same run on
    torch's own allocator is bit for bit the same; the pool hands freed blocks out again; it is gone after."""
    x, y, params, run = trained
    assert torch_pool.unavailable() is None, torch_pool.unavailable()  # this machine builds it (CI does too)
    assert not torch_pool.active()
    seen = []
    right = torch_loop.TorchLoop._named
    monkeypatch.setattr(torch_loop.TorchLoop, "_named", lambda self, flat: seen.append(torch_pool.active())
                        or right(self, flat))
    pooled = make("torch-loop", SPEC).train(params, x, y, STEPS, RECORD)
    assert seen[:len(RECORD)] == [True] * len(RECORD) and seen[-1] is False and not torch_pool.active()
    with torch_pool.pooled() as used:
        first = torch.empty(5, dtype=torch.float64)
        address = first.data_ptr()
        del first
        assert used and torch.empty(5, dtype=torch.float64).data_ptr() == address  # the freed block, again
    assert not torch_pool.active()
    monkeypatch.setattr(torch_pool, "pooled", contextlib.nullcontext)
    plain = make("torch-loop", SPEC).train(params, x, y, STEPS, RECORD)
    for other in (pooled, plain):
        np.testing.assert_array_equal(other.losses, run.losses)
        for step in RECORD:
            for name in params:
                np.testing.assert_array_equal(other.checkpoints[step][name], run.checkpoints[step][name])


def test_without_the_pool_torch_loop_trains_the_same_and_says_why(monkeypatch, trained):
    """No compiler for the pool: pooled() is a no-op, unavailable() gives the compiler's reason."""
    from torch._inductor import cpp_builder

    def missing():
        raise FileNotFoundError("g++")

    x, y, params, run = trained
    torch_pool._library.cache_clear()
    monkeypatch.setattr(cpp_builder, "get_cpp_compiler", missing)
    try:
        assert torch_pool.unavailable() == "FileNotFoundError: g++"
        with torch_pool.pooled() as used:
            assert not used and not torch_pool.active()
        again = make("torch-loop", SPEC).train(params, x, y, STEPS, RECORD)
        np.testing.assert_array_equal(again.losses, run.losses)
    finally:
        torch_pool._library.cache_clear()
