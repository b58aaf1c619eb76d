"""Imported last by the workers' fork server (``workers.PRELOAD_LAST``), never by the harness itself.

When the run ends, the fork server leaves through the interpreter's normal shutdown, which with torch and
JAX loaded spent about 0.5 s of CPU tearing their modules down (measured on the 2-4-1 default compare),
holding the run's stdout and stderr open all the while: a caller reading them (a pipe, ``subprocess``)
waited that long after the run had finished. An exit handler registered after every framework's runs
before theirs and ends the process at once. The fork server holds no state worth saving; the workers it
forked never run it (multiprocessing ends them with ``os._exit``).

The fork server also ends when the process it serves is stopped (Ctrl-C, SIGTERM) while asking it for a
worker: the request's socket closes half-read, and multiprocessing's loop lets that EOFError end the
process with a traceback, printed on the run's stderr under the run's own one-line "interrupted". That
ending is expected and is left quiet; any other error still prints.
"""
from __future__ import annotations

import atexit
import os
import sys


def _exit_now() -> None:
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def _quiet_when_left(kind, value, traceback) -> None:
    if not issubclass(kind, (EOFError, ConnectionError)):
        sys.__excepthook__(kind, value, traceback)


if sys.argv[:1] == ["-c"] and "multiprocessing.forkserver" in sys.modules:  # the fork server, not a caller
    atexit.register(_exit_now)
    sys.excepthook = _quiet_when_left
