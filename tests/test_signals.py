"""Ctrl-C and SIGTERM stop a command wherever its main thread is, and what it leaves behind stays quiet."""
import gc
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.cli import Interrupted, stopping_on_signals

ROOT = Path(__file__).resolve().parent.parent


def test_a_signal_that_arrives_inside_a_gc_callback_still_stops_the_command():
    """Hypothesis times the garbage collector with a gc callback; a SIGTERM handled inside it raised Interrupted
    where Python can only print it, and harness.fuzz ran on (a CI run waited 120 s for it). It is sent again."""
    def callback(phase, info):
        if phase == "start" and not sent:
            sent.append(True)
            os.kill(os.getpid(), signal.SIGTERM)
            for _ in range(10_000):  # bytecodes, so the handler runs here, inside the callback
                pass

    sent: list[bool] = []
    before = (signal.getsignal(signal.SIGTERM), sys.unraisablehook)
    gc.callbacks.append(callback)
    try:
        with pytest.raises(Interrupted) as stopped, stopping_on_signals():
            gc.collect()
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:  # the command's work, running on if the signal was lost
                time.sleep(0.001)
    finally:
        gc.callbacks.remove(callback)
    assert sent and stopped.value.code == 143
    assert (signal.getsignal(signal.SIGTERM), sys.unraisablehook) == before  # both put back


def test_other_unraisable_errors_still_reach_the_hook_before():
    seen = []
    before, sys.unraisablehook = sys.unraisablehook, seen.append
    try:
        with stopping_on_signals():
            class Noisy:
                def __del__(self):
                    raise ValueError("in __del__")
            Noisy()
    finally:
        sys.unraisablehook = before
    assert [type(u.exc_value) for u in seen] == [ValueError]


@pytest.mark.slow
def test_a_worker_and_the_fork_server_left_mid_request_print_nothing():
    """The parent stops while a worker is still building its object, and while the fork server reads a request:
    neither prints a traceback under the command's one-line 'interrupted' (both did)."""
    script = """if True:
        import os, socket, time
        from multiprocessing import forkserver
        from harness.running.workers import Worker
        w = Worker("slow", time.sleep, (1,))  # builds for 1 s, then finds its parent gone
        time.sleep(0.5)
        s = socket.socket(socket.AF_UNIX)  # a fork request cut short, as when the parent is stopped in one
        s.connect(forkserver._forkserver._forkserver_address)
        s.close()
        time.sleep(0.2)
        os._exit(0)
    """
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stderr == "", done.stderr  # stderr closes once the worker has ended


@pytest.mark.slow
def test_a_plain_fork_worker_ends_when_its_parent_ends_without_stopping_it():
    """A SIGTERM between a worker's fork and its bookkeeping left the parent exiting with that worker unknown to
    ``stop_all``: the worker held the parent's end of its own pipe, never saw it close, and waited for ever."""
    script = """if True:
        import os
        from harness.running.workers import Worker, pid_of
        w = Worker("oracle-like", dict, (), numpy_only=True)  # a plain fork: no framework is loaded here
        w.attributes
        print(pid_of(w), flush=True)
        os._exit(0)  # as if stopped before the worker was registered: nothing stops it
    """
    with subprocess.Popen([sys.executable, "-c", script], cwd=ROOT, stdout=subprocess.PIPE, text=True) as parent:
        pid = int(parent.stdout.readline())  # not read to its end: the worker, if it lives, holds it open
        parent.wait(60)
    deadline = time.monotonic() + 10
    while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:  # an orphan is reaped by init at once
        time.sleep(0.05)
    alive = Path(f"/proc/{pid}").exists()
    if alive:
        os.kill(pid, signal.SIGKILL)
    assert not alive, "the worker outlived its parent"
