"""Grade the a7_fast_weights catalog (tests/catalog/a7_fast_weights.py) with the hidden suite.

As for a5 (``tests/test_a5_catalog.py``), a mutant is graded on the tests of the exercise it changes and an
alternative on every test that runs its code (``RUNS``), so the module stays fast; cheats on the tests
of the exercises they change.
"""

from __future__ import annotations

import pytest

from autograder.suites import load_suite
from tests.catalog.a7_fast_weights import ALTERNATIVES, CHEATS, EXERCISES, MUTANTS
from tests.catalog_tests import expect_caught, expect_well_formed
from tests.variants import Variant, failures

pytestmark = pytest.mark.a7_fast_weights

ASSIGNMENT = "a7_fast_weights"
HIDDEN_TESTS = {t.name: t.exercise for t in load_suite(ASSIGNMENT).tests}
# Whose tests run an exercise's code: generate_cached's tests also run forward_cached.
RUNS = {"linear_attention": {"linear_attention"}, "recurrent_linear_attention": {"recurrent_linear_attention"},
        "delta_rule": {"delta_rule"}, "forward_cached": {"forward_cached", "generate_cached"},
        "generate_cached": {"generate_cached"}}


def grade(grade_cells, variant: Variant, exercises=None):
    kwargs = {"exercises": exercises} if exercises is not None else {}
    report = grade_cells(ASSIGNMENT, variant.cells, **kwargs)
    assert report.tests, f"the grader returned no test results; diagnostics: {report.diagnostics}"
    return report


def test_catalog_is_well_formed():
    import tests.catalog.a7_fast_weights as catalog

    expect_well_formed(ASSIGNMENT, catalog, (13, 4, 11))
    for m in MUTANTS:
        outside = {name for name in m.fails if HIDDEN_TESTS[name] not in m.cells}
        assert not outside, f"mutant {m.name} names tests of exercises it does not change: {sorted(outside)}"
    assert set(RUNS) == set(EXERCISES)


def test_reference_solution_gets_full_marks(grade_cells):
    report = grade(grade_cells, Variant("reference", {}))
    assert report.score == report.max_score, f"the reference solution lost points:\n{failures(report)}"


@pytest.mark.parametrize("mutant", MUTANTS, ids=lambda v: v.name)
def test_mutant_is_caught_and_named(grade_cells, mutant):
    expect_caught(grade(grade_cells, mutant, exercises=set(mutant.cells)), mutant)


@pytest.mark.parametrize("alternative", ALTERNATIVES, ids=lambda v: v.name)
def test_alternative_gets_full_marks(grade_cells, alternative):
    report = grade(grade_cells, alternative, exercises=set().union(*(RUNS[e] for e in alternative.cells)))
    lost = [t for t in report.tests if not t.passed]
    assert not lost, \
        f"{alternative.name} is correct but lost points ({report.score:g}/{report.max_score:g}):\n{failures(report)}"


@pytest.mark.parametrize("cheat", [pytest.param(c, id=c.name, marks=[pytest.mark.xfail(strict=True, reason=c.weakness)]
                                                if getattr(c, "weakness", "") else []) for c in CHEATS])
def test_cheat_gets_the_expected_outcome(grade_cells, cheat):
    report = grade(grade_cells, cheat, exercises=set(cheat.cells))
    assert report.score < report.max_score, f"{cheat.name} got full marks"
    cheat.check(report)


def test_release_gets_zero_saying_not_implemented(server):
    from autograder.runner import grade as grade_path
    from tests.variants import REPO

    report = grade_path(REPO / "assignments" / ASSIGNMENT, server=server)
    assert report.score == 0 and {t.output for t in report.tests} == {"not implemented yet"}
    assert not report.diagnostics, report.diagnostics
