"""Blame lands right: a bug planted in any one implementation fails that implementation and no other.

Each bug is planted in the implementation's own code (monkeypatched for one
test), every other implementation runs beside it, and the verdicts, not the
text, are asserted; then every failure line is checked to name the planted
implementation alone. The oracle imports nothing from impls/ but the spec, so
no plant can reach the truth.
"""
import re
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from harness.compare import compare
from harness.config import RunConfig
from impls.registry import DEFAULT

pytestmark = pytest.mark.slow  # the edit loop leaves this module out: pytest -m 'not slow'

SHORT = dict(steps=200, check_every=100, quiet=True)


def _plant_numpy(mp):
    import impls.np_notebook as m
    mp.setitem(m.ACTIVATION_PRIME, "tanh", lambda y: 1 - y**2 + 1e-3)


def _plant_numpy_fd(mp):
    import impls.np_fd as m
    right = m.prime
    mp.setattr(m, "prime", lambda fn, x: right(fn, x) * 1.001)


def _plant_torch(mp):
    import impls.torch_autograd as m
    mp.setitem(m.ACTIVATION, "tanh", lambda z: torch.tanh(z) * (1 + 1e-3))


def _plant_jax(mp):
    import impls.jax_grad as m
    mp.setitem(m.ACTIVATION, "tanh", lambda z: jnp.tanh(z) * (1 + 1e-3))


def _plant_numpy_fast(mp):
    import impls.np_fast_net as m
    mp.setattr(m, "_square", lambda out, x: [(np.positive, (out, x))])  # tanh' as 1 - out, not 1 - out**2


def _plant_jax_step(mp):
    import impls.jax_step as m
    right = m.JaxStep.__init__

    def init(self, spec):  # the per-step jit applies 1.001 times the update
        right(self, spec)

        def step(p, x, y):
            new, loss = self._step(p, x, y)
            return jax.tree.map(lambda a, b: a + 1.001 * (b - a), p, new), loss
        self._step_jit = jax.jit(step)
    mp.setattr(m.JaxStep, "__init__", init)


PLANTS = {"numpy": _plant_numpy, "numpy-fd": _plant_numpy_fd, "torch": _plant_torch, "jax": _plant_jax,
          "numpy-fast": _plant_numpy_fast, "jax-step": _plant_jax_step}
FLOAT64_ONLY = {"numpy-fd"}  # numpy-fd has no float32


def _names_only(line: str, impl: str) -> bool:
    """Whether a failure line's "<impl> <dtype>" is the planted implementation's."""
    return re.match(rf"^[a-z-]+: {re.escape(impl)} float(64|32)\b", line) is not None


@pytest.mark.in_process("the bug is planted by monkeypatching the implementation, which a worker would not see")
@pytest.mark.parametrize("planted", PLANTS)
def test_a_planted_bug_fails_that_implementation_and_no_other(monkeypatch, planted):
    PLANTS[planted](monkeypatch)
    impls = tuple(dict.fromkeys([*DEFAULT, planted]))
    outcome = compare(RunConfig(impls=impls, **SHORT), timings=False)
    failed = {(v.impl, v.dtype) for v in outcome.verdicts if not v.passed}
    expected = {(planted, "float64")} if planted in FLOAT64_ONLY else {(planted, "float64"), (planted, "float32")}
    assert failed == expected, outcome.failures
    assert outcome.failures and all(_names_only(line, planted) for line in outcome.failures), outcome.failures
    assert {(v.impl, v.dtype) for v in outcome.verdicts} >= {(i, "float64") for i in impls}


def test_a_planted_plugin_is_blamed_alone(tmp_path):
    from harness import compare as cli
    out = tmp_path / "r"
    result = subprocess.run([sys.executable, "-m", "harness.compare", "--steps", "200", "--check-every", "100",
                             "--impl", "tests.broken:TanhPrimeWrong", "--out", str(out), "--quiet", "--no-plots"],
                            capture_output=True, text=True)
    assert result.returncode == 1, result.stderr
    lines = [line for line in result.stdout.splitlines() if not line.startswith("results:")]
    assert lines and all(_names_only(line, "tanh-prime-wrong") for line in lines), lines
    verdicts = (out / "verdicts.csv").read_text().splitlines()
    assert sum(",fail," in row for row in verdicts) == 2 and sum(",pass," in row for row in verdicts) == 7
    assert cli  # the module the subprocess ran


def test_the_oracle_imports_nothing_from_impls_but_the_spec():
    code = ("import sys, harness.truth.oracle, harness.truth.references;"
            "print(sorted(m for m in sys.modules if m.startswith('impls')))")
    found = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert found.strip() == "['impls', 'impls.spec']"
