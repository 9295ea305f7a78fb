"""Red-team routes against the grader (tests/catalog/adversarial_attack.py): each gets its stated outcome; a route
that still gets credit it should not is a strict xfail whose reason is the diagnosis."""

from __future__ import annotations

import pytest

from autograder.suites import SUITES
from tests.catalog.adversarial_attack import CASES

pytestmark = pytest.mark.engine


def test_catalog_is_well_formed():
    names = [case.name for case in CASES]
    assert len(names) == len(set(names))
    for case in CASES:
        assert callable(case.check) and case.cells, case.name
        assert case.assignment in SUITES, case.name


@pytest.mark.parametrize("case", [pytest.param(c, id=c.name, marks=[pytest.mark.xfail(strict=True, reason=c.weakness)]
                                               if c.weakness else []) for c in CASES])
def test_route_gets_the_stated_outcome(grade_cells, case):
    report = grade_cells(case.assignment, case.cells, **case.options)
    assert report.tests, f"the grader returned no test results; diagnostics: {report.diagnostics}"
    case.check(report)
