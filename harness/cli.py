"""What every command shares: its parser, the bad-input error, the exit-code ladder and the signals it stops on.

Exit codes, the same for every command:
0 everything checked passed; 1 a check failed (or a benchmark target was missed);
2 bad usage (one line, nothing written); 3 an internal error (one line, the traceback
in a file: ``harness.internal``); 4 the Dask workers run other versions (sweep, fuzz);
130 interrupted by Ctrl-C, 143 by SIGTERM (nothing written).
"""
from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from contextlib import contextmanager
from typing import Iterator

OK, FAILED, USAGE, INTERNAL, VERSION_MISMATCH = 0, 1, 2, 3, 4
INTERRUPTED = {signal.SIGINT: 130, signal.SIGTERM: 143}  # 128 + signal number, the shell's convention


class UsageError(Exception):
    """Bad command-line input; ``str(exc)`` is the one-line message."""


class Parser(argparse.ArgumentParser):
    """argparse, but a bad argument is a UsageError (one line) instead of a usage dump and exit."""

    def error(self, message: str):
        raise UsageError(message)


class Interrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM arrived; the command stops and writes nothing. ``code`` is its exit code. A
    KeyboardInterrupt, so whatever stops at once for Ctrl-C (Hypothesis between examples, a pool) does for
    SIGTERM too, instead of taking it for a failing example."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum
        self.code = INTERRUPTED[signum]


def interrupted_code(exc: BaseException) -> int:
    """The exit code of an Interrupted or a KeyboardInterrupt."""
    return exc.code if isinstance(exc, Interrupted) else INTERRUPTED[signal.SIGINT]


def _raise(signum, frame):
    raise Interrupted(signum)


REDELIVER_S = 0.01  # after an Interrupted that Python could only print: long enough to be out of the callback


def _redeliver(signum: int) -> None:
    if signal.getsignal(signum) is _raise:  # the command has not finished meanwhile
        os.kill(os.getpid(), signum)


def _unraisable(previous):
    """A sys.unraisablehook that sends again a signal whose Interrupted was raised where Python can only print
    it and go on (a gc callback, such as Hypothesis's, or a ``__del__``): without it that signal is lost and the
    command runs on. The signal comes back from another thread, once that callback has returned."""
    def hook(unraisable) -> None:
        if isinstance(unraisable.exc_value, Interrupted):
            again = threading.Timer(REDELIVER_S, _redeliver, (unraisable.exc_value.signum,))
            again.daemon = True
            again.start()
        else:
            previous(unraisable)
    return hook


@contextmanager
def stopping_on_signals() -> Iterator[None]:
    """Within the block SIGINT and SIGTERM raise Interrupted (caught as the command's 130 or 143), wherever
    the main thread is when they arrive."""
    previous = {s: signal.signal(s, _raise) for s in INTERRUPTED}
    previous_hook, sys.unraisablehook = sys.unraisablehook, _unraisable(sys.unraisablehook)
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        sys.unraisablehook = previous_hook
