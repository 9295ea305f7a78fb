"""A submission whose every exercise ignores its input (zeros, constants, all-True masks of the right shape)
earns at most the shapes group's points, and at most 20% of the assignment: property and hygiene checks
(equivariance, "leaves its input unmodified", "deterministic") hold for such code too, so they count only
when the exercise's result depended on its input (tests/catalog/do_nothing.py)."""

from __future__ import annotations

import pytest

from autograder.suites import load_suite
from tests.catalog.do_nothing import VARIANTS, cells
from tests.variants import failures

pytestmark = pytest.mark.engine

GATED = ("properties", "hygiene")


@pytest.mark.parametrize("assignment, kind, plan", VARIANTS, ids=[f"{a}-{k}" for a, k, _ in VARIANTS])
def test_do_nothing_earns_at_most_the_shape_points(grade_cells, assignment, kind, plan):
    report = grade_cells(assignment, cells(assignment, plan))
    shape_points = sum(t.points for t in load_suite(assignment).tests if t.group == "shapes")
    assert report.score <= shape_points, f"{assignment} ({kind}) scored {report.score:g} > {shape_points:g}:\n{failures(report)}"
    assert report.score <= 0.2 * report.max_score, f"{assignment} ({kind}) scored {report.score:g}/{report.max_score:g}"
    credited = [t.name for t in report.tests if t.group in GATED and t.score > 0]
    assert not credited, f"{assignment} ({kind}): property/hygiene points for code that ignores its input: {credited}"
    withheld = [t for t in report.tests if t.group in GATED and t.output.startswith("no points: ")]
    assert withheld, "no property or hygiene check passed, so none was withheld: the case tests nothing"
    for t in withheld:
        assert "whatever its input" in t.output and "ignores its input" in t.output, t.output
