"""Which implementations a run compares: the registry's, and your own after validation."""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial
from typing import Callable

from harness.checks.arrays import cast
from harness.running import plugins
from harness.running.guard import Fault, Hang, guarded, one_line, time_limit
from harness.running.plugins import Factory
from impls.interface import Implementation, NotInstalled, Unavailable
from impls.registry import create, supports


@dataclass
class Roster:
    """The implementations to compare, how to build each again, and why the others are not compared."""

    impls: list[Implementation] = field(default_factory=list)
    factories: dict[str, Factory] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)  # "impl dtype" -> why it cannot run
    faults: dict[tuple[str, str], list[str]] = field(default_factory=dict)  # (impl, dtype) -> what went wrong
    time_limit: float = 0.0

    def fault(self, impl: str, dtype: str, what: str) -> None:
        self.faults.setdefault((impl, dtype), []).append(what)

    def attempt(self, impl: Implementation, label: str, fn: Callable):
        """fn() under the time limit, or None with the fault recorded against ``impl``."""
        try:
            return guarded(f"{label}()", fn, self.time_limit)
        except Fault as exc:
            self.fault(impl.name, impl.spec.dtype, str(exc))
            return None


def build(config, extra: dict[str, Factory], params, x, y) -> Roster:
    """Every implementation the configuration asks for, in each dtype; plugins validated before use."""
    roster = Roster(factories={n: partial(create, n) for n in config.impls}, time_limit=config.time_limit)
    for dtype in config.dtype:
        spec = config.spec(dtype)
        for name in config.impls:  # a built-in implementation that fails to build is a fault, like a plugin
            try:
                with time_limit(config.time_limit, "construction"):
                    roster.impls.append(create(name, spec))
            except NotInstalled as exc:
                roster.skipped[f"{name} {dtype}"] = str(exc)
            except Unavailable as exc:  # declining what the registry says it supports is a fault, not a skip
                if supports(name, dtype) and spec.device == "cpu":
                    roster.fault(name, dtype, f"declared itself unavailable in {dtype}, which it supports: {exc}")
                else:
                    roster.skipped[f"{name} {dtype}"] = str(exc)
            except Hang as exc:
                roster.fault(name, dtype, str(exc))
            except Exception as exc:
                roster.fault(name, dtype, f"construction raised {type(exc).__name__}: {one_line(exc)}")
        for label, factory in extra.items():
            try:
                impl = factory(spec)
            except Unavailable as exc:
                roster.skipped[f"{label} {dtype}"] = str(exc)
                continue
            except Exception as exc:
                roster.fault(label, dtype, f"construction raised {type(exc).__name__}: {exc}")
                continue
            found = plugins.validate(impl, spec, cast(params, dtype), x, y, config.time_limit)
            name = getattr(impl, "name", label)
            name = name if isinstance(name, str) and name else label
            for fault in found:
                roster.fault(name, dtype, fault)
            if not found:
                roster.impls.append(impl)
                roster.factories[impl.name] = factory
    return roster
