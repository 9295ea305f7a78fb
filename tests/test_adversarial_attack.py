"""Red-team routes against the grader (tests/catalog/adversarial_attack.py): each gets its stated outcome; a route
that still gets credit it should not is a strict xfail whose reason is the diagnosis."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from autograder import runner
from autograder.runner import GradeReport, grade
from autograder.suites import SUITES
from tests.catalog.adversarial_attack import CASES, AttackCase
from tests.variants import REPO, write_variant

pytestmark = pytest.mark.engine


def test_catalog_is_well_formed():
    names = [case.name for case in CASES]
    assert len(names) == len(set(names))
    for case in CASES:
        assert callable(case.check) and case.cells, case.name
        assert case.assignment in SUITES, case.name


@pytest.mark.parametrize("case", [pytest.param(c, id=c.name, marks=[pytest.mark.xfail(strict=True, reason=c.weakness)]
                                               if c.weakness else []) for c in CASES])
def test_route_gets_the_stated_outcome(server, tmp_path, case):
    notebook = write_variant(case.assignment, case.cells, tmp_path)
    for name, text in case.planted.items():
        (tmp_path / name).write_text(text)
    if case.direct:
        report = graded_by_pytest(case, notebook)
    else:
        report = grade(notebook, assignment=case.assignment, server=server, **case.options)
    assert report.tests, f"the grader returned no test results; diagnostics: {report.diagnostics}"
    case.check(report)


def graded_by_pytest(case: AttackCase, notebook: Path) -> GradeReport:
    """The report of `python -m pytest autograder/suites/<assignment> --submission NOTEBOOK`, from its results.json."""
    out = notebook.parent / "direct-results.json"
    proc = subprocess.run([sys.executable, "-m", "pytest", f"autograder/suites/{case.assignment}", "--submission",
                           str(notebook), "--results", str(out), "-q"], cwd=REPO, capture_output=True, text=True,
                          timeout=300)
    assert out.exists(), f"pytest wrote no results.json:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}"
    results = json.loads(out.read_text())
    report = GradeReport(assignment=case.assignment, submission=str(notebook), notebook=str(notebook))
    for t in results["tests"]:
        exercise, title = t["name"].split(": ", 1)
        report.tests.append(runner.TestResult(title, title, exercise, t["tags"][1], t["score"], t["max_score"],
                                              t["output"]))
    return report
