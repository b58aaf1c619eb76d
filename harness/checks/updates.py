"""The update check: each native step against the truth's update rule fed the implementation's own gradients.

The expected step is the spec's optimizer (``harness.truth.optimizers``) under
the conventions the implementation states, computed in longdouble from the
state before the step and the gradient the implementation returns there. So a
wrong gradient does not fail this check (the gradient checks catch it) and a
stated convention does not fail it (the trajectory names it), while a wrong
step does: a missing bias correction, swapped betas, a buffer kept between runs.

For a stateful optimizer the expected step depends on every earlier gradient of
the run; ``ExpectedUpdates`` carries that state along a replayed run.
"""
from __future__ import annotations

from typing import Mapping

import ml_dtypes
import numpy as np

from harness.truth.optimizers import Rule, conventions_of, departures, initial_loss_scale
from harness.truth.oracle import EXTENDED, Oracle
from harness.truth.tolerances import IN_DTYPE_ORDER, SKIP_HEADROOM, UPDATE_ULPS, floor
from impls.interface import Implementation, Params, exact


class ExpectedUpdates:
    """The steps of one run as the truth's rule takes them from the implementation's gradients.

    Five rules run side by side (seven in a reduced dtype), with the hyperparameters rounded to the run's dtype
    as the implementation holds them: one fed the gradients, two fed them moved by
    plus and minus the dtype's gradient floor times the term scale, one with exact
    hyperparameters (a framework may keep them in double whatever the run's dtype:
    torch computes 1 - beta2 in Python floats), and one with Adam's bias corrections
    1 - beta^t computed in the run's dtype, where they cancel (optax and keras). How far the others land from
    the first is what rounding can move the step (for the gradients, the optimizer's
    own sensitivity: 1 for SGD, up to 1 / (1 - momentum) with a buffer, about
    m / sqrt(v) for Adam), and is allowed. In a reduced dtype a sixth takes 1 - beta from the exact betas and
    1 - beta^t from the rounded ones (keras), and a seventh computes the step in the dtype itself, and an Adam entry whose second moment is a subnormal there is not judged. Under float16 loss
    scaling it carries the scale and expects a skipped step where the oracle's policy overflows.
    """

    def __init__(self, impl: Implementation) -> None:
        spec, conventions = impl.spec, conventions_of(impl)
        self.spec, self.conventions = spec, conventions
        self.names = list(spec.param_shapes())
        held = spec.param_dtype  # where the optimizer's constants and state live (float32 under the mixed policy)
        self.rules = [Rule(spec, EXTENDED, conventions, constants=held) for _ in range(3)]
        self.rules.append(Rule(spec, EXTENDED, conventions))
        self.rules.append(Rule(spec, EXTENDED, conventions, corrections=held))
        # in a reduced dtype the optimizer's own arithmetic rounds there (Adam's v of a small gradient is a
        # float16 subnormal, its square root 20 % off): one more rule computes the step in the dtype itself
        self._in_dtype = np.dtype(held).itemsize < 4
        if self._in_dtype:  # and keras's mix there: 1 - beta from the exact betas, 1 - beta^t from rounded ones
            self.rules.append(Rule(spec, EXTENDED, conventions, constants=held, corrections=held,
                                   complements_exact=True))
            self.rules.append(Rule(spec, held, conventions))
        self.grad_floor = floor(spec.dtype, exact(impl)).rel
        # mixed float16: the dynamic loss scale the policy has reached, and finite steps since it last moved
        self.loss_scale, self._finite_run = initial_loss_scale(spec, conventions), 0

    def skips(self, params: Params, x: np.ndarray, y: np.ndarray) -> bool | None:
        """Whether the policy, under the implementation's stated conventions, skips its next step at ``params``
        (at the loss scale reached); None where rounding decides: the oracle's decision flips within
        ``SKIP_HEADROOM`` of that scale."""
        at = scaling_skips(self.spec, params, x, y, self.loss_scale, self.conventions)
        if self.loss_scale is None:
            return at
        other = self.loss_scale / SKIP_HEADROOM.times if at else self.loss_scale * SKIP_HEADROOM.times
        return None if scaling_skips(self.spec, params, x, y, other, self.conventions) != at else at

    def _scaled(self, skipped: bool) -> None:
        """Move the loss scale on by one step, as the policy does (``impls.spec.LossScale``)."""
        scaling = self.spec.loss_scale
        if scaling is None:
            return
        if skipped:
            self.loss_scale, self._finite_run = self.loss_scale * scaling.backoff, 0
            return
        self._finite_run += 1
        if self._finite_run == scaling.growth_interval:
            self.loss_scale, self._finite_run = self.loss_scale * scaling.growth, 0

    def _flat(self, arrays: Mapping[str, np.ndarray]) -> np.ndarray:
        return np.concatenate([np.asarray(arrays[k], EXTENDED).ravel() for k in self.names])

    def next(self, before: Params, grads: Mapping[str, np.ndarray], scale: Mapping[str, np.ndarray],
             skipped: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(parameters before, expected after, allowance from gradient rounding), all flat in longdouble;
        ``skipped``: loss scaling skips this step (no update; the schedule moves on)."""
        self._scaled(skipped)
        self.unjudged = None  # entries whose expected step rounding decides (set below in a reduced dtype)
        if skipped:
            for rule in self.rules:
                rule.skip()
            p = self._flat(before)
            return p, p.copy(), np.zeros_like(p)
        p, g = self._flat(before), self._flat(grads)
        moved = self.grad_floor * np.abs(self._flat(scale))
        out = []
        for rule, grad in zip(self.rules, (g, g + moved, g - moved, g, g, g, g)):
            if rule.dtype is EXTENDED:
                after = p.copy()
                rule.step(after, grad.copy())
            else:  # the rule in the run's reduced dtype, from the same state and gradients rounded there
                with np.errstate(all="ignore"):
                    after = p.astype(rule.dtype)
                    rule.step(after, grad.astype(rule.dtype))
                after = after.astype(EXTENDED)
            out.append(after)
        spread = [np.abs(other - out[0]) for other in out[1:]]
        allowance = np.max(spread[:-1] if self._in_dtype else spread, axis=0)
        if self._in_dtype:  # the dtype's own arithmetic rounds on top of how the constants were rounded, and
            allowance = allowance + IN_DTYPE_ORDER.times * spread[-1]  # another order of it as far again
        moment = self.rules[0].state.get("v")
        if self._in_dtype and moment is not None:  # a second moment below the dtype's normal range: a subnormal
            # with few bits (float16 eps 1e-8 rounds to 0 as well), so its step is rounding's, not judged
            self.unjudged = moment < ml_dtypes.finfo(np.dtype(self.spec.param_dtype)).smallest_normal
        return p, out[0], allowance

    def rows(self, impl: Implementation, step: int, before: Params, after: Params,
             grads: Mapping[str, np.ndarray], scale: Mapping[str, np.ndarray], skipped: bool | None = False
             ) -> list[dict]:
        """One native step (``before`` to ``after``) against the expected one, one row per parameter.

        Judged relative to the step's size, not to |p|: a step 0.1 % off moves p by far
        less than an ulp of p, but by 0.1 % of the step. Allowed: ``UPDATE_ULPS`` ulps of
        the new parameter and of the step, plus what gradient rounding can move it.
        """
        dtype, held = impl.spec.dtype, impl.spec.param_dtype
        scale_before = self.loss_scale
        if skipped is None:  # rounding decides whether this step overflows: the implementation's choice stands
            skipped = all(np.array_equal(np.asarray(after[k]), np.asarray(before[k], after[k].dtype)) for k in before)
        p, expected, allowance = self.next(before, grads, scale, skipped)
        new = self._flat(after)
        late = _late_schedule(impl.spec, step)  # the step as it would be at the lr before this step's decay
        shifted = None if late is None else p + late * (expected - p)
        rows, at = [], 0
        for name in self.names:
            part = slice(at, at + np.asarray(before[name]).size)
            at = part.stop
            judged = np.ones(part.stop - part.start, bool) if self.unjudged is None else ~self.unjudged[part]
            diff = np.max(np.abs(new[part] - expected[part])[judged], initial=0.0)
            size = np.max(np.abs(expected[part] - p[part]), initial=0.0)
            ulp = _ulp(np.max(np.abs(new[part]), initial=0.0), held)
            limit = UPDATE_ULPS.times * (ulp + _ulp(size, held)) + np.max(allowance[part], initial=0.0)
            size = size if size > 0 else EXTENDED(1)
            finite = bool(np.all(np.isfinite(new[part])))
            comparable = bool(np.isfinite(limit) and np.isfinite(size)  # the truth's own terms overflowed
                              and judged.any())
            rows.append({"check": "update", "impl": impl.name, "dtype": dtype, "step": step, "param": name,
                         "max_abs": float(diff), "rel": float(diff / size) if finite else float("inf"),
                         "ulps": float(diff / ulp) if ulp > 0 else float("inf"), "allowed": float(limit / size),
                         "passed": bool(not comparable or (finite and diff <= limit)), "judged": comparable,
                         "relu_kink": False,
                         "late": shifted is not None and bool(np.max(np.abs(new[part] - shifted[part]), initial=0.0)
                                                              <= limit * late)})
        if shifted is not None and any(not r["passed"] for r in rows) and all(r.pop("late") for r in rows):
            lr = impl.spec.lr * impl.spec.decay_factor ** ((step - 1) // impl.spec.decay_every)
            for r in rows:  # every parameter moved as the rule at the earlier lr moves it
                r["diagnosis"] = (f"its step {step} is the rule's at the learning rate of step {step - 1}"
                                  f" ({lr:g}): the step schedule decays one step late")
        for r in rows:
            r.pop("late", None)
        if self.loss_scale is not None and any(not r["passed"] for r in rows):
            stood = bool(np.all(new == p))  # no parameter moved: the implementation skipped the step
            why = (f"the policy skips this step (its float16 gradients overflow at loss scale {scale_before:g}),"
                   " and the implementation updated" if skipped else
                   f"the implementation skipped this step, where the policy's gradients are finite at loss scale"
                   f" {scale_before:g}" if stood else "")
            for r in rows:
                r["diagnosis"] = r.get("diagnosis") or why
        return rows


def _late_schedule(spec, step: int) -> float | None:
    """lr_{t-1} / lr_t where the step schedule decays at step t (t > 0), else None."""
    if spec.schedule != "step" or step < 1 or step % spec.decay_every:
        return None
    return 1 / spec.decay_factor


def _ulp(value, dtype: str) -> np.longdouble:
    """One ulp of |value| in ``dtype``, as a longdouble."""
    with np.errstate(over="ignore"):
        return np.spacing(np.asarray(value, dtype)).astype(EXTENDED)


def scaling_skips(spec, params: Params, x: np.ndarray, y: np.ndarray, loss_scale: float | None,
                  conventions: Mapping[str, str] | None = None) -> bool:
    """Whether the mixed policy skips a step at ``params``: its float16 gradients, with the loss scaled by
    ``loss_scale``, overflow (the oracle's plain run of one step says, under the stated ``conventions``)."""
    if loss_scale is None:
        return False
    oracle = Oracle(spec)
    oracle.train([params], x, y, 1, (), np.dtype(spec.dtype).type, textbook=True, loss_scale=loss_scale,
                 conventions=departures(spec, conventions or {}))
    return bool(oracle.effects[0].skipped)
