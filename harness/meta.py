"""The machine and the numeric settings a run's results and timings depend on, as plain JSON data.

torch and jax are imported inside the functions, so this module imports on a
machine that has neither. Nothing here is a timestamp: two runs on the same
setup give identical dicts, and the caller adds a date if it wants one.
"""
from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any

import numpy as np

THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "XLA_FLAGS",
               "XLA_PYTHON_CLIENT_PREALLOCATE")
CPUINFO = Path("/proc/cpuinfo")
JAX_NOTE = "the jax implementation scopes x64 per call with jax.enable_x64; see impls/jax_grad.py"


FRAMEWORKS = ("torch", "jax")


def framework_info(loaded: set[str] | frozenset[str]) -> dict[str, Any]:
    """The torch and jax settings of this process, for the frameworks in ``loaded`` only (no import)."""
    return {name: INFO[name]() for name in FRAMEWORKS if name in loaded}


def run_metadata(known: dict[str, Any] | None = None) -> dict[str, Any]:
    """Python, OS, CPU, thread settings and the numpy / torch / jax configuration, JSON-serialisable.

    ``known`` holds framework settings read where the frameworks ran (an implementation's worker);
    a framework not in it is imported here to be described."""
    known = known or {}
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "numpy": numpy_info(),
        "threads": {name: os.environ.get(name) for name in THREAD_VARS},
        "torch": known["torch"] if "torch" in known else torch_info(),
        "jax": known["jax"] if "jax" in known else jax_info(),
        # what an implementation reports of its own framework (keras: version, backend, floatx)
        "implementation_settings": {k: v for k, v in known.items() if k not in FRAMEWORKS},
    }


def cpu_model(cpuinfo: Path = CPUINFO) -> str | None:
    """The first "model name" in ``cpuinfo`` (Linux), else platform.processor(), else None."""
    try:
        for line in cpuinfo.read_text(errors="replace").splitlines():
            key, sep, value = line.partition(":")
            if sep and key.strip() == "model name" and value.strip():
                return value.strip()
    except OSError:  # no /proc on macOS or Windows
        pass
    return platform.processor() or None  # "" means unknown


def numpy_info() -> dict[str, Any]:
    """numpy's version and the BLAS and LAPACK it was built against (None where not reported)."""
    return {"version": str(np.__version__), "blas": _build_dependency("blas"), "lapack": _build_dependency("lapack")}


def _build_dependency(name: str) -> dict[str, str | None] | None:
    # show_config(mode="dicts") is numpy >= 1.26 and its layout is not a stable API, so any
    # surprise yields None: metadata must never be the reason a run fails.
    try:
        dep = np.show_config(mode="dicts")["Build Dependencies"][name]
        return {"name": _str_or_none(dep.get("name")), "version": _str_or_none(dep.get("version"))}
    except Exception:
        return None


def torch_info() -> dict[str, Any]:
    """torch's version and the thread / precision / determinism settings, or why it is unavailable."""
    try:
        import torch
    except ImportError as exc:
        return _unavailable(exc)
    return {
        "available": True,
        "version": str(torch.__version__),  # a TorchVersion (str subclass) otherwise
        "num_threads": torch.get_num_threads(),
        "num_interop_threads": torch.get_num_interop_threads(),
        "float32_matmul_precision": torch.get_float32_matmul_precision(),
        "deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
    }


def jax_info() -> dict[str, Any]:
    """jax's version, backend, devices and global precision settings, or why it is unavailable."""
    try:
        import jax
        import jaxlib
    except ImportError as exc:
        return _unavailable(exc)
    return {
        "available": True,
        "version": str(jax.__version__),
        "jaxlib_version": getattr(jaxlib, "__version__", None),
        "backend": jax.default_backend(),
        "devices": [str(device) for device in jax.devices()],
        "x64_enabled_globally": bool(jax.config.jax_enable_x64),
        "default_matmul_precision": _str_or_none(jax.config.jax_default_matmul_precision),
        "note": JAX_NOTE,
    }


def _unavailable(exc: ImportError) -> dict[str, Any]:
    # The first line only: some import errors carry a multi-line hint that would clutter a report.
    lines = str(exc).strip().splitlines()
    reason = lines[0] if lines else type(exc).__name__
    return {"available": False, "reason": reason}


def _str_or_none(value: object) -> str | None:
    """``value`` as a str, keeping None; config values can be enums or other non-JSON objects."""
    return None if value is None else str(value)


INFO = {"torch": torch_info, "jax": jax_info}
