"""Every tolerance the harness and its tests use, each named once with the reason for its size.

All are *relative*, in the sense of ``harness.checks.arrays.rel_diff``: the largest
absolute difference over an array divided by the largest magnitude of the
reference array (norm-wise, so zero-initialised biases are not divided by 0).
u64 = 2**-53 = 1.1e-16 and u32 = 2**-24 = 6.0e-8 are the unit roundoffs.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Tolerance:
    rel: float
    reason: str


SAME_MATH_F64 = Tolerance(
    1e-12,
    "same formulas in another library (e.g. 1/(1+exp(-z)) against torch.sigmoid, another matmul"
    " order): each of the ~20 ops in a 2-4-1 forward and backward rounds to u64, so agreement is"
    " a few 1e-16 (measured <= 1.2e-15, also after 2,000 SGD steps); 1e-12 leaves three orders"
    " of headroom while any wrong derivative shows at 1e-3 or more",
)

NOTEBOOK_FD = Tolerance(
    1e-6,
    "the notebook's prime() takes a central difference with h = 1e-8; rounding in f(z +- h)"
    " costs about u64 * |f| / h = 1e-8 per derivative factor, and gradient elements are as"
    " small as 1e-2, so the relative error is 1e-8 to 1e-6 (measured 4e-8 at the notebook's"
    " initial weights)",
)

FD_CHECK_STEP = 1e-5  # about u64 ** (1/3) for O(1) parameters: balances truncation and rounding

FD_CHECK_F64 = Tolerance(
    1e-7,
    "a central difference of the summed loss with h = 1e-5 has truncation error h**2/6 * f'''"
    " ~ 1e-11 and rounding error u64 * |f| / h ~ 1e-11, so about 1e-9 relative to gradients of"
    " size 1e-2 (measured 1.5e-10); 1e-7 keeps two orders of headroom and still catches a wrong"
    " derivative, which is off by 1e-2 or more",
)

TRAJECTORY_F32 = Tolerance(
    1e-4,
    "float32 frameworks legitimately round differently (XLA's own tanh, other summation"
    " orders); each SGD update p - lr*g rounds to u32, so after n = 2,000 steps two runs can"
    " drift apart by about sqrt(n) * 2 * u32 = 5e-6 if the flips are random and at most"
    " n * 2 * u32 = 2.4e-4 if they all line up; 1e-4 sits between (measured 2e-7 among numpy,"
    " torch and jax), while a derivative bug moves the parameters by 1e-2 or more",
)

SAME_MATH_F32 = Tolerance(
    1e-4,
    "the same loss and gradients at the same parameters in float32: each op rounds to u32 = 6e-8,"
    " and kernels differ: XLA's CPU tanh is a fast approximation up to 4.3 ulp off (NumPy's 1.4,"
    " torch's 0.5, measured on [0.5, 4]); through tanh' = 1 - tanh**2 near saturation that is"
    " amplified 100-fold (measured 120 u32 = 1.2e-5 for jax on parity:3 after training, NumPy"
    " 2.5 u32); 1e-4 (about 1,700 u32) holds that, while a derivative bug is off by 1e-2 or more",
)

SAME_MATH_BF16 = Tolerance(
    1e-1,
    "bfloat16 keeps 8 significant bits (u = 2**-8 = 3.9e-3): each of the ~20 ops of a 2-4-1 forward and"
    " backward rounds to it, and kernels differ by an ulp or so, so two correct libraries part by several u"
    " at one state; 1e-1 (26 u) is the floor where nothing was measured. A bug smaller than that is below what"
    " bfloat16 arithmetic can show: a run whose allowance reaches what it compares is called inconclusive",
)

SAME_MATH_F16 = Tolerance(
    1e-2,
    "float16 keeps 11 significant bits (u = 2**-11 = 4.9e-4): the same ~20 rounded ops as bfloat16's floor,"
    " eight times finer; 1e-2 (20 u) is the floor where nothing was measured",
)

SAME_MATH = {"float64": SAME_MATH_F64, "float32": SAME_MATH_F32,  # teacher-forced, by dtype
             "bfloat16": SAME_MATH_BF16, "float16": SAME_MATH_F16}

TRAJECTORY = {"float64": SAME_MATH_F64, "float32": TRAJECTORY_F32,  # free-running floors, by dtype
              "bfloat16": SAME_MATH_BF16, "float16": SAME_MATH_F16}


REDUCED_MATMUL = Tolerance(
    1e-5,
    "a float32 matmul probe 256 deep (impls.interface.matmul_error), measured where each implementation runs:"
    " computed in float32 it lands within a few sqrt(256) * u32 of the exact product (measured 3.6e-7 for"
    " torch, 6.5e-7 for XLA and for torch's 'medium' on this CPU); one TF32 pass keeps 10 mantissa bits"
    " (u = 4.9e-4) and one bfloat16 pass 7 (u = 3.9e-3), which put it off by 1e-4 or more; 1e-5 sits between,"
    " so a product above it was not computed in float32",
)


@dataclass(frozen=True)
class Factor:
    """A multiple of something measured on the run itself."""

    times: float
    reason: str


IN_DTYPE_ORDER = Factor(
    2.0,
    "in a reduced dtype the update check computes the step once more in the dtype itself, in the spec's order of"
    " operations; a framework's order (keras: lr sqrt(1 - b2^t) / (1 - b1^t) first) rounds as far from the exact"
    " step, possibly on the other side, so twice that distance is allowed, on top of how its constants were"
    " rounded (measured: keras's float16 AMSGrad step 3.1e-2 from the exact rule's, 2.6e-2 of it from its"
    " constants, 0.5e-2 from float16 arithmetic, where the spec's order in float16 lands 1.3e-2 away); a planted"
    " update bug is off by the whole step",
)

SKIP_HEADROOM = Factor(
    2.0,
    "float16 loss scaling: where the oracle's policy decides differently at twice (or half) the scale reached,"
    " whether a step overflows is rounding's and either choice passes the update check: a correct"
    " implementation's sums can pass 65504 where the spec's do not (XLA's float16 reductions keep float16 partial"
    " sums, in its own order), and the scale moves in steps of 2; the trajectory still judges what follows",
)

UNFOLLOWED = Factor(
    3.0,
    "a run on the spec's trajectory does not follow a convention it states when the truth under that convention"
    " is more than 3 times the allowance from the spec's truth at a checkpoint: the run, within 1 allowance of the"
    " spec's truth, is then at least 2 allowances from the convention's (per parameter, the triangle inequality),"
    " so no rounding that the allowance covers can make both true",
)

FINGERPRINT_VALUES = Factor(
    3,
    "a mixed run is said to hold its loss (or master weights) in the low dtype when every one of at least 3 of"
    " its distinct nonzero values is a number of that dtype: a float32 computed from low-dtype values is one by"
    " chance with probability 2^-16 (bfloat16) or 2^-13 (float16), so 3 from a correct run happen with"
    " probability below 2^-39; distinct, because a stalled run repeats one loss (0.125 at outputs of exactly"
    " 0.5, which is one); the notebook's lr 1e-3 moves a bfloat16 loss through only a few values in 1,000 steps",
)


VS_REFERENCE = Factor(
    10.0,
    "at one state, an implementation may be up to 10 times further from exact than the oracle's own"
    " plain evaluations in the same dtype (its reverse mode in float64 or float32 with the textbook"
    " formulas, again with every activation output one ulp off, and for finite-difference gradients"
    " with the notebook's central differences): other kernels (XLA's tanh, fused multiply-adds,"
    " summation orders) cost a small constant factor of the unit roundoff, while a real bug costs"
    " orders of magnitude",
)

ROUNDING_FACTOR = Factor(
    10.0,
    "a free-running trajectory may stand up to 10 times as far from the truth as the rounding"
    " envelope measured on this run: the larger distance of the oracle's plain run in the dtype, and"
    " of its twin started one ulp away, from the truth and from each other (running max). Both are"
    " runs a correct implementation could produce; another kernel rounds each step by up to a few"
    " ulps (XLA's tanh: 4.3) instead of one, and the dynamics amplify both alike",
)

UPDATE_ULPS = Factor(
    4.0,
    "one step of the native loop against the truth's update rule fed the implementation's own gradient"
    " (harness.checks.updates): the step rounds to about half an ulp of itself per operation and"
    " p - step to half an ulp of the result, and a fused update (torch's foreach add with alpha, XLA's"
    " fusions) may round once instead of twice; 4 ulps of the largest new parameter and 4 of the step"
    " hold that, plus what the gradient floor and the rounding of the hyperparameters in the run's"
    " dtype move the step (measured by running the rule on those perturbed inputs). Judged relative to"
    " the size of the step itself",
)

REPRODUCE_ULPS = Factor(
    4.0,
    "a replay of the native loop from a recorded checkpoint runs the same code on the same state,"
    " so its losses and states match the recording to the last bit (measured: bitwise for numpy,"
    " torch and jax); 4 ulps allow a compiler that fuses a shorter scan differently",
)

ORACLE_SELF_CHECK = Tolerance(
    1024 * float(np.finfo(np.longdouble).eps),
    "the oracle's reverse mode against its complex step, relative to the gradient's term scale:"
    " both are exact to a few longdouble ulps (measured 2e-19 on 2-4-1); 1,024 longdouble ulps"
    " (1.1e-16 on x86-64) keep the truth exact to float64 and still flag any slip in either",
)


ORACLE_SAMPLES = 4  # reverse-mode evaluations in Monte Carlo arithmetic that measure a state's conditioning

ORACLE_CONDITIONED = Factor(
    16.0,
    "where the oracle's two methods differ by more than ORACLE_SELF_CHECK, each entry may differ by up to 16"
    " times how far its reverse mode moves when every activation output is one longdouble ulp off and every"
    " product half an ulp of its terms (ORACLE_SAMPLES seeded samples): at a trained state whose outputs"
    " nearly equal their targets, the residual out - y cancels and both exact methods lose digits alike"
    " (measured on 2-1-60-1 tanh, amsgrad lr 0.1: the gap up to 1.3 times the spread of 4 samples, and"
    " 5.6e-16 of the term scale; mpmath at 50 digits put reverse mode 1.7e-19 and complex step 6.3e-19 from the"
    " exact -3.26e-4, thousands of longdouble ulps of it, so neither method is wrong there); a slip in"
    " either method is off by far more than rounding moves it",
)


def floor(dtype: str, exact: bool = True) -> Tolerance:
    """The one-step error always allowed: finite-difference gradients get the notebook's own tolerance."""
    return SAME_MATH[dtype] if exact else NOTEBOOK_FD


def trajectory_floor(dtype: str, exact: bool = True) -> Tolerance:
    """The free-running error always allowed, before any measured rounding."""
    return TRAJECTORY[dtype] if exact else NOTEBOOK_FD


def allowed(dtype: str, reference_error: float, exact: bool = True) -> float:
    """Largest one-step relative error vs the truth that passes, given the oracle's plain error at that point."""
    return max(floor(dtype, exact).rel, VS_REFERENCE.times * reference_error)


def trajectory_allowed(dtype: str, rounding: np.ndarray, exact: bool = True) -> np.ndarray:
    """Largest free-running relative error that passes, given the rounding envelope at each point."""
    return np.maximum(trajectory_floor(dtype, exact).rel, ROUNDING_FACTOR.times * np.asarray(rounding, np.float64))


FD_RESOLUTION = Tolerance(
    0.01,
    "a finite-difference run is compared only while rounding in the notebook's central difference of the loss"
    " (u |loss| / h, h = 1e-8) is at most 1 % of the loss's derivative: past it (a net whose outputs reach"
    " 1e8 quantises the difference to whole multiples of 1e8), its gradients are rounding, each step up to"
    " 60 % off in any direction, and its trajectory says nothing about its method",
)

OVERFLOW_HEADROOM = Factor(
    4.0,
    "a run may overflow where the truth's summed loss is within 4 times the dtype's largest number: a loss"
    " formula's intermediates exceed the objective (torch's MSELoss sums (y - p)^2 before the harness's halving:"
    " 2x; a sum before its mean), so a correct run overflows there a step before the reference runs do"
    " (measured: torch-nn at step 277 of an exploding parity:5 net, the references at 278, the truth's summed"
    " loss 1.05e308 at 277)",
)

KERNEL_ULPS = Factor(
    16.0,
    "the most ulps an activation kernel may be off and still count as another library's rounding (measured"
    " at the states checked: XLA's float32 tanh up to 4.3, its float64 tanh 2.6, NumPy's 1.4, torch's 0.5);"
    " a kernel further off is a wrong activation (a planted tanh x (1 + 1e-3) is 8,000 float64 ulps off),"
    " so nothing is widened for it",
)

MC_SAMPLES = 8  # Monte Carlo evaluations per state (harness.checks.rounding): the spread's max settles by 8
MC_TRAJECTORIES = 8  # runs in Monte Carlo arithmetic that widen a dtype's envelope (one stack; 4 undersampled a chaotic
# AMSGrad run at lr 0.1, whose numpy-fd trajectory reached 1.04 times what they spanned)

MONTE_CARLO = Factor(
    10.0,
    "at a state where a one-step value exceeds the floor and the oracle's plain evaluations, it may be up to 10"
    " times further from the truth than the farthest of MC_SAMPLES evaluations in the run's dtype with every"
    " activation output moved at random by up to the implementation's own kernel error, measured there, and"
    " every product by half an ulp of its terms: the same factor as VS_REFERENCE, since the samples model"
    " the same rounding; 8 samples of a random walk can undershoot its extremes by a few times, and a real"
    " bug still costs orders of magnitude more (measured: at the saturated 2-60-1-1 state where XLA's tanh,"
    " 2.6 ulps off, moves jax's b1 gradient 3.5e-12 from the truth, the samples spread to 5.5e-12, while"
    " NumPy's plain evaluation is 3e-14 off)",
)
