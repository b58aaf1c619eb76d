"""python -m harness.frameworks: its input errors, and the table it builds from a comparison's results."""
from __future__ import annotations

import pandas as pd

from harness.checks.verdict import Finding, Verdict
from harness.frameworks import main
from harness.reporting import frameworks


def test_too_few_steps_is_a_one_line_error(tmp_path, capsys):
    assert main(["--steps", "3", "--out", str(tmp_path / "x")]) == 2
    assert "--steps must be >= 10" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_rows_give_each_distance_and_what_was_named():
    def table(step, errors):
        return pd.DataFrame([{"impl": impl, "step": step, "param": p, "rel_err": e}
                             for impl, by_param in errors.items() for p, e in by_param.items()])
    early = pd.concat([table(k, {"keras": {"w0": 1e-7 * k, "b0": 2e-7 * k}, "numpy": {"w0": 0.0}})
                       for k in frameworks.EARLY])
    whole = table(99, {"keras": {"w0": 3e-5}, "numpy": {"w0": 1e-15}})
    named = Finding("convention", "keras", "float64", 1, detail="update rule of keras adam at step 1: eps ...")
    verdicts = [Verdict("numpy", "float64", "pass"), Verdict("keras", "float64", "pass", (named,))]
    rows = {r["impl"]: r for r in frameworks.rows("adam", "shared", early, whole, verdicts, 99)}
    assert rows["keras"]["dist_step_1"] == 2e-7 and rows["keras"]["dist_step_10"] == 2e-6
    assert rows["keras"]["dist_end"] == 3e-5 and rows["keras"]["named"].startswith("update rule of keras adam")
    assert rows["numpy"]["named"] == "" and rows["numpy"]["verdict"] == "pass"
