"""Which implementations a run compares: the registry's, and your own after validation."""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from functools import partial
from typing import Callable

from harness.config import FRAMEWORK_DEFAULTS
from harness.params import cast
from harness.running import plugins, workers
from harness.running.guard import Fault, Hang, guarded, one_line, time_limit
from harness.running.plugins import Factory
from harness.running.remote import RemoteImpl, usable
from harness.running.workers import Worker, WorkerError, kind_of
from impls.interface import Implementation
from impls.registry import REGISTRY, create, fork_safe_modules, supports


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

    def attempt(self, impl: Implementation, label: str, fn: Callable, passes: tuple[type[Exception], ...] = ()):
        """fn() under the time limit, or None with the fault recorded against ``impl`` (exceptions of the types in
        ``passes`` go through: the caller's own)."""
        try:
            return guarded(f"{label}()", fn, self.time_limit, passes)
        except Fault as exc:
            self.fault(impl.name, impl.spec.dtype, str(exc))
            return None


def build(config, extra: dict[str, Factory], params, x, y) -> Roster:
    """Every implementation the configuration asks for, in each dtype, each in a worker process of its own
    (in this process only where its factory cannot be sent to one); plugins validated before use.
    Every worker is started first, so they all import their frameworks side by side."""
    roster = Roster(factories={n: partial(create, n) for n in config.impls}, time_limit=config.call_limit)
    workers.preload(fork_safe_modules(config.impls))
    wanted = [(name, factory, config.spec(dtype)) for dtype in config.dtype
              for name, factory in [*roster.factories.items(), *extra.items()]]
    started = [Worker(f"{name} {spec.dtype}", factory, (spec,), config.call_limit) if usable(factory) else None
               for name, factory, spec in wanted]
    for (name, factory, spec), worker in zip(wanted, started):
        impl = _construct(roster, name, factory, spec, worker, builtin=name in config.impls)
        if impl is not None and config.framework_defaults and (own := library_defaults(impl)):
            if isinstance(impl, RemoteImpl):  # built again, on its library's defaults
                impl.worker.stop()
            spec = replace(spec, **own)
            worker = Worker(f"{name} {spec.dtype}", factory, (spec,), config.call_limit) if usable(factory) else None
            impl = _construct(roster, name, factory, spec, worker, builtin=name in config.impls)
        if impl is None:
            continue
        if name in config.impls:  # built-in
            roster.impls.append(impl)
            continue
        found = plugins.validate(impl, spec, cast(params, spec.dtype), x, y, config.call_limit)
        label = getattr(impl, "name", name)
        label = label if isinstance(label, str) and label else name
        for fault in found:
            roster.fault(label, spec.dtype, fault)
        if not found:
            roster.impls.append(impl)
            roster.factories[impl.name] = factory
        elif isinstance(impl, RemoteImpl):
            impl.worker.stop()
    return roster


def library_defaults(impl: Implementation) -> dict[str, float]:
    """The hyperparameters of ``impl``'s library defaults (its ``framework_defaults``) that differ from its spec."""
    stated = getattr(impl, "framework_defaults", None) or {}
    return {k: float(v) for k, v in stated.items() if k in FRAMEWORK_DEFAULTS and float(v) != getattr(impl.spec, k)}


def _construct(roster: Roster, name: str, factory: Factory, spec, worker: Worker | None,
               builtin: bool) -> Implementation | None:
    """The implementation built in its worker (or here), or None with the reason recorded."""
    dtype = spec.dtype
    try:
        if worker is not None:
            return RemoteImpl(worker, roster.time_limit)
        with time_limit(roster.time_limit, "construction"):
            return factory(spec)
    except Fault as exc:  # the worker died or hung while building it
        roster.fault(name, dtype, str(exc))
    except Hang as exc:
        roster.fault(name, dtype, str(exc))
    except Exception as exc:  # a WorkerError carries the kind of what construction raised in the worker
        kind = exc.kind if isinstance(exc, WorkerError) else kind_of(exc)
        if kind == "NotInstalled":
            roster.skipped[f"{name} {dtype}"] = str(exc)
        elif kind == "Unavailable":
            # declining what the registry says it supports is a fault, not a skip
            if builtin and supports(name, spec) and spec.device == "cpu":
                roster.fault(name, dtype, f"declared itself unavailable in {dtype}, which it supports: {exc}")
            else:
                roster.skipped[f"{name} {dtype}"] = str(exc)
        else:
            roster.fault(name, dtype, f"construction raised {kind}: {one_line(exc)}")
    return None
