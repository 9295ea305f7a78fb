"""Grade the a4_residual_norm catalog (tests/catalog/a4_residual_norm.py) with the hidden suite.

Mutants must be caught, with feedback naming the bug; other correct styles must get full
marks; cheats must get the outcome each one's ``check`` states.
"""

from __future__ import annotations

import pytest

from autograder.runner import GradeReport
from autograder.suites import load_suite
from tests.catalog.a4_residual_norm import (
    ALTERNATIVES,
    CHEATS,
    EXERCISES,
    MUTANTS,
    Cheat,
    failures,
)
from tests.variants import Variant, by_name

pytestmark = pytest.mark.a4_residual_norm

ASSIGNMENT = "a4_residual_norm"
HIDDEN_TESTS = {t.name for t in load_suite(ASSIGNMENT).tests}


def grade(grade_cells, variant: Variant) -> GradeReport:
    kwargs = {"time_limit": variant.time_limit} if variant.time_limit else {}
    report = grade_cells(ASSIGNMENT, variant.cells, **kwargs)
    assert report.tests, f"the grader returned no test results; diagnostics: {report.diagnostics}"
    return report


def expect_caught(report: GradeReport, mutant: Variant) -> None:
    """Every test in ``mutant.fails`` fails, the first names the bug, and the score is below the maximum."""
    results = by_name(report)
    passed = [name for name in mutant.fails if results[name].passed]
    assert not passed, f"{mutant.name} slipped through {passed}; failing tests:\n{failures(report)}"
    first = results[mutant.fails[0]]
    assert mutant.says.lower() in first.output.lower(), (
        f"{mutant.fails[0]} should name the bug ({mutant.says!r}); it said: {first.output!r}")
    assert report.score < report.max_score


# --- the catalog itself -------------------------------------------------------------------

def test_catalog_is_well_formed():
    variants = MUTANTS + ALTERNATIVES + CHEATS
    names = [v.name for v in variants]
    assert len(names) == len(set(names)), "variant names must be unique"
    assert len(MUTANTS) >= 12 and len(ALTERNATIVES) >= 3 and len(CHEATS) >= 4
    for v in variants:
        assert v.cells and set(v.cells) <= set(EXERCISES), f"{v.name} replaces unknown cells {set(v.cells) - set(EXERCISES)}"
    for m in MUTANTS:
        assert m.fails and m.says, f"mutant {m.name} must say which tests fail and what they say"
        unknown = set(m.fails) - HIDDEN_TESTS
        assert not unknown, f"mutant {m.name} names tests the suite does not have: {sorted(unknown)}"
    for c in CHEATS:
        assert isinstance(c, Cheat) and callable(c.check), f"cheat {c.name} needs a check(report)"


def test_reference_solution_gets_full_marks(grade_cells):
    report = grade(grade_cells, Variant("reference", {}))
    assert report.score == report.max_score, f"the reference solution lost points:\n{failures(report)}"


# --- mutants, alternatives, cheats ----------------------------------------------------------

@pytest.mark.parametrize("mutant", MUTANTS, ids=lambda v: v.name)
def test_mutant_is_caught_and_named(grade_cells, mutant):
    expect_caught(grade(grade_cells, mutant), mutant)


@pytest.mark.parametrize("alternative", ALTERNATIVES, ids=lambda v: v.name)
def test_alternative_gets_full_marks(grade_cells, alternative):
    report = grade(grade_cells, alternative)
    lost = [t for t in report.tests if not t.passed]
    assert not lost, f"{alternative.name} is correct but lost points ({report.score:g}/{report.max_score:g}):\n{failures(report)}"


@pytest.mark.parametrize("cheat", CHEATS, ids=lambda v: v.name)
def test_cheat_gets_the_expected_outcome(grade_cells, cheat):
    report = grade(grade_cells, cheat)  # the grader finished and reported: the cheat did not take it down
    assert report.score < report.max_score, f"{cheat.name} got full marks"
    cheat.check(report)

