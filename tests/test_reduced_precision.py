"""--dtype bfloat16 and float16: the implementations that run them follow the spec's arithmetic (elementwise in
the dtype, products and sums accumulated in float32), are judged against the oracle's own run in that dtype,
catch planted bugs, and a run whose check could not have failed says so instead of passing."""
from __future__ import annotations

import json

import ml_dtypes
import numpy as np
import pandas as pd
import pytest

from harness import compare
from impls.registry import REDUCED, create, supports
from impls.spec import ModelSpec

pytestmark = pytest.mark.slow  # the edit loop leaves this module out: pytest -m 'not slow'

CONCLUSIVE = ["--steps", "500", "--lr", "0.1"]  # the notebook's net moves well past bfloat16's rounding by then


def _run(tmp_path, *argv):
    out = tmp_path / "run"
    code = compare.main([*argv, "--out", str(out), "--overwrite", "--no-plots", "--no-timings", "--quiet"])
    return code, pd.read_csv(out / "verdicts.csv"), (out / "summary.md").read_text()


@pytest.mark.parametrize("name", REDUCED)
@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_every_array_crosses_the_boundary_in_the_reduced_dtype(name, dtype, data, notebook_params):
    if name == "torch-compile":
        pytest.skip("compiles for seconds; its boundary is torch's, checked here")
    impl = create(name, ModelSpec(dtype=dtype))
    x, y = data
    loss, grads = impl.loss_and_grads({k: v.astype(dtype) for k, v in notebook_params.items()}, x, y)
    assert np.isfinite(loss) and {g.dtype for g in grads.values()} == {np.dtype(dtype)}
    assert impl.forward(notebook_params, x).dtype == np.dtype(dtype)


def test_the_notebook_net_passes_in_bfloat16_and_float16(tmp_path):
    code, verdicts, _ = _run(tmp_path, "--impls", "numpy,torch,jax", "--dtype", "bfloat16,float16", *CONCLUSIVE)
    assert code == 0 and set(verdicts.verdict) == {"pass"} and len(verdicts) == 6


def test_a_run_whose_updates_round_away_is_inconclusive_not_a_pass(tmp_path):
    code, verdicts, summary = _run(tmp_path, "--impls", "numpy", "--dtype", "bfloat16", "--steps", "200")
    assert code == 1 and list(verdicts.verdict) == ["inconclusive"]
    assert "**INCONCLUSIVE** (numpy bfloat16)" in summary and "a run that never trained would pass" in summary
    found = json.loads((tmp_path / "run" / "meta.json").read_text())["environment"]["implementation_settings"]["reduced_precision"]["bfloat16"]
    assert found["lost"] > found["updates"] / 2  # why: most of its updates round away


@pytest.mark.parametrize("planted", ["TanhPrimeWrong", "LrDoubledInLoop", "SignErrorLayer0"])
def test_a_planted_bug_fails_in_bfloat16_blamed_on_it_alone(tmp_path, planted):
    code, verdicts, _ = _run(tmp_path, "--impls", "numpy", "--impl", f"tests.broken:{planted}",
                             "--dtype", "bfloat16", *CONCLUSIVE)
    status = dict(zip(verdicts.impl, verdicts.verdict))
    assert code == 1 and status.pop("numpy") == "pass" and list(status.values()) == ["fail"], status


def test_the_others_decline_with_a_reason(tmp_path):
    assert not supports("numpy-fast", ModelSpec(dtype="bfloat16")) and supports("torch-nn", ModelSpec(dtype="float16"))
    code, verdicts, summary = _run(tmp_path, "--impls", "numpy,numpy-fast", "--dtype", "bfloat16", *CONCLUSIVE)
    assert code == 0 and list(verdicts.impl) == ["numpy"]
    assert "numpy-fast bfloat16: numpy-fast has no bfloat16" in summary


def test_numpy_accumulates_products_in_float32_and_rounds_once():
    from impls.np_notebook import matmul

    rng = np.random.default_rng(0)
    a, b = (rng.standard_normal(s).astype(ml_dtypes.bfloat16) for s in ((8, 512), (512, 8)))
    exact = (a.astype(np.float32) @ b.astype(np.float32)).astype(ml_dtypes.bfloat16)
    assert matmul(a, b).dtype == ml_dtypes.bfloat16 and np.array_equal(matmul(a, b), exact)


def test_a_float16_adam_step_that_rounding_decides_is_not_judged(tmp_path):
    # fuzz seed 60317: Adam's v of a small gradient is a float16 subnormal (and eps 1e-8 rounds to 0), so the
    # first step of such an entry is 28 % from the exact rule's in keras: rounding's, not a bug (once a false alarm)
    code, verdicts, summary = _run(tmp_path, "--impls", "numpy,keras", "--layers", "2,1,1,22,1", "--activations",
                                   "tanh,tanh,tanh,sigmoid", "--loss", "bce", "--dtype", "float16", "--seed", "0",
                                   "--steps", "20", "--check-every", "2", "--optimizer", "amsgrad")
    assert "fail" not in set(verdicts.verdict), summary



def test_a_frameworks_float16_adam_rounds_within_its_constants_and_its_arithmetic(tmp_path):
    # fuzz seed 60318: keras's float16 AMSGrad step is 3.1e-2 from the exact rule's, 2.6e-2 from how it rounds
    # its constants and 0.5e-2 from float16 arithmetic; the two are allowed together (IN_DTYPE_ORDER)
    code, verdicts, summary = _run(tmp_path, "--impls", "keras", "--layers", "2,23,46,42,1", "--activations",
                                   "identity,relu,sigmoid,tanh", "--reduction", "mean", "--dtype", "float16",
                                   "--seed", "10683471", "--lr", "0.0001", "--steps", "32", "--check-every", "3",
                                   "--optimizer", "amsgrad")
    assert "fail" not in set(verdicts.verdict), summary
