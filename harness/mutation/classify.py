"""The score of one mutant, from typed verdicts only (never from the failure text)."""
from __future__ import annotations

from typing import Iterable, Protocol

CAUGHT_RIGHT = "caught, blamed right"
CAUGHT_OTHER = "caught, blamed on another"
SURVIVED = "survived"
HARNESS_ERROR = "harness error"
EQUIVALENT = "equivalent"  # a survivor judged behaviour-preserving on inspection (judgements.csv)
CATEGORIES = (CAUGHT_RIGHT, CAUGHT_OTHER, SURVIVED, EQUIVALENT, HARNESS_ERROR)  # report order
FAILING = ("fail", "faulty")  # harness.checks.verdict's FAIL and FAULTY


class VerdictLike(Protocol):
    impl: str
    dtype: str
    status: str


def failing(verdicts: Iterable[VerdictLike]) -> list[VerdictLike]:
    """The verdicts that did not pass."""
    return [v for v in verdicts if v.status in FAILING]


def classify(verdicts: Iterable[VerdictLike], expected: Iterable[str]) -> str:
    """CAUGHT_RIGHT, CAUGHT_OTHER or SURVIVED for the verdicts of every comparison run on one mutant.

    ``expected`` names the implementations that use the mutated module: a failing
    verdict of any other implementation makes the mutant blamed on another.
    """
    bad = failing(verdicts)
    if not bad:
        return SURVIVED
    return CAUGHT_RIGHT if all(v.impl in set(expected) for v in bad) else CAUGHT_OTHER
