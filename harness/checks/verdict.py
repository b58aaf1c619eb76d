"""The one verdict: every check's typed results in, one outcome per implementation and dtype out.

``decide`` is the only place that says pass or fail. The headline, every
verdict column, the failure lines, the sweep's ``passed`` column and the exit
code are all rendered from what it returns, never from message text.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from harness.checks.trajectory import RELU_BRANCH, Divergence

PASS, CONVENTION, FAIL, FAULTY = "pass", "convention", "fail", "faulty"
# nothing failed, but the free-running comparison could not have failed: what rounding is allowed at the end is as
# large as how far the truth moves over the whole run (a bfloat16 run whose updates round away, say)
INCONCLUSIVE = "inconclusive"
STATUSES = (PASS, CONVENTION, INCONCLUSIVE, FAIL, FAULTY)
NOT_FAILING = ("convention",)  # findings that are named in the report but do not fail the run (unless strict)
# compared up to there, named, never failing: a relu branch taken apart from the truth with every step right, and
# a finite-difference run past where its difference resolves the loss's derivative
NEVER_FAILING = ("branch", "resolution", INCONCLUSIVE)


@dataclass(frozen=True)
class Finding:
    """One reason an implementation fails, with what was compared."""

    check: str  # teacher-forced, finite-difference, update, trajectory, blow-up, notebook, fault, convention
    impl: str
    dtype: str
    step: int | None = None
    param: str = ""
    rel: float | None = None
    allowed: float | None = None
    count: int = 1  # values out of tolerance in this check
    detail: str = ""  # the line printed (notebook), the fault, a relu'(0) note
    detected_by: str = ""  # trajectory: "loss" or "parameters"
    cause: str = ""  # trajectory: what the replay names (see harness.checks.replay)
    cause_step: int | None = None  # trajectory: the state at which the cause was found
    allowed_by: str = ""  # where the allowance at that state came from (floor, plain evaluations, monte carlo...)
    oracle_at: int | None = None  # blow-up: the truth's first non-finite loss
    reference_at: int | None = None  # blow-up: the dtype's reference runs' first non-finite loss
    under: tuple[str, ...] = ()  # trajectory: the stated conventions it was judged under (it follows them to step)


@dataclass(frozen=True)
class Verdict:
    """The outcome of one implementation in one dtype."""

    impl: str
    dtype: str
    status: str  # PASS, CONVENTION (parted from the spec only by what it states, checked), INCONCLUSIVE, FAIL or
    # FAULTY
    findings: tuple[Finding, ...] = field(default=())
    strict: bool = False  # decided under --strict: a convention fails

    @property
    def failing(self) -> tuple[Finding, ...]:
        """The findings that fail the run (a convention only when strict)."""
        return tuple(f for f in self.findings if f.check not in NEVER_FAILING
                     and (self.strict or f.check not in NOT_FAILING))

    @property
    def named(self) -> tuple[Finding, ...]:
        """The findings named without failing the run: conventions (unless strict), relu branches, resolution,
        an inconclusive trajectory."""
        return tuple(f for f in self.findings if f.check in NEVER_FAILING or (not self.strict
                                                                               and f.check in NOT_FAILING))

    @property
    def passed(self) -> bool:
        """Whether the run is accepted: it matches the spec, or differs only by a convention it states."""
        return self.status in (PASS, CONVENTION)


def decide(compared: list[tuple[str, str]], gradients: pd.DataFrame, divergences: list[Divergence],
           faults: dict[tuple[str, str], list[str]], notebook_misses: dict[tuple[str, str], str],
           relu_kink_notes: dict[str, str] | None = None, strict: bool = False) -> list[Verdict]:
    """One Verdict per implementation and dtype: compared ones in order, then the faulty ones.

    A run fails on any failed one-step row (teacher-forced, update, judged
    finite-difference), on a divergence from the truth beyond what is allowed
    (whatever the replay names as its cause), on a blow-up that comes before
    every reference run's where rounding cannot explain an overflow, or on a
    missed notebook line. A fault outranks all. A divergence that the implementation's stated conventions
    explain (``harness.checks.conventions``), or a one-step row that the truth under its stated relu'(0)
    matches, is a "convention" finding: the status is CONVENTION, which passes unless ``strict``.
    """
    findings: dict[tuple[str, str], list[Finding]] = {key: [] for key in compared}
    failed = gradients[~gradients.passed]
    explained = failed.convention.astype(bool) if "convention" in failed else pd.Series(False, failed.index)
    for (check, impl, dtype), bad in failed[~explained].groupby(["check", "impl", "dtype"], sort=False):
        first = bad.sort_values("step", kind="stable").iloc[0]
        note = (relu_kink_notes or {}).get(impl, "") if bool(first.relu_kink) else str(first.get("diagnosis", "") or "")
        findings.setdefault((impl, dtype), []).append(Finding(
            check, impl, dtype, int(first.step), str(first.param), float(first.rel), float(first.allowed), len(bad),
            note, allowed_by=str(first.get("allowed_by", "") or "")))
    for (check, impl, dtype), named in failed[explained].groupby(["check", "impl", "dtype"], sort=False):
        first = named.sort_values("step", kind="stable").iloc[0]
        findings.setdefault((impl, dtype), []).append(Finding(
            "convention", impl, dtype, int(first.step), str(first.param), float(first.rel), float(first.allowed),
            len(named), first.convention, cause=check))
    for d in divergences:
        key = (d.impl, d.dtype)
        if d.unresolved_at is not None:  # named; the trajectory was judged up to there
            findings[key].append(Finding("resolution", d.impl, d.dtype, d.unresolved_at, "loss"))
        judged = d.unresolved_at is None or (d.nonfinite_at or 0) < d.unresolved_at  # past it nothing is judged
        if d.nonfinite_at is not None and judged and _before_every_reference(d) and not d.overflow_explained:
            findings[key].append(Finding("blow-up", d.impl, d.dtype, d.nonfinite_at, "loss",
                                         oracle_at=d.oracle_nonfinite_at, reference_at=d.reference_nonfinite_at))
        if d.inconclusive is not None and d.step is None:
            allowed, moved, own = d.inconclusive
            findings[key].append(Finding(INCONCLUSIVE, d.impl, d.dtype, d.inconclusive_at, "params", moved, allowed,
                                         detail=inconclusive_detail(allowed, moved, own)))
        for line in d.unfollowed:  # a stated convention the run does not follow: its statement is wrong
            findings[key].append(Finding("stated", d.impl, d.dtype, detail=line))
        if d.step is not None and d.cause == RELU_BRANCH:  # compared up to there; named, never a failure
            findings[key].append(Finding("branch", d.impl, d.dtype, d.step, d.param, d.rel, d.allowed,
                                         detected_by=d.detected_by, cause=d.cause, cause_step=d.cause_step))
        elif d.step is not None and d.cause == "convention":  # named, and not a failure
            findings[key].append(Finding("convention", d.impl, d.dtype, d.step, d.param, d.rel, d.allowed,
                                         detail="; ".join(map(str, d.conventions)),
                                         detected_by=d.detected_by, cause=d.cause, cause_step=d.cause_step))
        elif d.step is not None:
            note = (relu_kink_notes or {}).get(d.impl, "") if d.relu_kink else d.diagnosis
            findings[key].append(Finding("trajectory", d.impl, d.dtype, d.step, d.param, d.rel, d.allowed,
                                         detail=note, detected_by=d.detected_by, cause=d.cause,
                                         cause_step=d.cause_step, allowed_by=d.allowed_by, under=d.judged_under))
    for key, line in notebook_misses.items():
        findings.setdefault(key, []).append(Finding("notebook", *key, detail=line))
    for key, found in faults.items():
        findings.setdefault(key, []).extend(Finding("fault", *key, detail=fault) for fault in found)
    verdicts = []
    for (impl, dtype), found in findings.items():
        failing = [f for f in found if f.check not in NEVER_FAILING and (strict or f.check not in NOT_FAILING)]
        status = FAULTY if any(f.check == "fault" for f in found) else FAIL if failing else \
            INCONCLUSIVE if any(f.check == INCONCLUSIVE for f in found) else \
            CONVENTION if any(f.check in NOT_FAILING for f in found) else PASS
        verdicts.append(Verdict(impl, dtype, status, tuple(found), strict))
    return verdicts


def inconclusive_detail(allowed: float, moved: float, own: float) -> str:
    """Why a run's trajectory check could not have failed."""
    stalled = f"; its own parameters moved {own:.1e}, so its updates rounded away" if own < moved / 2 else ""
    return (f"the rounding allowed at the end ({allowed:.1e} of the largest parameter) is as large as how far the"
            f" truth moves over the whole run ({moved:.1e}), so a run that never trained would pass{stalled}")


def _before_every_reference(d: Divergence) -> bool:
    """A blow-up fails when it comes before both the truth's and the dtype's reference runs'."""
    others = [k for k in (d.oracle_nonfinite_at, d.reference_nonfinite_at) if k is not None]
    return all(d.nonfinite_at < k for k in others)


def exit_code(verdicts: list[Verdict]) -> int:
    """0 when something was compared and every implementation passed; 1 otherwise."""
    return 0 if verdicts and all(v.passed for v in verdicts) else 1


def passed(verdicts: list[Verdict], impl: str, dtype: str) -> bool | None:
    """The verdict of one implementation and dtype (None if it was not compared)."""
    return next((v.passed for v in verdicts if (v.impl, v.dtype) == (impl, dtype)), None)
