"""Isolation: an implementation that kills, exits or hangs its process becomes one fault line; the rest is compared."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness import compare
from harness.running.remote import RemoteImpl
from harness.running.workers import Worker, cause_of_death, pid_of
from harness.running.guard import Fault
from impls.registry import create
from impls.spec import ModelSpec
from tests import crashy
from tests.conftest import descendants, kill_group, wait_until

pytestmark = pytest.mark.slow  # the edit loop leaves this module out: pytest -m 'not slow'

ROOT = Path(__file__).resolve().parent.parent
SHORT = ["--steps", "20", "--check-every", "10", "--dtype", "float64", "--quiet", "--no-plots", "--no-timings"]


@pytest.mark.parametrize("plugin, line", [
    ("tests.crashy:SegfaultsInLossAndGrads", "faulty: crashy float64: killed by SIGSEGV during loss_and_grads()"),
    ("tests.crashy:ExitsInTrain", "faulty: exits float64: exited with code 3 during train()"),
])
def test_a_worker_that_dies_is_one_fault_line_and_the_rest_is_compared(plugin, line, tmp_path, capsys):
    out = tmp_path / "out"
    code = compare.main([*SHORT, "--impls", "numpy", "--impl", plugin, "--out", str(out)])
    printed = capsys.readouterr().out
    assert code == 1
    assert line in printed, printed
    assert "numpy" in (out / "verdicts.csv").read_text()  # the rest was compared and written


def test_a_hang_inside_c_is_stopped_at_the_time_limit(tmp_path, capsys):
    out = tmp_path / "out"
    start = time.perf_counter()
    code = compare.main([*SHORT, "--impls", "numpy", "--impl", "tests.crashy:HangsInC", "--time-limit", "3",
                         "--out", str(out)])
    assert code == 1 and time.perf_counter() - start < 60
    assert "forward() ran past the 3 s time limit and was stopped" in capsys.readouterr().out


def test_train_is_given_what_the_estimate_says_it_needs_where_no_time_limit_was_given(tmp_path, capsys, monkeypatch):
    """train() is one call for the whole trajectory: the 2,000-step 10-1024-1024-1 run's torch train() was stopped
    at the 600 s per-call default on a run its estimate had accepted. Here the default is 2 s and the plugin's
    train() takes 3 s more; with the estimate's margin made huge, train() may take what it needs."""
    from harness import config
    from harness.running import resources

    monkeypatch.setattr(config, "DEFAULT_TIME_LIMIT_S", 2.0)
    argv = [*SHORT, "--impls", "numpy", "--impl", "tests.crashy:SlowTrain"]
    monkeypatch.setattr(resources, "TRAIN_LIMIT_MARGIN", 1e9)
    assert compare.main([*argv, "--out", str(tmp_path / "given")]) == 0, capsys.readouterr().out
    assert compare.main([*argv, "--time-limit", "2", "--out", str(tmp_path / "asked")]) == 1  # the user's stands
    assert "train() ran past the 2 s time limit and was stopped" in capsys.readouterr().out


def test_train_limits_follow_the_estimate_only_where_it_is_longer_and_no_limit_was_given():
    from harness.config import DEFAULT_TIME_LIMIT_S, RunConfig
    from harness.running.resources import TRAIN_LIMIT_MARGIN, Estimate, train_limits

    long, short = 2 * DEFAULT_TIME_LIMIT_S, DEFAULT_TIME_LIMIT_S / (2 * TRAIN_LIMIT_MARGIN)
    needs = Estimate(0.0, long, "", "torch float64", {"torch float64": long, "numpy float64": short})
    assert train_limits(needs, RunConfig()) == {"torch float64": TRAIN_LIMIT_MARGIN * long}
    assert train_limits(needs, RunConfig(time_limit=30.0)) == {}
    assert RunConfig().call_limit == DEFAULT_TIME_LIMIT_S and RunConfig(time_limit=30.0).call_limit == 30.0


@pytest.mark.skipif(not Path("/proc/self/comm").exists(), reason="process names and peaks are read from Linux's /proc")
def test_a_worker_is_named_for_what_it_hosts_and_its_peak_memory_is_kept_after_it_ends():
    """The 2,000-step 10-1024-1024-1 run's OOM killer logged an 11.2 GB "python": which worker it was, nothing said."""
    from harness.running import workers

    workers.forget_peaks()
    worker = Worker("numpy float64", create, ("numpy", ModelSpec()))
    worker.attributes  # noqa: B018 -- built
    assert Path(f"/proc/{pid_of(worker)}/comm").read_text().strip() == "xh numpy f64"
    live = workers.peak_memory()["numpy float64"]
    worker.close()
    assert 10 * 2**20 < live <= workers.peak_memory()["numpy float64"] < 2**31  # a NumPy process: MBs, not GBs


def test_a_dead_worker_is_named_by_its_signal(data, notebook_params):
    impl = RemoteImpl(Worker("numpy float64", create, ("numpy", ModelSpec())), 60)
    os.kill(pid_of(impl.worker), signal.SIGKILL)  # as the kernel's OOM killer would
    with pytest.raises(Fault, match="killed by SIGKILL during forward"):
        impl.forward(notebook_params, data[0])
    with pytest.raises(Fault, match="not run: killed by SIGKILL"):  # and it stays dead
        impl.forward(notebook_params, data[0])
    assert cause_of_death(-11) == "killed by SIGSEGV" and cause_of_death(3) == "exited with code 3"


def test_a_worker_dead_long_before_the_next_call_is_named_by_its_signal_not_the_broken_pipe(data, notebook_params):
    """The 2,000-step 10-1024-1024-1 run said `loss_and_grads() raised BrokenPipeError` of a worker the OOM killer
    had ended minutes before: the call's arguments went into a pipe with no reader left."""
    impl = RemoteImpl(Worker("numpy float64", create, ("numpy", ModelSpec())), 60)
    impl.forward(notebook_params, data[0])  # built and answering
    os.kill(pid_of(impl.worker), signal.SIGKILL)
    wait_until(lambda: not impl.worker._process.is_alive(), 30, "the worker's end")  # noqa: SLF001
    with pytest.raises(Fault, match=r"^killed by SIGKILL during forward\(\) \(the kernel's OOM killer"):
        impl.forward(notebook_params, data[0])


def test_sigterm_ends_the_run_and_every_worker_at_once(tmp_path):
    """Even while an implementation computes inside C, the main process answers SIGTERM and leaves nothing."""
    out, asleep = tmp_path / "out", tmp_path / "asleep"
    proc = subprocess.Popen([sys.executable, "-m", "harness.compare", *SHORT, "--impls", "numpy",
                             "--impl", "tests.crashy:HangsInC", "--out", str(out)], cwd=ROOT,
                            env={**os.environ, crashy.ASLEEP: str(asleep)}, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        # every worker started (they start together), the plugin asleep in C since its validation's forward()
        wait_until(asleep.exists, 120, "the plugin to go to sleep in C")
        children = descendants(proc.pid)
        start = time.perf_counter()
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=30)
        assert code == 143 and time.perf_counter() - start < 5
        assert not out.exists()
        wait_until(lambda: not [pid for pid in children if _alive(pid)], 5,
                   "every worker to end (one outlived the run)")
    finally:
        kill_group(proc)  # what a failed check left running


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split()[2] != "Z"
