"""Calls into an implementation that may raise or hang: each becomes a one-line fault, not a crash."""
from __future__ import annotations

import signal
import threading
from contextlib import contextmanager
from typing import Callable, Iterator, TypeVar


T = TypeVar("T")


class Fault(Exception):
    """An implementation misbehaved; ``str(exc)`` is the one-line fault. ``kind`` is the class name of the
    exception a call raised in a worker process, if it raised one."""

    def __init__(self, message: str, kind: str | None = None) -> None:
        super().__init__(message)
        self.kind = kind


class Hang(BaseException):
    """Raised into a call that ran past its time limit (a BaseException, so ``except Exception`` in
    the implementation cannot swallow it)."""


@contextmanager
def time_limit(seconds: float, label: str) -> Iterator[None]:
    """Interrupt the block after ``seconds`` (main thread on POSIX only; elsewhere no limit is set)."""
    usable = seconds > 0 and hasattr(signal, "setitimer") and threading.current_thread() is threading.main_thread()
    if not usable:
        yield
        return

    def expire(signum, frame):
        raise Hang(f"{label} ran past the {seconds:g} s time limit and was stopped")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def guarded(label: str, fn: Callable[[], T], seconds: float, passes: tuple[type[Exception], ...] = ()) -> T:
    """``fn()``, or Fault naming ``label`` when it raises or runs past ``seconds``; an exception of a type in
    ``passes`` goes through as it is (the caller's own, e.g. the oracle's: never an implementation's fault)."""
    try:
        with time_limit(seconds, label):
            return fn()
    except Hang as exc:
        raise Fault(str(exc)) from None
    except Fault:
        raise  # already one line (a call into a worker that raised, died or hung)
    except passes:
        raise
    except Exception as exc:
        raise Fault(f"{label} raised {type(exc).__name__}: {one_line(exc)}") from None


def one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else "(no message)"
