"""Your own implementation: ``--impl module:attr`` loaded, then validated before it is compared.

``attr`` is a class or any callable that takes a ``ModelSpec`` and returns an
object with the common interface (``impls.interface.Implementation``). It may
raise ``impls.interface.Unavailable`` for a spec it does not support.
"""
from __future__ import annotations

import importlib
import re
from typing import Callable

import numpy as np

from harness.running.guard import Fault, guarded
from impls.interface import Implementation, Params
from impls.registry import names
from impls.spec import ModelSpec

Factory = Callable[[ModelSpec], Implementation]
REFERENCE = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")
VALIDATION_STEPS = 2


class PluginError(Exception):
    """A --impl reference that cannot be loaded; ``str(exc)`` is the one-line reason."""


def load(reference: str) -> Factory:
    """The factory named by ``module:attr``; raises PluginError on a malformed or unimportable reference."""
    if not REFERENCE.match(reference):
        raise PluginError(f"--impl {reference!r} is not of the form module:attr (e.g. mypkg.mymod:MyImpl)")
    module_name, attr = reference.split(":")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # any failure while importing user code is that code's fault
        raise PluginError(f"--impl {reference}: cannot import {module_name} ({type(exc).__name__}: {exc})") from None
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise PluginError(f"--impl {reference}: {module_name} has no class or function {attr!r}")
    return factory


def validate(impl: object, spec: ModelSpec, params: Params, x: np.ndarray, y: np.ndarray,
             seconds: float = 0) -> list[str]:
    """One line per fault: missing members, names, shapes, dtypes, non-finite values, mutated inputs, hangs."""
    missing = [m for m in ("forward", "loss_and_grads", "train") if not callable(getattr(impl, m, None))]
    name = getattr(impl, "name", None)
    faults = [f"has no method {m}()" for m in missing]
    if not isinstance(name, str) or not name:
        faults.append("has no name (a non-empty str attribute)")
    elif name in names():
        faults.append(f"is named {name!r}, which a built-in implementation already uses")
    if missing:
        return faults
    calls = [(impl.forward, "forward", (x,), lambda out: _arrays({"predictions": out}, {
                  "predictions": (len(x), spec.layers[-1])}, spec.dtype)),
             (impl.loss_and_grads, "loss_and_grads", (x, y), lambda out: _loss_and_grads(out, spec)),
             (impl.train, "train", (x, y, VALIDATION_STEPS, (0, VALIDATION_STEPS)), lambda out: _train(out, spec))]
    for method, label, args, check in calls:
        faults += _call(method, label, params, args, check, seconds)
        if getattr(getattr(impl, "worker", None), "dead", None):  # its process died or hung: nothing more to ask
            break
    return faults


def _call(method, label: str, params: Params, args: tuple, check: Callable[[object], list[str]],
          seconds: float) -> list[str]:
    """Call with copies of ``params``; report an exception or hang, mutated inputs, then the result's faults."""
    given = {k: v.copy() for k, v in params.items()}
    try:
        out = guarded(f"{label}()", lambda: method(given, *args), seconds)
    except Fault as exc:
        return [str(exc)]
    changed = [k for k in params if not np.array_equal(given[k], params[k])]
    faults = [f"{label}() changed its input {k}" for k in changed]
    return faults + [f"{label}() {fault}" for fault in check(out)]


def run_faults(result, spec: ModelSpec, steps: int, record: list[int]) -> list[str]:
    """What is wrong with a whole trajectory's TrainResult: loss count, checkpoint steps, names, shapes, dtypes.

    Every implementation's run is held to this, built-in ones included, so a loop that
    returns too few losses or other checkpoints is a fault of its own, not a crash of the harness.
    """
    losses, params, checkpoints = (getattr(result, a, None) for a in ("losses", "params", "checkpoints"))
    if not isinstance(params, dict) or not isinstance(checkpoints, dict):
        return ["train() did not return a TrainResult (losses, params, checkpoints)"]
    if np.shape(losses) != (steps,):
        return [f"train() returned losses of shape {np.shape(losses)}, expected ({steps},)"]
    if sorted(checkpoints) != sorted(record):
        missing, extra = sorted(set(record) - set(checkpoints)), sorted(set(checkpoints) - set(record))
        return [f"train() kept other checkpoints than asked (missing {missing[:3]}, extra {extra[:3]})"]
    faults = [f"train() {fault}" for fault in _arrays(params, spec.param_shapes(), spec.param_dtype, finite=False)]
    if not faults and steps in checkpoints and not all(
            np.array_equal(params[k], checkpoints[steps].get(k), equal_nan=True) for k in params):
        faults.append(f"train() returned final parameters that differ from its own checkpoint at step {steps}")
    for step in record:
        found = _arrays(checkpoints[step], spec.param_shapes(), spec.param_dtype, finite=False)
        faults += [f"train() checkpoint {step}: {fault}" for fault in found[:1]]
    return faults[:3]


def _arrays(got: dict, shapes: dict[str, tuple], dtype: str, finite: bool = True) -> list[str]:
    if set(got) != set(shapes):
        return [f"returned names {sorted(got)}, expected {sorted(shapes)}"]
    faults = []
    for name, shape in shapes.items():
        value = got[name]
        if not isinstance(value, np.ndarray):
            faults.append(f"returned {name} as {type(value).__name__}, expected a NumPy array")
        elif value.shape != tuple(shape):
            faults.append(f"returned {name} of shape {value.shape}, expected {tuple(shape)}")
        elif value.dtype != np.dtype(dtype):
            faults.append(f"returned {name} as {value.dtype}, expected {dtype}")
        elif finite and not np.all(np.isfinite(value)):
            faults.append(f"returned non-finite values in {name}")
    return faults


def _loss_and_grads(out, spec: ModelSpec) -> list[str]:
    if not (isinstance(out, tuple) and len(out) == 2 and isinstance(out[1], dict)):
        return ["did not return (loss, {name: gradient})"]
    loss, grads = out
    faults = [] if isinstance(loss, (float, np.floating)) and np.isfinite(loss) else [f"returned loss {loss!r}"]
    return faults + _arrays(grads, spec.param_shapes(), spec.param_dtype)


def _train(out, spec: ModelSpec) -> list[str]:
    losses, params, checkpoints = (getattr(out, a, None) for a in ("losses", "params", "checkpoints"))
    if not isinstance(params, dict) or not isinstance(checkpoints, dict):
        return ["did not return a TrainResult (losses, params, checkpoints)"]
    faults = [] if np.shape(losses) == (VALIDATION_STEPS,) else [f"returned losses of shape {np.shape(losses)},"
                                                                 f" expected ({VALIDATION_STEPS},)"]
    if sorted(checkpoints) != [0, VALIDATION_STEPS]:
        faults.append(f"kept checkpoints {sorted(checkpoints)}, asked for [0, {VALIDATION_STEPS}]")
    return faults + _arrays(params, spec.param_shapes(), spec.param_dtype)
