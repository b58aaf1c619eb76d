"""The run configuration: one frozen dataclass of defaults; the command line is derived from it."""
from __future__ import annotations

from dataclasses import dataclass, fields

import ml_dtypes
import numpy as np

from harness.cli import Parser, UsageError
from harness.data import load
from harness.init import NOTEBOOK, InitPreset
from harness.notebook import STEPS
from impls.registry import DEFAULT, DEFAULT_OPTIMIZING, default_for, names
from impls.spec import DTYPES, MIXED_PRECISIONS, RUN_DTYPES, ModelSpec


# The hyperparameters a library may default differently from the spec (--framework-defaults); momentum's
# library default is 0, which is no momentum at all, so it is not one of them.
FRAMEWORK_DEFAULTS = ("lr", "beta1", "beta2", "eps", "weight_decay")


@dataclass(frozen=True)
class RunConfig:
    """Defaults reproduce the notebook's printed run with every implementation, in both dtypes."""

    impls: tuple[str, ...] | None = None  # implementations to compare, each against the oracle; None: default_for
    impl: tuple[str, ...] = ()  # your own implementations, as module:attr
    dtype: tuple[str, ...] = DTYPES  # each is a separate run
    steps: int = STEPS  # SGD updates per run
    lr: float = ModelSpec.lr  # SGD step size
    layers: tuple[int, ...] = ModelSpec.layers  # input, hidden..., output sizes
    activations: tuple[str, ...] = ModelSpec.activations  # one per layer
    loss: str = ModelSpec.loss  # sel (the notebook's) or bce
    reduction: str = ModelSpec.reduction  # gradient of the sum (notebook) or the mean
    dataset: str = "xor"  # xor or parity:N
    device: str = "cpu"  # cpu or cuda: where torch and jax compute (NumPy stays on the CPU)
    optimizer: str = ModelSpec.optimizer  # sgd (the notebook's), momentum, nesterov, adam, amsgrad, adamw
    momentum: float = ModelSpec.momentum
    beta1: float = ModelSpec.beta1
    beta2: float = ModelSpec.beta2
    eps: float = ModelSpec.eps
    weight_decay: float | None = None  # None: the spec's (0.01 for adamw, 0 otherwise)
    schedule: str = ModelSpec.schedule  # constant or step
    decay_every: int = ModelSpec.decay_every
    decay_factor: float = ModelSpec.decay_factor
    matmul_precision: str = ModelSpec.matmul_precision  # default, highest, high or medium (float32 products)
    mixed_precision: str | None = None  # bf16 or fp16: that dtype's runs follow the spec's mixed policy
    framework_defaults: bool = False  # each native implementation on its library's own default hyperparameters
    strict: bool = False  # a stated convention (relu'(0), an optimizer's form) fails the run instead of passing
    seed: int | None = None  # None: the notebook's preset (seed 0, 648 draws skipped)
    check_every: int | None = None  # steps between checkpoints (teacher-forced and parameter checks); None: derived
    time_limit: float | None = None  # seconds one call into an implementation may take; None: see call_limit
    max_hours: float = 2.0  # a run estimated to take longer is refused before it starts
    out: str | None = None  # results folder; None: a new one under results/
    overwrite: bool = False  # replace an existing --out folder
    no_plots: bool = False  # skip the PNG plots
    no_timings: bool = False  # skip the per-call timings (the checks and verdicts are the same)
    quiet: bool = False  # no progress bar; print only the verdict line and failures

    def __post_init__(self) -> None:
        low = MIXED_PRECISIONS.get(self.mixed_precision or "")
        if low and self.dtype == DTYPES:  # --mixed-precision alone: the runs of its dtype
            object.__setattr__(self, "dtype", (low,))
        if self.check_every is None:  # the frozen fields are settled once, so meta.json records what ran
            object.__setattr__(self, "check_every", default_check_every(self.steps))
        if self.impls is None:
            try:
                impls = default_for(self.spec("float64"))
            except ValueError:  # validate() reports the bad setting
                impls = DEFAULT
            object.__setattr__(self, "impls", impls)

    def spec(self, dtype: str) -> ModelSpec:
        """The model spec of this run in ``dtype`` (raises ValueError on a bad combination)."""
        return ModelSpec(
            layers=self.layers, activations=self.activations, loss=self.loss, reduction=self.reduction, dtype=dtype,
            lr=self.lr, device=self.device, optimizer=self.optimizer, momentum=self.momentum, beta1=self.beta1,
            beta2=self.beta2, eps=self.eps, weight_decay=self.weight_decay, schedule=self.schedule,
            decay_every=self.decay_every, decay_factor=self.decay_factor, matmul_precision=self.matmul_precision,
            mixed=dtype == MIXED_PRECISIONS.get(self.mixed_precision or ""))

    @property
    def call_limit(self) -> float:
        """Seconds one call into an implementation may take before it is stopped as hung: --time-limit, else
        DEFAULT_TIME_LIMIT_S (``train()`` may then be given more: ``resources.train_limits``)."""
        return DEFAULT_TIME_LIMIT_S if self.time_limit is None else self.time_limit

    def preset(self) -> InitPreset:
        return NOTEBOOK if self.seed is None else InitPreset(seed=self.seed)

    @property
    def is_notebook_run(self) -> bool:
        """True when the notebook's printed line is the expected float64 output."""
        return (self.preset() == NOTEBOOK and self.steps == STEPS and self.dataset == "xor"
                and self.spec("float64") == ModelSpec())


DEFAULT_TIME_LIMIT_S = 600.0  # a call that takes ten minutes on a network the estimate did not call long is hung
CHECKPOINTS = 100  # the default --check-every spaces about this many checkpoints over any run


def default_check_every(steps: int) -> int:
    """--steps / 100, at least 1: 1,000 for the notebook's 100,000 steps, and about 100 checkpoints for any run."""
    return max(1, steps // CHECKPOINTS)


_Parser = Parser  # (UsageError and Parser live in harness.cli, shared by every command)


def _csv(kind):
    return lambda text: tuple(kind(part) for part in text.split(","))


HELP = {
    "impls": f"comma-separated implementations, each judged against the oracle (default: {','.join(DEFAULT)} for"
             f" the notebook's plain SGD, {','.join(DEFAULT_OPTIMIZING)} for any other optimizer or schedule)",
    "impl": "your own implementation as module:attr, a class or factory taking a ModelSpec (repeatable)",
    "loss": "sel (0.5 (y - y_hat)^2, the notebook's) or bce (binary cross-entropy)",
    "dataset": "xor or parity:N (2**N samples)",
    "device": "cpu or cuda: where torch and jax compute (NumPy stays on the CPU)",
    "dtype": "comma-separated dtypes",
    "steps": "updates per run",
    "lr": "learning rate",
    "layers": "comma-separated layer sizes",
    "activations": "comma-separated activation per layer",
    "reduction": "reduction whose gradient is followed: sum or mean",
    "seed": "fresh seed for glorot, drawn from np.random.RandomState(S)",
    "optimizer": "sgd (the notebook's), momentum, nesterov, adam, amsgrad or adamw (formulas: impls/spec.py)",
    "momentum": "momentum and nesterov's coefficient",
    "beta1": "adam, amsgrad and adamw's first-moment decay",
    "beta2": "adam, amsgrad and adamw's second-moment decay",
    "eps": "adam, amsgrad and adamw's epsilon",
    "weight_decay": "weight decay (default: 0.01 for adamw, 0 otherwise; coupled L2 except adamw's, decoupled)",
    "schedule": "learning-rate schedule: constant or step (lr times --decay-factor every --decay-every steps)",
    "decay_every": "steps between two decays of the step schedule",
    "decay_factor": "factor of each decay of the step schedule",
    "matmul_precision": "how float32 matmuls may compute: default (each framework as its users get it), highest,"
                        " high or medium, as torch.set_float32_matmul_precision says (jax: float32,"
                        " tensorfloat32, bfloat16)",
    "mixed_precision": "bf16 or fp16: the bfloat16 (float16) runs keep float32 master weights and compute in the"
                       " low dtype, as impls/spec.py's mixed policy says (fp16 scales the loss); alone, it runs"
                       " that dtype only (default: none)",
    "framework_defaults": "run each native implementation on its library's own default hyperparameters",
    "strict": "fail a run that parts from the spec only by a convention its implementation states (exit 1)",
    "check_every": f"steps between checkpoints (default: --steps / {CHECKPOINTS}, at least 1; 1000 for 100,000 steps)",
    "time_limit": "seconds one call into an implementation may take before it is stopped as hung (default: "
                  f"{DEFAULT_TIME_LIMIT_S:g}; train(), one call for the whole trajectory, is given more where "
                  "the run's estimate says it needs more)",
    "max_hours": "refuse a run whose estimated wall time is longer than this",
    "out": "results folder",
    "overwrite": "replace an existing --out folder",
    "no_plots": "do not draw the PNG plots",
    "no_timings": "do not time the calls (verdicts are unchanged; timings.csv keeps only its header)",
    "quiet": "no progress bar; print only the verdict and failures",
}
KIND = {"impls": _csv(str), "dtype": _csv(str), "layers": _csv(int), "activations": _csv(str),
        "steps": int, "lr": float, "reduction": str, "loss": str, "dataset": str, "device": str, "seed": int,
        "check_every": int, "out": str, "optimizer": str, "momentum": float, "beta1": float, "beta2": float,
        "eps": float, "weight_decay": float, "schedule": str, "decay_every": int, "decay_factor": float,
        "matmul_precision": str, "mixed_precision": str, "time_limit": float, "max_hours": float}
SHOWN = {"seed": "the notebook's preset", "out": "a new folder under results/"}
SETTLED = ("check_every", "impls", "weight_decay")  # derived from the other options when not given


def parse_args(argv: list[str] | None = None) -> RunConfig:
    """A RunConfig from the command line; raises UsageError with one line on bad input."""
    parser = _Parser(prog="python -m harness.compare", description=RunConfig.__doc__)
    defaults = RunConfig()
    for f in fields(RunConfig):
        flag, default = "--" + f.name.replace("_", "-"), getattr(defaults, f.name)
        if isinstance(default, bool):
            parser.add_argument(flag, action="store_true", help=HELP[f.name])
            continue
        if f.name == "impl":
            parser.add_argument(flag, action="append", default=[], help=HELP[f.name], metavar="MODULE:ATTR")
            continue
        shown = ",".join(map(str, default)) if isinstance(default, tuple) else SHOWN.get(f.name, default)
        default = None if f.name in SETTLED else default
        described = HELP[f.name] if "(default" in HELP[f.name] else f"{HELP[f.name]} (default: {shown})"
        parser.add_argument(flag, type=KIND[f.name], default=default,
                            dest=f.name, help=described, metavar=f.name.upper())
    args = vars(parser.parse_args(argv))
    config = RunConfig(**{**args, "impl": tuple(args["impl"])})
    validate(config)
    return config


def cuda_missing() -> str | None:
    """None if torch or jax can compute on a CUDA device here, else why neither can."""
    reasons = []
    try:
        import torch

        if torch.cuda.is_available():
            return None
        reasons.append(f"torch {torch.__version__}: torch.cuda.is_available() is False")
    except ImportError:
        reasons.append("torch is not installed")
    try:
        import jax

        jax.devices("gpu")
        return None
    except ImportError:
        reasons.append("jax is not installed")
    except RuntimeError:
        reasons.append("jax has no gpu backend")
    return "; ".join(reasons)


def repeated(listed) -> str | None:
    """The first entry of ``listed`` that appears more than once, or None."""
    return next((item for i, item in enumerate(listed) if item in listed[:i]), None)


def validate(config: RunConfig) -> None:
    """Raise UsageError for input no run can use."""
    for flag, listed in (("--impls", config.impls), ("--dtype", config.dtype), ("--impl", config.impl)):
        if twice := repeated(listed):
            raise UsageError(f"{flag} lists {twice!r} more than once")
    unknown = [name for name in config.impls if name not in names()]
    if unknown:
        raise UsageError(f"unknown implementation {unknown[0]!r}; choose from {', '.join(names())}")
    bad_dtype = [d for d in config.dtype if d not in RUN_DTYPES]
    if bad_dtype:
        raise UsageError(f"unknown dtype {bad_dtype[0]!r}; choose from {', '.join(RUN_DTYPES)}")
    if config.mixed_precision is not None:
        if config.mixed_precision not in MIXED_PRECISIONS:
            raise UsageError(f"unknown --mixed-precision {config.mixed_precision!r}; choose from"
                             f" {', '.join(MIXED_PRECISIONS)}")
        if MIXED_PRECISIONS[config.mixed_precision] not in config.dtype:
            raise UsageError(f"--mixed-precision {config.mixed_precision} computes in"
                             f" {MIXED_PRECISIONS[config.mixed_precision]}, which --dtype does not list")
    if config.steps < 1:
        raise UsageError(f"--steps must be >= 1, got {config.steps}")
    if not 1 <= config.check_every <= config.steps:
        raise UsageError(f"--check-every must be in 1..{config.steps} (--steps), got {config.check_every}")
    if config.device == "cuda" and (missing := cuda_missing()):
        raise UsageError(f"--device cuda: no CUDA device here ({missing})")
    if not 0 < config.max_hours < float("inf"):
        raise UsageError(f"--max-hours must be a finite number > 0, got {config.max_hours}")
    if config.time_limit is not None and not 0 < config.time_limit < float("inf"):
        raise UsageError(f"--time-limit must be a finite number of seconds > 0, got {config.time_limit}")
    if config.seed is not None and not 0 <= config.seed < 2**32:
        raise UsageError(f"--seed must be in 0..2**32-1, got {config.seed}")
    for dtype in config.dtype:
        largest = float(ml_dtypes.finfo(dtype).max)
        if dtype in RUN_DTYPES and np.isfinite(config.lr) and abs(config.lr) > largest:
            raise UsageError(f"--lr {config.lr:g} overflows {dtype} (largest {largest:.3g})")
    try:
        for dtype in config.dtype:
            config.spec(dtype)
        x, y = load(config.dataset)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if (config.layers[0], config.layers[-1]) != (x.shape[1], y.shape[1]):
        raise UsageError(f"--layers {','.join(map(str, config.layers))} does not fit {config.dataset}: it needs"
                         f" {x.shape[1]} inputs and {y.shape[1]} output")
