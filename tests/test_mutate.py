"""python -m harness.mutate: the import map, the scoring, the sample, the report, bad options (no campaign here)."""
from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from harness import mutate
from harness.checks.verdict import FAIL, FAULTY, PASS, Verdict
from harness.mutation import classify as c
from harness.mutation import mutant, report, runone, session, usage

pytestmark = pytest.mark.slow  # the edit loop leaves this module out: pytest -m 'not slow'

ROOT = Path(__file__).resolve().parent.parent
ALL = ("numpy", "numpy-fd", "torch", "jax", "numpy-fast", "jax-step", "torch-compile", "torch-loop", "torch-nn",
       "jax-optax", "keras")


def test_each_module_is_used_by_the_implementations_that_import_it():
    users = usage.users(ROOT)
    assert users["impls.np_notebook"] == ("numpy", "numpy-fd", "numpy-fast")
    assert users["impls.np_backprop"] == ("numpy",)
    assert users["impls.np_optim"] == ("numpy", "numpy-fd", "numpy-fast")
    assert users["impls.jax_grad"] == ("jax", "jax-step")
    assert users["impls.jax_common"] == ("jax", "jax-step", "jax-optax", "keras")  # the JAX boundary helpers
    assert users["impls.keras_native"] == ("keras",)
    assert users["impls.torch_autograd"] == ("torch", "torch-compile", "torch-loop")
    assert users["impls.torch_common"] == ("torch", "torch-compile", "torch-loop", "torch-nn")  # the torch boundary
    assert users["impls.np_fast"] == ("numpy-fast",)
    for shared in ("impls.spec", "impls.interface", "impls.registry"):
        assert users[shared] == ALL
        assert usage.group(shared, users[shared], ALL) == ("shared" if shared != "impls.spec" else usage.SPEC_GROUP)
    assert usage.group("impls.jax_step", users["impls.jax_step"], ALL) == "impls.jax_step"
    assert usage.default_impls(ROOT) == ("numpy", "numpy-fd", "torch", "jax")


def test_relative_and_package_imports_are_followed(tmp_path):
    pkg = tmp_path / "impls"
    pkg.mkdir()
    for name, text in {"__init__.py": "", "a.py": "from . import b\n", "b.py": "from .c import x\n", "c.py": "x = 1\n",
                       "d.py": "import numpy\nfrom impls import a\n"}.items():
        (pkg / name).write_text(text)
    known = set(usage.package_modules(tmp_path))
    assert usage.imports_of(pkg / "a.py", known) == {"impls", "impls.b"}
    assert usage.imports_of(pkg / "b.py", known) == {"impls", "impls.c"}
    assert usage.imports_of(pkg / "d.py", known) == {"impls", "impls.a"}


def _v(impl: str, status: str, dtype: str = "float64") -> Verdict:
    return Verdict(impl, dtype, status)


@pytest.mark.parametrize("verdicts, category", [
    ([_v("numpy", PASS), _v("torch", PASS)], c.SURVIVED),
    ([_v("numpy", FAIL), _v("torch", PASS)], c.CAUGHT_RIGHT),
    ([_v("numpy", FAULTY, "float32"), _v("numpy-fd", FAIL)], c.CAUGHT_RIGHT),
    ([_v("numpy", FAIL), _v("torch", FAIL)], c.CAUGHT_OTHER),
    ([_v("numpy", PASS), _v("jax", FAULTY)], c.CAUGHT_OTHER),
], ids=["all-pass", "expected-fails", "faulty-counts", "another-fails-too", "only-another"])
def test_classification_from_typed_verdicts(verdicts, category):
    assert c.classify(verdicts, expected=("numpy", "numpy-fd")) == category


def test_a_comparison_that_raised_is_a_harness_error():
    assert runone.score({"error": "ValueError: x", "comparisons": [], "expected": []}) == c.HARNESS_ERROR
    ok = {"error": None, "expected": ["numpy"],
          "comparisons": [{"verdicts": [{"impl": "numpy", "dtype": "float64", "status": FAIL}]}]}
    assert runone.score(ok) == c.CAUGHT_RIGHT


def _mutants() -> list[session.Mutant]:
    """Module a: 3 sites with 11, 1 and 1 mutants; module b: 2 sites of 1."""
    out = [session.Mutant(f"a{k}", "impls/a.py", f"core/ReplaceBinaryOperator_Add_{k}", k, 5, 4) for k in range(11)]
    out += [session.Mutant("n", "impls/a.py", "core/NumberReplacer", 0, 7, 0),
            session.Mutant("u", "impls/a.py", "core/AddNot", 0, 9, 0)]
    out += [session.Mutant(f"b{k}", "impls/b.py", "core/NumberReplacer", k, 3 + k, 0) for k in range(2)]
    return out


def test_the_sample_is_seeded_stratified_and_visits_every_site_first(monkeypatch):
    monkeypatch.setattr(session, "MIN_PER_MODULE", 1)
    picked = session.sample(_mutants(), 5, seed=0)
    assert len(picked) == 5 and picked == session.sample(_mutants(), 5, seed=0)
    a = [m for m in picked if m.path == "impls/a.py"]
    assert len({m.site for m in a}) == 3  # three sites in a, so three mutants there before any second one
    assert {m.path for m in picked} == {"impls/a.py", "impls/b.py"}
    assert session.sample(_mutants(), None, seed=0) == _mutants()


def test_the_key_names_the_change_not_the_line_number():
    before, after = "x = 1\ny = a + b\n", "x = 1\ny = a - b\n"
    shifted = "# new line\n" + before, "# new line\n" + after
    assert mutant.key("impls.m", before, after) == mutant.key("impls.m", *shifted)
    assert mutant.summary(before, after) == "L2: y = a + b -> y = a - b"
    assert mutant.summary(*shifted).startswith("L3:")


def _row(key: str, measured: str, group: str = "impls.np_fast") -> dict:
    return {"id": key, "key": key, "module": group, "group": group, "line": 1, "operator": "op", "change": "L1: a -> b",
            "expected": "numpy-fast", "ran": "numpy", "failing": "", "measured": measured, "error": "", "wall_s": 1.0}


def test_judgements_turn_survivors_into_equivalents_and_the_report_is_written(tmp_path):
    out = tmp_path / "mutation"
    out.mkdir()
    (out / report.JUDGEMENTS).write_text("key,module,change,judgement,reason\n"
                                         "k1,impls.np_fast,L1: a -> b,equivalent,x * 1\n")
    raw = [_row("k1", c.SURVIVED), _row("k2", c.SURVIVED), _row("k3", c.CAUGHT_RIGHT)]
    meta = {"command": "python -m harness.mutate", "finished": "now", "wall_s": 60.0, "jobs": 1, "tool": "t",
            "versions": "v", "operators": "o", "sample_note": "all.", "per_mutant": "p", "categories_note": "n",
            "generated": {"impls.np_fast": 3}}
    folder, counts = report.write(out, raw, meta)
    assert counts == Counter({c.EQUIVALENT: 1, c.SURVIVED: 1, c.CAUGHT_RIGHT: 1})
    assert report.score(counts) == 0.5
    text = (folder / "summary.md").read_text()
    assert "**Score: 50.0 %**" in text and "| k2 | `L1: a -> b` | REAL MISS | NOT YET INSPECTED |" in text
    assert "k2,impls.np_fast" in (folder / report.JUDGEMENTS).read_text()  # a line to fill in
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mutation"]  # no temporary folder left
    assert report.load(folder)[0] == raw


def test_a_bad_judgement_is_an_error_naming_the_key(tmp_path):
    (tmp_path / report.JUDGEMENTS).write_text("key,module,change,judgement,reason\nk9,m,c,maybe,r\n")
    with pytest.raises(ValueError, match="key k9: judgement must be one of"):
        report.read_judgements(tmp_path)


BAD = [
    (["--jobs", "0"], "--jobs must be in 1.."),
    (["--modules", "np_fast,nope"], "unknown module 'nope' in --modules"),
    (["--sample", "0"], "--sample must be a whole number >= 1 or 'all', got '0'"),
    (["--seed", "-1"], "--seed must be >= 0, got -1"),
    (["--bogus"], "unrecognized arguments: --bogus"),
    (["run-one"], "the following arguments are required: --pristine, --out"),
    (["report", "--out", "/nonexistent/mutation"], "holds no finished campaign"),
]


@pytest.mark.parametrize("argv, message", BAD, ids=[" ".join(a) for a, _ in BAD])
def test_bad_options_are_one_line_and_exit_2(capsys, argv, message):
    assert mutate.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("harness.mutate: error: ") and err.count("\n") == 1 and message in err


def test_the_cause_of_a_miss_is_the_reasons_first_words():
    assert report.cause("miss: config gap: odd sizes only") == "config gap"
    assert report.cause("NOT YET INSPECTED") == "uninspected"
    assert report.cause("miss: a long reason without any tag in front of it, but: a colon later on") == "other"


def test_the_spec_is_reported_apart_and_left_out_of_the_score(tmp_path):
    from harness.mutation.usage import SPEC_GROUP

    raw = [_row("k1", c.CAUGHT_RIGHT), _row("k2", c.SURVIVED, SPEC_GROUP), _row("k3", c.SURVIVED, SPEC_GROUP)]
    meta = {"command": "python -m harness.mutate", "finished": "now", "wall_s": 60.0, "jobs": 1, "tool": "t",
            "versions": "v", "operators": "o", "sample_note": "all.", "per_mutant": "p", "categories_note": "n",
            "generated": {"impls.np_fast": 1, SPEC_GROUP: 2}}
    folder, _ = report.write(tmp_path / "mutation", raw, meta)
    text = (folder / "summary.md").read_text()
    assert "**Score: 100.0 %** of 1 non-equivalent mutants" in text and report.SPEC_NOTE in text
    assert f"| {SPEC_GROUP} | 2 | 0 | 2 | 0 | 0 | 2 | 0 | 0 | 0.0 % |" in text
    assert "| **all but the spec** | 1 | 0 | 1 | 1 | 0 | 0 | 0 | 0 | 100.0 % |" in text
