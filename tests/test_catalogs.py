"""Grade the catalogs of a1-a4 (``tests/catalog/<assignment>.py``) with the hidden suites: mutants must be caught
with feedback naming the bug, other correct styles must get full marks, cheats must get the outcome each one's
``check`` states. a5's catalog has its own module (``tests/test_a5_catalog.py``): its tests run only the exercises
a variant changes. Select one assignment with ``pytest -m a2_masking``."""

from __future__ import annotations

import pytest

from tests.catalog import CATALOGS
from tests.catalog_tests import expect_caught, expect_well_formed, grade
from tests.variants import Variant, failures

# The least number of mutants, alternatives and cheats each catalog must hold.
MINIMUM = {"a1_attention": (18, 5, 8), "a2_masking": (20, 7, 8), "a3_ffn_positions": (12, 3, 4),
           "a4_residual_norm": (12, 3, 4)}
# Catalogs graded by a module of their own, on the exercises each variant changes (tests/test_a6_catalog.py).
OWN_MODULE = {"a6_training_stability": (20, 4, 4)}


def cases(kind: str) -> list:
    return [pytest.param(assignment, variant, id=f"{assignment}-{variant.name}", marks=getattr(pytest.mark, assignment))
            for assignment in MINIMUM for variant in getattr(CATALOGS[assignment], kind)]


@pytest.mark.parametrize("assignment", [pytest.param(a, marks=getattr(pytest.mark, a)) for a in MINIMUM])
def test_catalog_is_well_formed(assignment):
    expect_well_formed(assignment, CATALOGS[assignment], MINIMUM[assignment])


@pytest.mark.parametrize("assignment", [pytest.param(a, marks=getattr(pytest.mark, a)) for a in MINIMUM])
def test_reference_solution_gets_full_marks(grade_cells, assignment):
    report = grade(grade_cells, assignment, Variant("reference", {}))
    assert report.score == report.max_score, f"the reference solution lost points:\n{failures(report)}"


@pytest.mark.parametrize("assignment, mutant", cases("MUTANTS"))
def test_mutant_is_caught_and_named(grade_cells, assignment, mutant):
    expect_caught(grade(grade_cells, assignment, mutant), mutant)


@pytest.mark.parametrize("assignment, alternative", cases("ALTERNATIVES"))
def test_alternative_gets_full_marks(grade_cells, assignment, alternative):
    report = grade(grade_cells, assignment, alternative)
    lost = [t for t in report.tests if not t.passed]
    assert not lost, (f"{alternative.name} is correct but lost points "
                      f"({report.score:g}/{report.max_score:g}):\n{failures(report)}")


@pytest.mark.parametrize("assignment, cheat", cases("CHEATS"))
def test_cheat_gets_the_expected_outcome(grade_cells, assignment, cheat):
    report = grade(grade_cells, assignment, cheat)  # the grader finished and reported: the cheat did not take it down
    assert report.score < report.max_score, f"{cheat.name} got full marks"
    cheat.check(report)
