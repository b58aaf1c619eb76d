"""--matmul-precision: each framework computes its calls under the asked setting (and only its calls), every
float32 run records what was in effect and how far a probe product landed, and a reduced one is named."""
from __future__ import annotations

import json

import jax
import pytest
import torch

from harness import compare
from harness.reporting.summary import reduced_matmuls
from impls.jax_grad import JaxGrad
from impls.spec import ModelSpec
from impls.torch_autograd import TorchAutograd
from impls.torch_common import under_matmul_precision

pytestmark = pytest.mark.slow  # the edit loop leaves this module out: pytest -m 'not slow'


@under_matmul_precision
class _TorchSeen(TorchAutograd):
    """Records torch's float32 matmul precision at the moment its objective is computed."""

    seen: list = []

    def _objective(self, p, x, y):
        self.seen.append(torch.get_float32_matmul_precision())
        return super()._objective(p, x, y)


class _JaxSeen(JaxGrad):
    """Records jax's default matmul precision while its objective is traced."""

    seen: list = []

    def _objective(self, p, x, y):
        self.seen.append(jax.config.jax_default_matmul_precision)
        return super()._objective(p, x, y)


@pytest.mark.parametrize("asked, torch_name, jax_name", [("medium", "medium", "bfloat16"),
                                                          ("high", "high", "tensorfloat32"),
                                                          ("highest", "highest", "float32")])
def test_a_call_runs_under_the_asked_precision_and_leaves_the_process_as_it_was(asked, torch_name, jax_name,
                                                                               data, notebook_params):
    x, y = data
    before = torch.get_float32_matmul_precision()
    spec = ModelSpec(dtype="float32", matmul_precision=asked)
    for cls, name in ((_TorchSeen, torch_name), (_JaxSeen, jax_name)):
        cls.seen.clear()
        impl = cls(spec)
        impl.loss_and_grads(notebook_params, x, y)
        assert cls.seen and set(cls.seen) == {name}, cls
        assert impl.matmul_precision.startswith(name)
    assert torch.get_float32_matmul_precision() == before and jax.config.jax_default_matmul_precision is None


def test_default_leaves_each_framework_as_its_users_get_it(data, notebook_params):
    impl = _TorchSeen(ModelSpec(dtype="float32"))
    _TorchSeen.seen.clear()
    impl.loss_and_grads(notebook_params, *data)
    assert _TorchSeen.seen == [torch.get_float32_matmul_precision()]
    assert impl.matmul_precision.endswith("(torch's default)")
    assert impl.matmul_error < 1e-5  # this CPU computes float32 products in float32


def test_every_float32_run_records_its_setting_and_probe(tmp_path):
    out = tmp_path / "run"
    code = compare.main(["--impls", "torch,jax", "--dtype", "float32", "--steps", "5", "--matmul-precision", "high",
                         "--out", str(out), "--no-plots", "--no-timings", "--quiet"])
    assert code == 0
    meta = json.loads((out / "meta.json").read_text())
    assert meta["config"]["matmul_precision"] == "high"
    recorded = meta["environment"]["implementation_settings"]["matmul_precision"]
    assert recorded["torch float32"]["setting"] == "high"
    assert recorded["jax float32"]["setting"] == "tensorfloat32 on cpu"
    assert all(0 < r["probe_rel_error"] < 1e-5 for r in recorded.values())
    assert "## Float32 matmuls" in (out / "summary.md").read_text()


def test_a_run_whose_products_are_reduced_is_named_with_the_way_out():
    matmuls = {"jax float32": {"setting": "DEFAULT (XLA's per device) on gpu", "probe_rel_error": 4.1e-4},
               "torch float32": {"setting": "highest (torch's default)", "probe_rel_error": 3.6e-7}}
    lines = reduced_matmuls(matmuls)
    assert len(lines) == 1 and lines[0].startswith("jax float32: float32 matmuls compute below float32")
    assert "--matmul-precision highest" in lines[0]


def test_an_unknown_precision_is_one_line_and_exit_2(tmp_path, capsys):
    assert compare.main(["--matmul-precision", "fast", "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert "unknown matmul precision 'fast'" in err and err.count("\n") == 1
    assert not (tmp_path / "x").exists()
