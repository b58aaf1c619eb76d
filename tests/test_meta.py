"""harness.meta: run metadata is plain JSON, stable, and survives a missing framework."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

import pytest

from harness import meta
from harness.meta import run_metadata
from tests.conftest import REQUIRE_ALL

TOP_KEYS = {"python", "platform", "machine", "cpu", "cpu_count", "numpy", "threads", "torch", "jax",
            "implementation_settings"}


def assert_plain_json(value, where="metadata"):
    """Only the types the brief allows: json.dumps alone would quietly turn a tuple into a list."""
    if isinstance(value, dict):
        for key, item in value.items():
            assert isinstance(key, str), f"{where}: key {key!r} is not a str"
            assert_plain_json(item, f"{where}.{key}")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            assert_plain_json(item, f"{where}[{i}]")
    else:
        assert value is None or type(value) in (str, int, float, bool), f"{where}: {type(value).__name__}"


def test_round_trips_through_json_and_is_stable():
    first = run_metadata()
    assert_plain_json(first)
    assert json.loads(json.dumps(first)) == first
    # No timestamps or other per-call values: a second call gives the same bytes.
    assert json.dumps(run_metadata(), sort_keys=True) == json.dumps(first, sort_keys=True)


def test_describes_this_interpreter_and_numpy(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    monkeypatch.delenv("XLA_FLAGS", raising=False)
    data = run_metadata()
    assert set(data) == TOP_KEYS
    assert data["python"] == "%d.%d.%d" % sys.version_info[:3]
    assert data["numpy"]["version"] == np.__version__
    assert set(data["threads"]) == set(meta.THREAD_VARS)
    assert data["threads"]["OMP_NUM_THREADS"] == "3" and data["threads"]["XLA_FLAGS"] is None
    blas = data["numpy"]["blas"]
    assert blas is None or set(blas) == {"name", "version"}


def test_torch_and_jax_entries_when_installed():
    data = run_metadata()
    torch, jax = data["torch"], data["jax"]
    missing = [name for name in ("torch", "jax") if not data[name]["available"]]
    if missing:  # CI installs both, so there a missing one fails instead of skipping
        (pytest.fail if REQUIRE_ALL else pytest.skip)(f"not installed: {', '.join(missing)}")
    import torch as real_torch

    assert torch["version"] == real_torch.__version__
    assert torch["num_threads"] == real_torch.get_num_threads() >= 1
    assert torch["float32_matmul_precision"] in {"highest", "high", "medium"}
    assert isinstance(torch["deterministic_algorithms"], bool)
    assert jax["backend"] and jax["devices"] and all(isinstance(d, str) for d in jax["devices"])
    assert isinstance(jax["x64_enabled_globally"], bool)
    assert "jax.enable_x64" in jax["note"]


def test_missing_torch_is_reported_and_the_rest_still_filled(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)  # makes `import torch` raise ImportError
    data = run_metadata()
    assert data["torch"]["available"] is False
    assert "torch" in data["torch"]["reason"] and "\n" not in data["torch"]["reason"]
    assert set(data) == TOP_KEYS
    assert data["numpy"]["version"] == np.__version__ and data["python"] and data["cpu_count"]
    assert "available" in data["jax"]
    json.dumps(data)


def test_missing_jax_is_reported(monkeypatch):
    monkeypatch.setitem(sys.modules, "jax", None)
    info = meta.jax_info()
    assert info == {"available": False, "reason": info["reason"]} and "jax" in info["reason"]


def test_cpu_model_reads_cpuinfo_then_falls_back(tmp_path, monkeypatch):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nmodel name\t: Example CPU @ 3.00GHz\n\nmodel name\t: Other\n")
    assert meta.cpu_model(cpuinfo) == "Example CPU @ 3.00GHz"
    monkeypatch.setattr(meta.platform, "processor", lambda: "arm")
    assert meta.cpu_model(tmp_path / "missing") == "arm"
    cpuinfo.write_text("processor\t: 0\n")
    monkeypatch.setattr(meta.platform, "processor", lambda: "")
    assert meta.cpu_model(cpuinfo) is None


def test_importing_the_module_imports_neither_framework():
    code = "import sys, harness.meta; print(sorted({'torch', 'jax'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[1]).stdout
    assert out.strip() == "[]"
