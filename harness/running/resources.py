"""What a run will need, estimated before any work starts: memory (refused when it does not fit) and time.

Memory is the larger of two moments. While training: every implementation's
per-step losses and checkpoints (in its worker and again here), its activations,
and the oracle's runs (longdouble, and a stack of three in each dtype) alike.
While checking (from when the truth and a dtype's reference runs are in): those
reference runs here only, the implementations as while training (one may still
train), the complex-step copies of the network in each worker computing truths,
the truths and answers kept for asking again (up to their budgets), and the check
calls in flight (up to a round trip's budget). Not counted: each worker's own
pages once its framework is loaded (measured in the default run: 10 to 17 MB
private for a NumPy or oracle worker, about 150 MB for torch and jax), small
beside what a run that might not fit holds. Time is the per-step cost of each
trajectory, from a fixed per-call overhead per implementation plus the matmul
work at a rate measured here and now in each dtype, spread over the two cores the
trajectories share, plus the checks at every checkpoint. The oracle's extended
products are costed as it takes them (``harness.truth.products``): by NumPy's
longdouble loop where that is faster, else as the float64 BLAS products of their
split plus the extended elementwise work of splitting them; its activations
(real, and complex for complex step) at their measured rates. Where that comes to
more than 30 s, each implementation cheap enough to time runs 20 steps twice in
its worker (the first call compiles or warms up), and its measured cost per step
replaces the guess. Both are estimates,
meant to be right within a factor of about two: enough to refuse a run that
would take days or swap, and to say how long a long one will take.
"""
from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from harness.running.runs import OTHER_US_PER_STEP, REFERENCE_US_PER_STEP, US_PER_STEP, checkpoint_steps, slots
from harness.running.remote import BATCH_BYTES, ORACLE_BATCH_BYTES, PARALLEL_PARAMS
from harness.running.spill import HELD_BYTES
from harness.truth.oracle import CACHE_BYTES, FULL_COMPLEX_STEP_MAX, VERIFY_DIRECTIONS
from harness.truth.products import EXTENDED, FLOAT64_PRODUCTS, worth_splitting
from impls.spec import ORACLE_DTYPE

MATMULS_PER_STEP = 3  # forward, and two in the backward pass
SPLIT_OPS_PER_ENTRY = 6  # extended elementwise operations per entry of a split product's operands and result
ACTIVATION_OPS = 3  # an extended activation and its slope, per entry, in units of one tanh: NumPy's two calls, or
# the truth's fused kernel on a wide layer, each measured at about 3 on real data; with the three-product split
# the estimate of a step matches the measured one (results/scaling/NOTE.md)
ACTIVATION_COPIES = 8  # arrays of k x width alive per layer in a step (inputs, z, outputs, deltas, slopes, ...)
LOSS_COPIES = 3  # per-step losses: in the worker, in transit, and here
TABLE_BYTES_PER_STEP = 96  # the per-step loss table (impl, dtype, step, loss, error, allowed) here, per run
PER_CHECKPOINT_CALL_S = 0.002  # one teacher-forced call into an implementation's worker, with its update
CALIBRATION_STEPS = 20  # steps each implementation runs twice, in its worker, to measure its cost per step
CALIBRATION_MAX_S = 1.0  # an implementation whose 40 calibration steps would take longer is estimated, not run
COARSE_MARGIN = 2.0  # before calibration, refuse only runs estimated at twice --max-hours or more
SHOW_ESTIMATE_S = 30.0  # runs expected to take longer say so at the start
MEMORY_HEADROOM = 0.8  # of the memory available, what a run may plan to use
ANSWERS_PER_STATE = 3  # the oracle's plain evaluations a state's checks ask for in each dtype (gradcheck._variants)
IMPL_TRIP = 4  # a round trip's arguments and as much in answers, each in the worker and here
FD_COPIES = 64  # moved copies of the parameters a finite-difference check sends (2 signs x 16 directions, per array)
ORACLE_TRIP = 10  # an oracle round trip's arguments and up to four times as much in answers, there and here
TRAIN_LIMIT_MARGIN = 4.0  # train()'s limit over its estimate: the estimate's stated factor of two, twice over
# for a trajectory that shares its core (the 2,000-step 10-1024-1024-1 run's torch train() overran 600 s)


@dataclass(frozen=True)
class Estimate:
    """Bytes at the peak, seconds of wall time, and the largest single part of each (to name it)."""

    bytes: float
    seconds: float
    biggest_bytes: str
    biggest_seconds: str
    parts: dict = field(default_factory=dict)  # "impl dtype" -> its trajectory's seconds


def _bytes(dtype: str) -> int:
    return np.dtype(np.longdouble if dtype == ORACLE_DTYPE else dtype).itemsize


def flop_seconds(dtype: str, size: int = 64) -> float:
    """Seconds per multiply-add of a size x size matmul in ``dtype`` here (best of three: a few ms)."""
    a = np.ones((size, size), np.longdouble if dtype == ORACLE_DTYPE else dtype)
    return _best(lambda: a @ a) / size**3


def _best(work) -> float:
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        work()
        best = min(best, time.perf_counter() - start)
    return best


@dataclass(frozen=True)
class Rates:
    """Seconds per unit of the oracle's work, measured here and now (a few ms in all)."""

    loop: float  # one multiply-add of NumPy's extended matmul loop
    blas: float  # one float64 multiply-add by BLAS (at 128 x 128)
    element: float  # one extended elementwise operation (an add)
    tanh: float  # one extended tanh
    complex_tanh: float  # one complex extended tanh

    @classmethod
    def measure(cls) -> "Rates":
        """Measured on one BLAS thread, as the oracle's workers compute (``remote.prepare_oracle_process``): with
        this process's default of a thread a core, small products ran many times slower whenever another
        process kept a core busy, and the estimate refused runs that fit by far."""
        from threadpoolctl import threadpool_limits

        small, wide = np.ones((4096,), EXTENDED), np.ones((128, 128))
        rough = np.full(1024, 0.5 + 1e-30j, np.clongdouble)
        with threadpool_limits(1, user_api="blas"):
            blas = _best(lambda: wide @ wide) / 128**3
        return cls(flop_seconds(ORACLE_DTYPE), blas, _best(lambda: small + small) / small.size,
                   _best(lambda: np.tanh(small)) / small.size, _best(lambda: np.tanh(rough)) / rough.size)


def product_seconds(m: int, k: int, n: int, rates: Rates) -> float:
    """One extended (m x k) @ (k x n) product, taken as the oracle takes it."""
    if not worth_splitting(m, k, n):
        return m * k * n * rates.loop
    return FLOAT64_PRODUCTS * m * k * n * rates.blas + SPLIT_OPS_PER_ENTRY * (m * k + k * n + m * n) * rates.element


def oracle_step_seconds(widths, k: int, rates: Rates) -> float:
    """One step of the truth's trajectory: per layer its forward product, its gradient and the product that carries
    the gradient back, and its activation with its slope."""
    total = 0.0
    for i, (n, m) in enumerate(zip(widths, widths[1:])):
        total += product_seconds(k, n + 1, m, rates) + product_seconds(n + 1, k, m, rates)
        total += product_seconds(k, m, n, rates) if i else 0.0
        total += ACTIVATION_OPS * k * m * rates.tanh
    return total


def state_seconds(widths, k: int, copies: int, rates: Rates) -> float:
    """The truth at one state: reverse mode (about a step and a half of the trajectory: the scale's products too)
    and the complex-step forward pass through ``copies`` copies of the network (four real products a complex one)."""
    forward = sum(4 * copies * product_seconds(k, n + 1, m, rates) + copies * k * m * rates.complex_tanh
                  for n, m in zip(widths, widths[1:]))
    return 1.5 * oracle_step_seconds(widths, k, rates) + forward


def estimate(config, x: np.ndarray, measured: dict[tuple[str, str], float] | None = None,
             runs: list[tuple[str, str]] | None = None) -> Estimate:
    """Memory and wall time of ``config`` on data with ``x``'s sample count, before anything runs.

    ``measured`` holds seconds per step of implementations calibrated in their workers (``calibrate``);
    the others are estimated from their overhead and the matmul rate. ``runs``: the (name, dtype) of each
    implementation as built, a plugin by its own name (default: the configuration's, a plugin by its reference)."""
    widths, k, steps = config.layers, x.shape[0], config.steps
    macs = k * sum(n * m for n, m in zip(widths, widths[1:]))  # multiply-adds of one forward pass
    params = sum((n + 1) * m for n, m in zip(widths, widths[1:]))
    checkpoints = len(checkpoint_steps(steps, config.check_every))
    activations = k * sum(widths) * ACTIVATION_COPIES
    runs = runs or [(name, dtype) for dtype in config.dtype for name in (*config.impls, *config.impl)]
    memory = {f"{name} {dtype}": LOSS_COPIES * steps * 8 + 2 * checkpoints * params * _bytes(dtype)
              + activations * _bytes(dtype) + steps * TABLE_BYTES_PER_STEP for name, dtype in runs}
    stacks = [(ORACLE_DTYPE, 1), *((d, 3) for d in config.dtype)]
    for dtype, count in stacks:
        memory[f"the oracle's {dtype} run"] = count * (LOSS_COPIES * steps * _bytes(dtype)
                                                       + 2 * checkpoints * params * _bytes(dtype)
                                                       + activations * _bytes(dtype))
    while_training = sum(memory.values())  # every run and reference run at once: in its worker and here
    # the checks start once the truth and a dtype's reference runs are in: their workers have ended, so those
    # are held here only, while an implementation's run may still be training
    while_checking = sum(memory[f"{name} {dtype}"] for name, dtype in runs) + sum(
        count * checkpoints * params * _bytes(dtype) for dtype, count in stacks)
    copies = params if params * macs <= FULL_COMPLEX_STEP_MAX else VERIFY_DIRECTIONS
    per_state = 2 if params >= PARALLEL_PARAMS else 1  # workers computing the truths at the checkpoints
    truth_bytes = 2 * params * _bytes(ORACLE_DTYPE)  # a state's truth: gradients and their term scale
    checking = {
        "the oracle's complex step": per_state * copies * activations * 2 * _bytes(ORACLE_DTYPE),
        "the truths kept by the oracle's workers": per_state * min(CACHE_BYTES, checkpoints * truth_bytes),
        "the oracle's answers kept here": min(HELD_BYTES, checkpoints * (
            truth_bytes + ANSWERS_PER_STATE * params * sum(_bytes(d) for d in config.dtype))),
        "check calls in flight": min(IMPL_TRIP * BATCH_BYTES, IMPL_TRIP * FD_COPIES * params * 8)
        + min(ORACLE_TRIP * ORACLE_BATCH_BYTES, ORACLE_TRIP * checkpoints * params * 8),
    }
    memory.update(checking)
    while_checking += sum(checking.values())
    rates = {d: flop_seconds(d) for d in config.dtype}
    extended = Rates.measure()
    seconds = {}
    for name, dtype in runs:
        overhead = US_PER_STEP.get(name, OTHER_US_PER_STEP) * 1e-6
        seconds[f"{name} {dtype}"] = steps * (overhead + MATMULS_PER_STEP * macs * rates[dtype])
    for (name, dtype), per_step in (measured or {}).items():
        seconds[f"{name} {dtype}"] = steps * per_step
    for dtype, count in stacks:
        work = oracle_step_seconds(widths, k, extended) if dtype == ORACLE_DTYPE else \
            count * MATMULS_PER_STEP * macs * rates[dtype]
        seconds[f"the oracle's {dtype} run"] = steps * (REFERENCE_US_PER_STEP * 1e-6 + work)
    trajectories = max(sum(seconds.values()) / slots(), max(seconds.values()))
    checks = checkpoints * (len(runs) * PER_CHECKPOINT_CALL_S + state_seconds(widths, k, copies, extended))
    return Estimate(max(while_training, while_checking), trajectories + checks, max(memory, key=memory.get),
                    max(seconds, key=seconds.get), seconds)


def train_limits(needs: Estimate, config) -> dict[str, float]:
    """Seconds each run's ``train()`` (one call for its whole trajectory) may take where --time-limit was not
    given: ``TRAIN_LIMIT_MARGIN`` times its estimate, where that is more than the per-call default."""
    if config.time_limit is not None:  # the user's limit stands, for every call
        return {}
    return {key: TRAIN_LIMIT_MARGIN * seconds for key, seconds in needs.parts.items()
            if TRAIN_LIMIT_MARGIN * seconds > config.call_limit}


def per_step(impl, params, x, y, steps: int) -> float:
    """In the implementation's worker: seconds per step of its loop, timed on a second call (the first
    compiles or warms up)."""
    impl.train(params, x, y, steps)
    start = time.perf_counter()
    impl.train(params, x, y, steps)
    return (time.perf_counter() - start) / steps


def calibrate(coarse: Estimate, steps: int, x, y, impls: list, params) -> dict[tuple[str, str], float]:
    """Seconds per step of each implementation that ``coarse`` says is cheap enough to time (a few ms each),
    measured where it runs; one that raises is left to the estimate (its fault shows up when it trains)."""
    from harness.params import cast
    from harness.running.remote import where_it_lives

    found = {}
    for impl in impls:
        name, dtype = impl.name, impl.spec.dtype
        guess = _guess(coarse, f"{name} {dtype}", steps)
        if guess is None or 2 * CALIBRATION_STEPS * guess > CALIBRATION_MAX_S:
            continue
        args = (cast(params, dtype), x, y, CALIBRATION_STEPS)
        try:
            found[name, dtype] = where_it_lives(impl, per_step, *args, label="calibration")
        except Exception:  # noqa: BLE001 -- a Fault, or whatever an implementation built here raises
            continue
    return found


def _guess(coarse: Estimate, key: str, steps: int) -> float | None:
    return coarse.parts.get(key, 0.0) / steps if key in coarse.parts else None


def own_peak_bytes() -> int | None:
    """This process's peak resident memory over its life so far, where the system says (Linux: KiB)."""
    try:
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 if sys.platform == "linux" else None
    except ImportError:  # Windows
        return None


def available_bytes(meminfo: Path = Path("/proc/meminfo")) -> float | None:
    """Memory available to a new process (Linux's MemAvailable), or None where it cannot be read."""
    try:
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return float(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return float(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return None


def refusal(found: Estimate, max_hours: float, available: float | None, margin: float = 1.0) -> str | None:
    """Why the run must not start (one line), or None; ``margin`` > 1 refuses only runs that long past the
    limit (before calibration, when the time is a coarser estimate)."""
    if available is not None and found.bytes > MEMORY_HEADROOM * available:
        return (f"this run needs about {size(found.bytes)} of memory (most for {found.biggest_bytes}), and"
                f" {size(available)} is available; use fewer --steps, a larger --check-every or a smaller network")
    if found.seconds > margin * max_hours * 3600:
        return (f"this run is estimated at {duration(found.seconds)} (the longest part: {found.biggest_seconds}),"
                f" beyond --max-hours {max_hours:g}; raise --max-hours to run it anyway")
    return None


def duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def size(n: float) -> str:
    return f"{n / 2**30:.1f} GiB" if n >= 2**30 else f"{n / 2**20:.0f} MiB"
