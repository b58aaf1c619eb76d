"""One-step checks at given states: loss and gradients against the oracle's truth, the native loop's
single update against the truth's rule fed its own gradient, and gradients against finite differences of each implementation's own
forward pass."""
from __future__ import annotations

import functools
from typing import Iterable, Mapping

import numpy as np
import pandas as pd

from harness.checks import rounding
from harness.checks.updates import ExpectedUpdates
from harness.checks.arrays import along, cast, error_row, fd_directions, finite_difference_grads
from harness.running.remote import batched
from harness.running.spill import digest
from harness.truth.oracle import NOTEBOOK_FD_STEP, Oracle
from harness.checks.conventions import phrase
from harness.truth.optimizers import RELU_CONVENTION, conventions_of
from harness.truth.tolerances import FD_CHECK_F64, FD_CHECK_STEP, NOTEBOOK_FD, VS_REFERENCE, allowed, floor
from impls.interface import Implementation, Params, exact

FD_MAX_DIRECTIONS = 16  # a parameter with more entries is probed along 16 seeded random +-1 directions

COLUMNS = ["check", "impl", "dtype", "step", "param", "max_abs", "rel", "ulps", "allowed", "passed", "judged",
           "relu_kink", "convention", "allowed_by", "diagnosis"]


def table(rows: list[dict]) -> pd.DataFrame:
    """Typed even when empty, so tables concatenate without turning ``passed`` into objects. ``convention``
    names the stated convention under which a failing row's value matches the truth ("" where none does)."""
    blank = {"convention": "", "allowed_by": "", "diagnosis": ""}
    return pd.DataFrame([{**blank, **row} for row in rows], columns=COLUMNS).astype(
        {"step": int, "passed": bool, "judged": bool, "relu_kink": bool, "convention": str, "allowed_by": str,
         "diagnosis": str})


def at_relu_kink(oracle: Oracle, params: Params, x: np.ndarray) -> bool:
    """Whether some relu layer's pre-activation is exactly 0 here, where relu'(0) conventions part."""
    relu = [i for i, act in enumerate(oracle.spec.activations) if act == "relu"]
    if not relu:
        return False
    z = oracle.preactivations(params, x)
    return any(np.any(z[i] == 0) for i in relu)


def loss_and_grads(impl: Implementation, params: Params, x, y) -> dict[str, np.ndarray]:
    """The implementation's loss and gradients as one dict (``loss`` first)."""
    loss, grads = impl.loss_and_grads(params, x, y)
    return {"loss": np.asarray(loss), **grads}


def teacher_forced(impls: list[Implementation], oracle: Oracle, states: Mapping[int, Params], x: np.ndarray,
                   y: np.ndarray, updates: bool = True) -> pd.DataFrame:
    """Every implementation at the same parameters (``states``, cast to its dtype) against the truth.

    Errors are relative to the gradients' per-sample terms (``Truth.scale``). What is
    allowed at each point is set by the oracle's own plain evaluation in the dtype
    there (``tolerances.allowed``). With ``updates``, one step of each native loop
    from the same state is checked too (``harness.checks.updates``).
    """
    dtypes = list(dict.fromkeys(impl.spec.dtype for impl in impls))  # in run order
    # each implementation's calls at every state, made as its answers are taken (a large network's go in
    # round trips of a bounded size, ``batched``), on copies of the state (the truth's stays as it was)
    answers = {impl.name: _one_step_answers(impl, states, x, y, updates) for impl in impls}
    _prefetch(oracle, _one_step_points(impls, states), x, y)
    rows, kernels = [], {}
    for step in states:
        for dtype in dtypes:
            params = cast(states[step], dtype)
            truth = oracle.truth(params, x, y)
            exact_values = {"loss": truth.loss, **truth.grads}
            kink = at_relu_kink(oracle, params, x)
            for impl in (i for i in impls if i.spec.dtype == dtype):
                got, after = next(answers[impl.name])
                plain = plain_errors(oracle, params, x, y, dtype, exact(impl), truth)
                sampled = None  # what Monte Carlo arithmetic allows here, measured only when a value needs it
                for name, ref in exact_values.items():
                    error = error_row(got[name], ref, dtype, truth.scale[name])
                    limit = allowed(dtype, plain[name], exact(impl))
                    source = "floor" if limit == floor(dtype, exact(impl)).rel else "plain evaluations"
                    if not error["rel"] <= limit:  # judged again within what rounding can do at this state
                        sampled = sampled or rounding.allowance(impl, oracle, params, x, y, dtype, step, truth,
                                                                kernels) or ({}, "")
                        if sampled[0].get(name, 0.0) > limit:
                            limit, source = sampled[0][name], sampled[1]
                    ok = bool(error["rel"] <= limit)
                    rows.append({"check": "teacher-forced", "impl": impl.name, "dtype": dtype, "step": step,
                                 "param": name, **error, "allowed": float(limit), "passed": ok,
                                 "judged": True, "relu_kink": kink, "allowed_by": source,
                                 "convention": "" if ok or not kink else
                                 relu_convention(impl, oracle, params, x, y, name, got[name], dtype, limit)})
                if updates:  # one step from fresh optimizer state
                    expected = ExpectedUpdates(impl)
                    rows += expected.rows(impl, step, params, after, got, truth.scale, expected.skips(params, x, y))
    return table(rows)


def _one_step_answers(impl: Implementation, states: Mapping[int, Params], x, y, updates: bool):
    """(loss and gradients as one dict, the state one native step later or None) at each state, in order."""
    def calls():
        for state in states.values():
            params = {k: np.array(v) for k, v in cast(state, impl.spec.dtype).items()}
            yield "loss_and_grads", (params, x, y)
            if updates:
                yield "train", (params, x, y, 1)
    found = batched(impl, calls())
    for _ in states:
        loss, grads = next(found)
        yield {"loss": np.asarray(loss), **grads}, next(found).params if updates else None


def relu_convention(impl: Implementation, oracle: Oracle, params: Params, x, y, name: str, got, dtype: str,
                    limit: float) -> str:
    """At a relu kink: the implementation's stated relu'(0), named, where the truth under it (the oracle rerun
    with that slope) matches ``got`` within ``limit``; "" where it states the spec's 0 or that does not hold."""
    stated = conventions_of(impl).get(RELU_CONVENTION, "0")
    if float(stated) == 0:
        return ""
    under = _oracle_under(oracle.spec, float(stated)).truth(params, x, y)
    ref = under.loss if name == "loss" else under.grads[name]
    if error_row(got, ref, dtype, under.scale[name])["rel"] <= limit:
        return phrase(RELU_CONVENTION, stated)
    return ""


@functools.lru_cache(maxsize=8)
def _oracle_under(spec, relu0: float) -> Oracle:
    """One oracle per spec and stated relu'(0), so its truths are cached across the rows of a state."""
    return Oracle(spec, relu0)


def plain_errors(oracle: Oracle, params: Params, x, y, dtype: str, exact_grads: bool, truth) -> dict[str, float]:
    """Per value (loss, each gradient): the largest error from the truth of the oracle's own plain evaluations in
    ``dtype`` that a correct implementation may round like: textbook slopes, and the same with every activation
    output one ulp off (XLA's float32 tanh is up to 4 ulps off, and near saturation 1 - tanh^2 amplifies it);
    for finite-difference gradients also the notebook's central difference of each activation (h = 1e-8),
    whose roundoff grows as eps |f| / h |f'| where an activation saturates."""
    key = (oracle.spec, dtype, exact_grads, digest(([np.asarray(params[k]) for k in sorted(params)], np.asarray(x))))
    if key in _PLAIN:  # every run in the dtype is judged at the same states: evaluate each once
        return _PLAIN[key]
    worst: dict[str, float] = {}
    for options in _variants(exact_grads):
        loss, grads, _ = oracle.reverse(params, x, y, np.dtype(dtype).type, **options)
        for name, value in {"loss": loss, **grads}.items():
            ref = truth.loss if name == "loss" else truth.grads[name]
            rel = error_row(value, ref, dtype, truth.scale[name])["rel"]
            worst[name] = max(worst.get(name, 0.0), rel)
    if len(_PLAIN) > 4096:
        _PLAIN.clear()
    _PLAIN[key] = worst
    return worst


_PLAIN: dict[tuple, dict[str, float]] = {}


def _variants(exact_grads: bool) -> list[dict]:
    """The oracle's plain evaluations a correct implementation may round like (``plain_errors``)."""
    return [{"textbook": True}, {"textbook": True, "kernel_ulp": True},
            *([] if exact_grads else [{"fd_step": NOTEBOOK_FD_STEP}])]


def prefetch_truths(oracle, impls: list[Implementation], states: Mapping[int, Params],
                    fd_impls: list[Implementation], fd_states: Mapping[int, Params], x: np.ndarray,
                    y: np.ndarray) -> None:
    """Every answer of the oracle that ``teacher_forced(impls, oracle, states)`` and
    ``finite_differences(fd_impls, oracle, fd_states)`` will ask for, computed now where the oracle lives in a
    worker, so that a caller can keep the oracle's time apart from the implementations'."""
    _prefetch(oracle, _one_step_points(impls, states), x, y)
    _prefetch(oracle, _difference_points(fd_impls, fd_states), x, y)


def _one_step_points(impls: list[Implementation], states: Mapping[int, Params]):
    """(params, dtype, exactness) of each state in each dtype of ``impls``: what the one-step checks ask at."""
    dtypes = list(dict.fromkeys(impl.spec.dtype for impl in impls))
    for state in states.values():
        for dtype in dtypes:
            yield cast(state, dtype), dtype, {exact(i) for i in impls if i.spec.dtype == dtype}


def _difference_points(impls: list[Implementation], states: Mapping[int, Params]):
    """(params, "float64", exactness) of each state: what the finite-difference checks of ``impls`` ask at
    (``plain_errors`` is asked only for implementations whose gradients are not exact)."""
    inexact = {False} if any(not exact(impl) for impl in impls) else set()
    for state in states.values() if impls else ():
        yield cast(state, "float64"), "float64", inexact


def _prefetch(oracle, points: Iterable[tuple[Params, str, set[bool]]], x: np.ndarray, y: np.ndarray) -> None:
    """The oracle's answers at every (params, dtype, exact gradients or not) point the checks will ask about,
    computed in as few round trips as its worker takes (``RemoteOracle.prefetch``); ``points`` may be a
    generator, so a large network's states are cast only as they are sent."""
    if not hasattr(oracle, "prefetch"):
        return
    relu = "relu" in oracle.spec.activations

    def requests():
        for params, dtype, exactness in points:
            yield "truth", (params, x, y), {}
            if relu:
                yield "preactivations", (params, x), {}
            for exact_grads in sorted(exactness):
                for options in _variants(exact_grads):
                    yield "reverse", (params, x, y, np.dtype(dtype).type), options
    oracle.prefetch(requests())


def finite_differences(impls: list[Implementation], oracle: Oracle, states: Mapping[int, Params],
                       x: np.ndarray, y: np.ndarray) -> pd.DataFrame:
    """Each float64 implementation's gradients against central differences of its own forward pass.

    A row is judged only where the difference quotient is a derivative: not at a relu
    kink (a pre-activation exactly 0), and only where the estimates with h and h/2
    agree to a tenth of the tolerance (steep, saturated states after a blow-up fail that).
    Rows not judged are kept, with ``judged`` False, and never fail.
    """
    _prefetch(oracle, _difference_points(impls, states), x, y)
    rows = []
    for step, state in states.items():
        params = cast(state, "float64")
        truth = oracle.truth(params, x, y)
        scale = truth.scale
        wider = None  # what the method allows at this state, measured only when a value needs it
        kink = at_relu_kink(oracle, params, x)  # a difference quotient across a kink is no derivative
        for impl in impls:
            # finite-difference gradients: as far off as the notebook's own method is at this state (plain_errors)
            limit = FD_CHECK_F64.rel if exact(impl) else \
                max(NOTEBOOK_FD.rel, VS_REFERENCE.times * max(plain_errors(oracle, params, x, y, "float64", False,
                                                                           truth).values()))
            _, grads = impl.loss_and_grads(params, x, y)
            forwards = lambda moved: batched(impl, (("forward", (m, x)) for m in moved))  # noqa: E731
            estimate = finite_difference_grads(impl, params, x, y, FD_CHECK_STEP, FD_MAX_DIRECTIONS, forwards)
            halved = finite_difference_grads(impl, params, x, y, FD_CHECK_STEP / 2, FD_MAX_DIRECTIONS, forwards)
            for name, ref in estimate.items():
                directions = fd_directions(params[name].shape, name, FD_MAX_DIRECTIONS)
                size = along(np.abs(directions), scale[name])
                error = error_row(along(directions, grads[name]), ref, "float64", size)
                here, source = limit, "floor" if exact(impl) else "plain evaluations"
                if not error["rel"] <= here:  # judged again within what the method itself does at this state
                    wider = wider or rounding.difference_allowance(
                        oracle.spec, params, x, y, truth, (FD_CHECK_STEP, FD_CHECK_STEP / 2), FD_MAX_DIRECTIONS)
                    if wider[0][name] > here:
                        here, source = wider[0][name], wider[1]
                stable = error_row(halved[name], ref, "float64", size)["rel"] <= here / 10
                judged = stable and not kink
                rows.append({"check": "finite-difference", "impl": impl.name, "dtype": "float64", "step": step,
                             "param": name, **error, "allowed": float(here),
                             "passed": bool(not judged or error["rel"] <= here), "judged": judged,
                             "relu_kink": kink, "allowed_by": source})
    return table(rows)
