"""Helpers the ``torch`` implementations share: the matmul precision of a call, and own code objects for
the compiled ones (torch-compile, torch-loop)."""
from __future__ import annotations

import functools
import types
from contextlib import contextmanager
from typing import Callable, Iterator

import ml_dtypes
import numpy as np
import torch

from impls.interface import matmul_error
from impls.spec import ModelSpec


@contextmanager
def matmul_precision(spec: ModelSpec) -> Iterator[None]:
    """The spec's float32 matmul precision for this call only (torch's setting is process-wide): "default"
    leaves torch's own; the others are torch.set_float32_matmul_precision's names ("highest": float32;
    "high": TF32 where the device has it, else bfloat16 passes; "medium": bfloat16 passes)."""
    if spec.matmul_precision == "default":
        yield
        return
    before = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision(spec.matmul_precision)
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(before)


def exchangeable(a: np.ndarray) -> np.ndarray:
    """``a`` as torch.tensor can read it: a bfloat16 array through float32, which holds every bfloat16 exactly."""
    a = np.asarray(a)
    return a.astype(np.float32) if a.dtype == ml_dtypes.bfloat16 else a


def host(t: torch.Tensor) -> np.ndarray:
    """A fresh NumPy array of ``t`` in its own dtype (a bfloat16 tensor through float32, exactly)."""
    t = t.detach().cpu()
    if t.dtype == torch.bfloat16:
        return t.float().numpy().astype(ml_dtypes.bfloat16)
    return t.numpy().copy()


CALLS = ("forward", "loss_and_grads", "train", "kernel")  # the interface's calls, each under the spec's precision


def under_matmul_precision(cls: type) -> type:
    """``cls`` with each interface call it defines itself run under its spec's matmul precision, and
    ``matmul_precision`` / ``matmul_error`` (what is in effect, as measured) set by its constructor."""
    for name in CALLS:
        if name in vars(cls):
            setattr(cls, name, _under(vars(cls)[name]))
    if "__init__" in vars(cls):
        init = vars(cls)["__init__"]

        @functools.wraps(init)
        def __init__(self, spec: ModelSpec, *args, **kwargs) -> None:
            init(self, spec, *args, **kwargs)
            if not hasattr(self, "matmul_error"):  # a decorated subclass's super().__init__ measured it already
                self.matmul_precision, self.matmul_error = matmul_setting(self.spec, self.device)
        cls.__init__ = __init__
    return cls


def _under(method: Callable) -> Callable:
    @functools.wraps(method)
    def call(self, *args, **kwargs):
        with matmul_precision(self.spec):
            return method(self, *args, **kwargs)
    return call


def matmul_setting(spec: ModelSpec, device: torch.device) -> tuple[str, float | None]:
    """(what float32 matmuls run under, as torch names it; their measured error on ``device``), for a float32
    spec; float64 products are never reduced: ("float64", None)."""
    if spec.dtype != "float32":
        return "float64", None
    with matmul_precision(spec):
        setting = torch.get_float32_matmul_precision()
        error = matmul_error(lambda a, b: (torch.from_numpy(a).to(device) @ torch.from_numpy(b).to(device)).cpu())
    return setting + (" (torch's default)" if spec.matmul_precision == "default" else ""), error


def own_code(fn: Callable) -> Callable:
    """``fn`` with a copy of its code object.

    Dynamo keeps its compiled versions per code object, at most ``recompile_limit``
    (8) of them, and with ``fullgraph=True`` one more is an error: a process that
    built more than 8 instances would fail. Each function compiled gets its own code
    object, so each has its own cache and limit (8 input shapes per function).
    """
    return types.FunctionType(fn.__code__.replace(), fn.__globals__, fn.__name__, fn.__defaults__, fn.__closure__)
