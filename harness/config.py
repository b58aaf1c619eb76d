"""The run configuration: one frozen dataclass of defaults; the command line is derived from it."""
from __future__ import annotations

import argparse
from dataclasses import dataclass, fields

from harness.init import NOTEBOOK, InitPreset
from harness.notebook import STEPS
from impls.registry import names
from impls.spec import DTYPES, ModelSpec


@dataclass(frozen=True)
class RunConfig:
    """Defaults reproduce the notebook's printed run with every implementation, in both dtypes."""

    impls: tuple[str, ...] = tuple(names())  # implementations to compare
    dtypes: tuple[str, ...] = DTYPES  # each is a separate run
    steps: int = STEPS  # SGD updates per run
    lr: float = ModelSpec.lr  # SGD step size
    layers: tuple[int, ...] = ModelSpec.layers  # input, hidden..., output sizes
    activations: tuple[str, ...] = ModelSpec.activations  # one per layer
    reduction: str = ModelSpec.reduction  # gradient of the sum (notebook) or the mean
    seed: int | None = None  # None: the notebook's preset (seed 0, 648 draws skipped)

    def spec(self, dtype: str) -> ModelSpec:
        """The model spec of this run in ``dtype`` (raises ValueError on a bad combination)."""
        return ModelSpec(self.layers, self.activations, "sel", self.reduction, dtype, self.lr)

    def preset(self) -> InitPreset:
        return NOTEBOOK if self.seed is None else InitPreset(seed=self.seed)

    @property
    def is_notebook_run(self) -> bool:
        """True when the notebook's printed line is the expected output."""
        return self.preset() == NOTEBOOK and self.steps == STEPS and self.spec("float64") == ModelSpec()


class UsageError(Exception):
    """Bad command-line input; ``str(exc)`` is the one-line message."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, no usage dump
        raise UsageError(message)


def _csv(kind):
    return lambda text: tuple(kind(part) for part in text.split(","))


HELP = {
    "impls": "comma-separated implementations",
    "dtypes": "comma-separated dtypes",
    "steps": "SGD updates per run",
    "lr": "learning rate",
    "layers": "comma-separated layer sizes",
    "activations": "comma-separated activation per layer",
    "reduction": "reduction whose gradient is followed: sum or mean",
    "seed": "fresh seed for glorot, drawn from np.random.RandomState(S)",
}
KIND = {"impls": _csv(str), "dtypes": _csv(str), "layers": _csv(int), "activations": _csv(str),
        "steps": int, "lr": float, "reduction": str, "seed": int}


def parse_args(argv: list[str] | None = None) -> RunConfig:
    """A RunConfig from the command line; raises UsageError with one line on bad input."""
    parser = _Parser(prog="python -m harness.compare", description=RunConfig.__doc__)
    defaults = RunConfig()
    for f in fields(RunConfig):
        default = getattr(defaults, f.name)
        shown = ",".join(map(str, default)) if isinstance(default, tuple) else default
        shown = "the notebook's preset" if shown is None else shown
        parser.add_argument(f"--{f.name}", type=KIND[f.name], default=default,
                            help=f"{HELP[f.name]} (default: {shown})", metavar=f.name.upper())
    config = RunConfig(**vars(parser.parse_args(argv)))
    validate(config)
    return config


def validate(config: RunConfig) -> None:
    """Raise UsageError for input no run can use."""
    unknown = [name for name in config.impls if name not in names()]
    if unknown:
        raise UsageError(f"unknown implementation {unknown[0]!r}; choose from {', '.join(names())}")
    if config.steps < 1:
        raise UsageError(f"--steps must be >= 1, got {config.steps}")
    if config.seed is not None and not 0 <= config.seed < 2**32:
        raise UsageError(f"--seed must be in 0..2**32-1, got {config.seed}")
    try:
        for dtype in config.dtypes:
            config.spec(dtype)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
