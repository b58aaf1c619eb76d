"""Helpers the compiled ``torch`` implementations (torch-compile, torch-loop) share."""
from __future__ import annotations

import types
from typing import Callable


def own_code(fn: Callable) -> Callable:
    """``fn`` with a copy of its code object.

    Dynamo keeps its compiled versions per code object, at most ``recompile_limit``
    (8) of them, and with ``fullgraph=True`` one more is an error: a process that
    built more than 8 instances would fail. Each function compiled gets its own code
    object, so each has its own cache and limit (8 input shapes per function).
    """
    return types.FunctionType(fn.__code__.replace(), fn.__globals__, fn.__name__, fn.__defaults__, fn.__closure__)
