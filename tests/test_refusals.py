"""Input that no run can serve is refused up front (exit 2, one line); a harness bug is one line and exit 3."""
import re
from pathlib import Path

import pytest

from harness import compare
from harness.config import RunConfig
from harness.data import load
from harness.running import resources

pytestmark = pytest.mark.slow  # the edit loop leaves this module out: pytest -m 'not slow'

QUIET = ["--quiet", "--no-plots"]


@pytest.mark.parametrize("argv, message", [
    (["--steps", "20000000000", "--impls", "numpy", "--dtype", "float64"], "of memory (most for"),
    (["--layers", "2,200000,200000,1", "--activations", "tanh,tanh,sigmoid"], "of memory (most for"),
    (["--dataset", "parity:16", "--layers", "16,4096,4096,1", "--activations", "tanh,tanh,sigmoid", "--steps", "3",
      "--check-every", "1", "--impls", "numpy", "--dtype", "float64"], "this run needs about"),
    (["--steps", "2000000", "--max-hours", "0.01"], "beyond --max-hours 0.01"),
    (["--lr", "1e308"], "--lr 1e+308 overflows float32"),
])
def test_a_run_that_cannot_fit_is_refused_before_it_starts(argv, message, tmp_path, capsys):
    out = tmp_path / "out"
    assert compare.main([*argv, *QUIET, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1, err
    assert not out.exists()


def test_the_estimate_of_the_default_run_is_of_the_right_size():
    """The default compare takes about 30 s here; the estimate must be within a factor of 3 of that."""
    config = RunConfig()
    found = resources.estimate(config, load(config.dataset)[0])
    # torch's two runs share one overhead per step; which is bigger is decided by the matmul rate measured
    # in each dtype at that moment (a test beside this one slowed the float32 one once)
    assert 10 < found.seconds < 90 and found.biggest_seconds in ("torch float64", "torch float32")
    assert found.bytes < 2**30


def test_a_bug_in_the_harness_is_one_line_exit_3_with_the_traceback_saved(tmp_path, capsys, monkeypatch):
    out = tmp_path / "out"

    def broken(*args, **kwargs):
        raise ZeroDivisionError("planted")

    monkeypatch.setattr(compare.summary, "summary_md", broken)
    code = compare.main(["--steps", "3", "--impls", "numpy", *QUIET, "--out", str(out)])
    err = capsys.readouterr().err.strip()
    assert code == 3 and len(err.splitlines()) == 1
    assert err.startswith("harness.compare: internal error: ZeroDivisionError: planted; traceback saved to ")
    saved = Path(re.search(r"traceback saved to (\S+);", err).group(1))
    assert "Traceback" in saved.read_text() and "planted" in saved.read_text()
    assert not out.exists()


def test_a_long_run_is_timed_in_its_workers_and_refused_past_max_hours(tmp_path, capsys):
    """Coarsely about a minute (within twice the limit), so the implementations are timed in their workers;
    measured, it is still past the 36 s limit: refused before any trajectory, nothing written."""
    out = tmp_path / "out"
    argv = ["--steps", "2000000", "--impls", "numpy", "--dtype", "float64", "--max-hours", "0.01"]
    assert compare.main([*argv, *QUIET, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert "beyond --max-hours 0.01" in err and len(err.splitlines()) == 1, err
    assert not out.exists()


def test_calibrated_costs_replace_the_guess():
    config = RunConfig(steps=1000, impls=("numpy",), dtype=("float64",))
    x = load(config.dataset)[0]
    guessed = resources.estimate(config, x).parts["numpy float64"]
    measured = resources.estimate(config, x, {("numpy", "float64"): 1.0}).parts["numpy float64"]
    assert measured == 1000.0 and guessed < 1.0


def test_the_oracles_cost_follows_its_split_products(monkeypatch):
    """At fixed rates (this machine's, rounded): the truth's step of a 1024-wide net costs its split products and
    activations, a tenth or less of what NumPy's loop would cost, so a 2,000-step check fits the default
    --max-hours; a thin product keeps the loop's cost."""
    rates = resources.Rates(loop=6e-9, blas=2.5e-11, element=5e-9, tanh=5e-8, complex_tanh=1.7e-7)
    monkeypatch.setattr(resources.Rates, "measure", classmethod(lambda cls: rates))
    assert resources.product_seconds(4, 2, 4, rates) == 32 * rates.loop
    widths, k = (10, 1024, 1024, 1), 1024
    loop_only = 3 * sum((n + 1) * m for n, m in zip(widths, widths[1:])) * k * rates.loop
    assert resources.oracle_step_seconds(widths, k, rates) < loop_only / 10
    config = RunConfig(layers=widths, activations=("tanh", "tanh", "sigmoid"), dataset="parity:10", steps=2000,
                       impls=("numpy",), dtype=("float64",))
    found = resources.estimate(config, load(config.dataset)[0])
    assert resources.refusal(found, config.max_hours, None) is None
    assert found.biggest_seconds == "the oracle's longdouble run"


def test_the_oracles_blas_rate_is_measured_on_one_thread_as_its_workers_compute(monkeypatch):
    """A BLAS thread a core, beside a busy core, measured products many times slower than the oracle's
    one-thread workers take them, and the estimate refused runs that fit."""
    from threadpoolctl import threadpool_info

    threads = []

    def best(work):
        threads.append(max((p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"), default=1))
        return 1e-3

    monkeypatch.setattr(resources, "_best", best)
    resources.Rates.measure()
    assert threads[0] == 1  # the first timing is the float64 BLAS product
