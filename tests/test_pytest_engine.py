"""The hidden suites are pytest modules: run directly or through `python -m autograder grade`, same outcomes.

`python -m pytest autograder/suites/<assignment> --submission X.ipynb` is what an instructor types to read, select
(-k, -m, -x) and debug (--pdb) hidden tests; `grade()` runs the very same tests through the same plugin.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from autograder.hidden import SuiteError, hidden, hidden_test_of
from autograder.runner import grade
from autograder.suites import load_suite
from tests.catalog.a1_attention import MUTANTS
from tests.variants import REPO, write_variant

pytestmark = pytest.mark.engine

ASSIGNMENT = "a1_attention"
NOTEBOOK = load_suite(ASSIGNMENT).notebook
THREE_MUTANTS = ["softmax_without_max_subtraction", "attention_scaled_by_d_k", "softmax_detached_denominator"]


def run_pytest(notebook: Path, out: Path, *extra: str) -> tuple[subprocess.CompletedProcess, dict]:
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", f"autograder/suites/{ASSIGNMENT}", "--submission", str(notebook),
         "--results", str(out), "-q", *extra],
        cwd=REPO, capture_output=True, text=True, timeout=300)
    results = json.loads(out.read_text()) if out.exists() else {}
    return proc, results


def outcomes(results_json: dict) -> dict[str, tuple[float, str]]:
    return {t["name"]: (t["score"], t.get("output", "")) for t in results_json["tests"]}


def submissions(tmp_path: Path) -> dict[str, Path]:
    mutants = {m.name: m for m in MUTANTS}
    found = {"solution": REPO / "solutions" / ASSIGNMENT / NOTEBOOK,
             "release": REPO / "assignments" / ASSIGNMENT / NOTEBOOK}
    for name in THREE_MUTANTS:
        folder = tmp_path / name
        folder.mkdir()
        found[name] = write_variant(ASSIGNMENT, mutants[name].cells, folder)
    return found


def test_pytest_and_the_grader_agree_test_by_test(tmp_path, server):
    """Solution, release and three mutants: every test's score and message are the same both ways."""
    from autograder.report import gradescope

    for label, notebook in submissions(tmp_path).items():
        proc, direct = run_pytest(notebook, tmp_path / f"{label}.json")
        assert direct, f"{label}: pytest wrote no results.json:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        graded = gradescope(grade(notebook, assignment=ASSIGNMENT, server=server))
        assert outcomes(direct) == outcomes(graded), label
        failed = sum(1 for t in direct["tests"] if t["score"] < t["max_score"])
        assert proc.returncode == (1 if failed else 0), (label, proc.stdout[-2000:])
        if label == "solution":
            assert failed == 0
        else:
            assert failed > 0, label


def test_pytest_selects_and_reports_like_pytest(tmp_path):
    """-k picks tests by name, the assignment marker works with -m, and a failure prints the student's message."""
    notebook = submissions(tmp_path)["attention_scaled_by_d_k"]
    proc, results = run_pytest(notebook, tmp_path / "k.json", "-k", "attention_matches_reference",
                               "-m", ASSIGNMENT)
    names = [t["name"].split(": ", 1)[1] for t in results["tests"]]
    assert len(names) == 2, proc.stdout  # the float64 and float32 reference tests of scaled_dot_product_attention
    assert "matches attention scaled by 1/d_k" in proc.stdout, proc.stdout[-3000:]
    assert "2 failed" in proc.stdout and "deselected" in proc.stdout, proc.stdout[-1000:]


def test_a_suite_run_without_a_submission_says_how():
    proc = subprocess.run([sys.executable, "-m", "pytest", f"autograder/suites/{ASSIGNMENT}", "-q"],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    assert "--submission" in proc.stderr + proc.stdout


def test_a_hidden_test_needs_its_markers():
    def test_unmarked(ctx):
        """no markers"""

    with pytest.raises(SuiteError, match="exactly one exercise marker"):
        hidden_test_of(test_unmarked)
    with pytest.raises(SuiteError, match="starts with test_"):
        hidden("softmax", points=1, group="shapes")(lambda ctx: None)
    with pytest.raises(SuiteError, match="unknown group"):
        hidden("softmax", points=1, group="style")


def test_every_registered_suite_lists_its_tests_with_markers():
    for name in ("a1_attention", "a2_masking", "a3_ffn_positions", "a4_residual_norm", "a5_transformer_lm"):
        spec = load_suite(name)
        assert spec.tests and {t.exercise for t in spec.tests} == set(spec.exercises), name
        assert all(t.points > 0 and t.title for t in spec.tests), name
