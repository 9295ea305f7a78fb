"""Grade the a6_training_stability catalog (tests/catalog/a6_training_stability.py) with the hidden suite.

Mutants must be caught, with feedback naming the bug; other correct styles must get full marks; cheats must get
the outcome each one's ``check`` states. a6's exercises do not call each other (gpt2_init_ is judged on the given
TransformerLM), so a mutant or an alternative is graded on the tests of the exercises it changes only; cheats on
the whole suite, since their checks state the outcome of every test.
"""

from __future__ import annotations

import pytest

from tests.catalog import a6_training_stability as catalog
from tests.catalog_tests import expect_caught, expect_well_formed, grade
from tests.test_catalogs import OWN_MODULE
from tests.variants import Variant, failures

pytestmark = pytest.mark.a6_training_stability

ASSIGNMENT = "a6_training_stability"


def test_catalog_is_well_formed():
    expect_well_formed(ASSIGNMENT, catalog, OWN_MODULE[ASSIGNMENT])


def test_reference_solution_gets_full_marks(grade_cells):
    report = grade(grade_cells, ASSIGNMENT, Variant("reference", {}))
    assert report.score == report.max_score, f"the reference solution lost points:\n{failures(report)}"


def own_tests(grade_cells, variant: Variant):
    report = grade_cells(ASSIGNMENT, variant.cells, exercises=set(variant.cells))
    assert report.tests, f"the grader returned no test results; diagnostics: {report.diagnostics}"
    return report


@pytest.mark.parametrize("mutant", catalog.MUTANTS, ids=lambda v: v.name)
def test_mutant_is_caught_and_named(grade_cells, mutant):
    expect_caught(own_tests(grade_cells, mutant), mutant)


@pytest.mark.parametrize("alternative", catalog.ALTERNATIVES, ids=lambda v: v.name)
def test_alternative_gets_full_marks(grade_cells, alternative):
    report = own_tests(grade_cells, alternative)
    lost = [t for t in report.tests if not t.passed]
    assert not lost, f"{alternative.name} is correct but lost points:\n{failures(report)}"


@pytest.mark.parametrize("cheat", catalog.CHEATS, ids=lambda v: v.name)
def test_cheat_gets_the_expected_outcome(grade_cells, cheat):
    report = grade(grade_cells, ASSIGNMENT, cheat)  # the grader finished and reported: the cheat did not take it down
    assert report.score < report.max_score, f"{cheat.name} got full marks"
    cheat.check(report)
