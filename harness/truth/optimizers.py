"""The truth's update rules: each optimizer of ``impls.spec`` written anew from its definition there.

Shares no code with any implementation. One ``Rule`` steps one run: it keeps the
optimizer's state (momentum buffer, Adam's moments) and the step count, and
updates parameter arrays in place, in whatever real dtype they are (longdouble
for the truth, float64 or float32 for the reference runs). Its arrays may hold a
whole stack of runs, or every parameter of a network flattened: every rule is
element-wise.

A rule can follow the spec (the default) or a framework's stated conventions
(``impls.spec.CONVENTIONS``); the second is how the harness tells a trajectory
that parts from the spec *because of* a stated convention from one that parts
because of a bug.
"""
from __future__ import annotations

from typing import Mapping

import numpy as np

from impls.spec import CONVENTIONS, ModelSpec

SPEC_CONVENTIONS = {key: choices[0] for key, choices in CONVENTIONS.items()}
BIAS_SUM = "bias_grad_sum"  # not an optimizer's either: the oracle's backward pass follows it (float16 only)
RELU_CONVENTION = "relu_grad_at_zero"  # not an optimizer's: the oracle's slopes follow it (harness.truth.oracle)


def conventions_of(impl: object) -> dict[str, str]:
    """Every convention of ``impl`` (the spec's where it states none), refusing values the harness does not know.

    relu'(0) comes from the implementation's ``relu_grad_at_zero`` (any value in [0, 1])."""
    stated = dict(getattr(impl, "conventions", None) or {})
    if getattr(impl, RELU_CONVENTION, None) is not None:
        stated.setdefault(RELU_CONVENTION, f"{float(getattr(impl, RELU_CONVENTION)):g}")
    for key, value in stated.items():
        if key == RELU_CONVENTION and _unit_interval(value):
            continue
        if key not in CONVENTIONS or value not in CONVENTIONS[key]:
            raise ValueError(f"unknown convention {key}={value!r}; choose from"
                             f" {'; '.join(f'{k}: {v}' for k, v in CONVENTIONS.items())}")
    return {**SPEC_CONVENTIONS, **stated}


def departures(spec: ModelSpec, conventions: Mapping[str, str]) -> dict[str, str]:
    """The stated conventions that can change this spec's updates, where they differ from the spec's."""
    changing = spec.schedule != "constant"  # at a constant lr, lr inside or outside the buffer is one rule
    relevant = {"eps": spec.optimizer in ("adam", "amsgrad", "adamw") and spec.eps > 0,
                "nesterov": spec.optimizer == "nesterov" and changing,
                "weight_decay": spec.weight_decay > 0 and spec.optimizer != "adamw",
                "amsgrad_max": spec.optimizer == "amsgrad",
                "momentum_lr": spec.optimizer == "momentum" and changing,  # nesterov's form says where its lr goes
                "lr_dtype": True, RELU_CONVENTION: "relu" in spec.activations,
                "schedule_count": changing and spec.loss_scale is not None,
                "loss_scale_initial": spec.loss_scale is not None,
                BIAS_SUM: spec.dtype == "float16"}  # elsewhere: rounding only (bfloat16 has float32's range)
    return {k: v for k, v in conventions.items() if relevant[k] and v != SPEC_CONVENTIONS[k]}


def initial_loss_scale(spec: ModelSpec, conventions: Mapping[str, str] | None = None) -> float | None:
    """Where float16's dynamic loss scale starts under ``conventions`` (the spec's 2^16 unless stated), None
    where the policy does not scale."""
    if spec.loss_scale is None:
        return None
    stated = (conventions or {}).get("loss_scale_initial", SPEC_CONVENTIONS["loss_scale_initial"])
    return 2.0 ** int(stated.split("^")[1])


def _unit_interval(value: str) -> bool:
    try:
        return 0 <= float(value) <= 1
    except ValueError:
        return False


# Decoupled weight decay (AdamW) written four ways, each rounding differently in float32: the spec's, torch's
# in-place scaling, optax's decay added to the Adam direction before the one update, and keras's product order.
DECAY_FORMS = ("p - (lr wd) p", "p (1 - lr wd)", "p - lr (u + wd p)", "p - (p wd) lr")


class Rule:
    """One run's optimizer: ``step(p, g)`` applies update t (t = 0, 1, ...) to ``p`` in place."""

    def __init__(self, spec: ModelSpec, dtype, conventions: Mapping[str, str] | None = None,
                 constants=None, corrections=None, complements_exact: bool = False,
                 decay_form: str = DECAY_FORMS[0]) -> None:
        """``constants``: the dtype every hyperparameter is rounded to before use (default ``dtype``; a rule in
        longdouble that judges a float32 run rounds them as that run may); ``corrections``: the dtype Adam's
        bias corrections 1 - beta^t are computed in (default ``dtype``; in float32 they cancel: optax and keras
        compute them there while keeping 1 - beta from the double); ``complements_exact``: Adam's 1 - beta1 and
        1 - beta2 taken from the exact betas, then rounded (as optax and torch do in float32); ``decay_form``:
        how AdamW's decoupled decay is written (``DECAY_FORMS``)."""
        self.spec, self.dtype = spec, np.dtype(dtype).type
        self.conv = {**SPEC_CONVENTIONS, **(conventions or {})}
        self.t = 0  # optimizer steps taken (Adam's bias corrections count these)
        self.iteration = 0  # steps of the loop, taken or skipped (the schedule counts these)
        self.state: dict[str, np.ndarray] = {}
        rounded = np.dtype(constants or dtype).type
        self.c = lambda value: self.dtype(rounded(value))
        self._corrections = np.dtype(corrections or dtype).type
        self._complements_exact = complements_exact
        self._decay_form = decay_form
        self._lr0 = self.c(np.float32(spec.lr) if self.conv["lr_dtype"] == "float32" else spec.lr)
        self._constant = spec.schedule == "constant"
        if spec.optimizer == "sgd" and self._constant and spec.weight_decay == 0:
            self.step = self._sgd  # the notebook's rule, two calls a step (a 100,000-step truth runs it)

    def _sgd(self, p: np.ndarray, g: np.ndarray) -> None:
        self.t += 1
        self.iteration += 1
        np.multiply(g, self._lr0, out=g)
        np.subtract(p, g, out=p)

    def lr(self, t: int):
        """The learning rate of update t, in the rule's dtype."""
        if self._constant:
            return self._lr0
        return self._lr0 * self.c(self.spec.decay_factor) ** (t // self.spec.decay_every)

    def step(self, p: np.ndarray, g: np.ndarray) -> None:
        """Update t on ``p`` (in place) from the gradient ``g`` (which may be overwritten)."""
        spec, conv, t, c = self.spec, self.conv, self.t, self.c
        lr = self.lr(self.iteration)
        self.t += 1
        self.iteration += 1
        decay = None  # AdamW's decay term, when it joins the Adam direction (optax's form)
        if spec.weight_decay > 0:
            if spec.optimizer == "adamw":
                decay = self._decoupled(p, lr)
            elif conv["weight_decay"] == "decoupled, times lr":
                p -= lr * c(spec.weight_decay) * p
            else:
                g = g + c(spec.weight_decay) * p
        if spec.optimizer == "sgd":
            np.multiply(g, lr, out=g)
            np.subtract(p, g, out=p)
        elif spec.optimizer in ("momentum", "nesterov"):
            self._momentum(p, g, lr, t)
        else:
            self._adam(p, g, lr, t, decay)

    def skip(self) -> None:
        """A step skipped by loss scaling: no update and no optimizer step, but the schedule moves on (as
        torch's StepLR, stepped every iteration, does; under the "steps taken" convention it waits too)."""
        if self.conv["schedule_count"] == "every step":
            self.iteration += 1

    def _decoupled(self, p, lr):
        """AdamW's decay of ``p`` as ``decay_form`` writes it: applied now, or (optax's) returned to join the
        Adam direction."""
        wd, form = self.c(self.spec.weight_decay), self._decay_form
        if form == DECAY_FORMS[2]:
            return wd * p
        if form == DECAY_FORMS[1]:
            p *= self.c(1 - float(lr) * self.spec.weight_decay)  # the factor from the double, rounded once
        elif form == DECAY_FORMS[3]:
            p -= p * wd * lr
        else:
            p -= lr * wd * p
        return None

    def _momentum(self, p, g, lr, t) -> None:
        mu, s = self.c(self.spec.momentum), self.state
        nesterov = self.spec.optimizer == "nesterov"
        velocity = (self.conv["nesterov"] != SPEC_CONVENTIONS["nesterov"]) if nesterov else \
            self.conv["momentum_lr"] == "inside the buffer"
        if velocity:  # v = mu v - lr g (v = 0 before the first step): the learning rate lives in the buffer
            s["v"] = mu * s["v"] - lr * g if t else -lr * g
            p += (mu * s["v"] - lr * g) if nesterov else s["v"]
            return
        s["buf"] = mu * s["buf"] + g if t else np.array(g, copy=True)
        p -= lr * ((g + mu * s["buf"]) if nesterov else s["buf"])

    def _adam(self, p, g, lr, t, decay=None) -> None:
        c, s, spec = self.c, self.state, self.spec
        b1, b2, one = c(spec.beta1), c(spec.beta2), self.dtype(1)
        if not t:
            s["m"], s["v"] = np.zeros_like(p), np.zeros_like(p)
        one_b1, one_b2 = (c(1 - spec.beta1), c(1 - spec.beta2)) if self._complements_exact else (one - b1, one - b2)
        s["m"] = b1 * s["m"] + one_b1 * g
        s["v"] = b2 * s["v"] + one_b2 * g * g
        cd = self._corrections
        bc1, bc2 = (self.dtype(cd(1) - cd(beta) ** (t + 1)) for beta in (spec.beta1, spec.beta2))
        v_hat = s["v"] / bc2
        if spec.optimizer == "amsgrad":
            if self.conv["amsgrad_max"] == "over raw v":
                s["v_max"] = np.maximum(s["v_max"], s["v"]) if t else s["v"].copy()
                v_hat = s["v_max"] / bc2
            else:
                s["v_hat_max"] = np.maximum(s["v_hat_max"], v_hat) if t else v_hat.copy()
                v_hat = s["v_hat_max"]
        eps = c(spec.eps)
        if self.conv["eps"] == "before bias correction":  # eps added to sqrt(v) before it is corrected
            eps = eps / np.sqrt(bc2)
        if decay is None:
            p -= lr * (s["m"] / bc1) / (np.sqrt(v_hat) + eps)
        else:  # optax: the decay joins the direction u, then one step of -lr
            p -= lr * ((s["m"] / bc1) / (np.sqrt(v_hat) + eps) + decay)
