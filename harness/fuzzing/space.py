"""The space the fuzzer searches: every valid configuration, as a Hypothesis strategy, and back to a command.

Each example is a plain dict of ``RunConfig`` settings (the command line's
options). Hypothesis shrinks toward the first choice of every list and the
smallest number, so the lists put the notebook's choices first: a shrunk
example differs from the notebook's run only where the disagreement needs it
(the smallest width that shows it, relu only where relu is the trigger).
"""
from __future__ import annotations

from hypothesis import strategies as st

from harness.config import RunConfig
from impls.spec import DTYPES, MIXED_PRECISIONS, OPTIMIZERS

DATASETS = ("xor", "parity:3", "parity:4", "parity:5")
ACTIVATIONS = ("tanh", "sigmoid", "relu", "identity")  # the notebook's first
LOSSES = ("sel", "bce")
REDUCTIONS = ("sum", "mean")
# Learning rates where the reference stays finite on these networks over 500 steps (sel and bce, sum over at
# most 32 samples): the notebook's first. Larger ones blow up runs that the harness then only compares up to
# the blow-up, which says little.
LRS = (0.001, 0.0001, 0.01, 0.1)
SCHEDULES = ("constant", "step")
MAX_DEPTH, MAX_WIDTH = 4, 64
MIN_STEPS, MAX_STEPS = 20, 500
# The mixed policies a search may draw where --dtype lists them (opt-in): each is its low dtype's runs under
# --mixed-precision
MIXED_CHOICES = {"mixed-bf16": "bf16", "mixed-fp16": "fp16"}
CHECKPOINTS = 10  # per example: enough to locate a divergence, few enough to keep an example near a second


@st.composite
def settings(draw, dtypes: tuple[str, ...] = DTYPES, optimizers: tuple[str, ...] = OPTIMIZERS,
             max_steps: int = MAX_STEPS) -> dict:
    """One valid configuration: layers (depth 1-4, hidden widths 1-64), activations, loss and reduction,
    dataset, dtype, seed, learning rate, steps, optimizer and schedule."""
    dataset = draw(st.sampled_from(DATASETS))
    inputs = 2 if dataset == "xor" else int(dataset.split(":")[1])
    depth = draw(st.integers(1, MAX_DEPTH))
    hidden = draw(st.lists(st.integers(1, MAX_WIDTH), min_size=depth - 1, max_size=depth - 1))
    loss = draw(st.sampled_from(LOSSES))
    activations = draw(st.lists(st.sampled_from(ACTIVATIONS), min_size=depth, max_size=depth))
    if loss == "bce":  # bce needs a sigmoid output
        activations[-1] = "sigmoid"
    steps = draw(st.integers(MIN_STEPS, max(MIN_STEPS, max_steps)))
    found = {"layers": (inputs, *hidden, 1), "activations": tuple(activations), "loss": loss,
             "reduction": draw(st.sampled_from(REDUCTIONS)), "dataset": dataset,
             "dtype": (dtype := draw(st.sampled_from(dtypes)),), "seed": draw(st.integers(0, 2**32 - 1)),
             "lr": draw(st.sampled_from(LRS)), "steps": steps, "check_every": max(1, steps // CHECKPOINTS),
             "optimizer": draw(st.sampled_from(optimizers))}
    if draw(st.sampled_from(SCHEDULES)) == "step":
        found.update(schedule="step", decay_every=draw(st.integers(1, steps)))
    if dtype in MIXED_CHOICES:  # a mixed policy: its low dtype's runs under --mixed-precision
        found.update(dtype=(MIXED_PRECISIONS[MIXED_CHOICES[dtype]],), mixed_precision=MIXED_CHOICES[dtype])
    return found


def config(found: dict, impls: tuple[str, ...], plugins: tuple[str, ...],
           time_limit: float | None = RunConfig.time_limit) -> RunConfig:
    """The comparison of one example."""
    return RunConfig(impls=impls, impl=plugins, quiet=True, time_limit=time_limit, **found)


def command(found: dict, impls: tuple[str, ...], plugins: tuple[str, ...],
            time_limit: float | None = RunConfig.time_limit) -> str:
    """A ready-to-run ``python -m harness.compare`` line for one example (with its --time-limit where that is
    not compare's default)."""
    parts = ["python -m harness.compare"]
    if impls:
        parts.append("--impls " + ",".join(impls))
    parts += [f"--impl {p}" for p in plugins]
    for key, value in found.items():
        text = ",".join(map(str, value)) if isinstance(value, tuple) else str(value)
        parts.append(f"--{key.replace('_', '-')} {text}")
    if time_limit != RunConfig.time_limit:
        parts.append(f"--time-limit {time_limit:g}")
    return " ".join(parts)
