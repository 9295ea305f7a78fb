"""The tests every assignment's catalog gets (mutants caught and named, alternatives at 100%,
cheats with their stated outcome). A ``tests/test_<assignment>_catalog.py`` module calls
``catalog_tests`` and puts the functions it returns in its namespace for pytest to collect."""

from __future__ import annotations

import pytest

from autograder.runner import GradeReport
from autograder.suites import load_suite
from tests.variants import Cheat, Variant, by_name, failures


def expect_caught(report: GradeReport, mutant: Variant) -> None:
    """Every test in ``mutant.fails`` fails, the first names the bug, and the score is below the maximum."""
    results = by_name(report)
    passed = [name for name in mutant.fails if results[name].passed]
    assert not passed, f"{mutant.name} slipped through {passed}; failing tests:\n{failures(report)}"
    first = results[mutant.fails[0]]
    assert mutant.says.lower() in first.output.lower(), (
        f"{mutant.fails[0]} should name the bug ({mutant.says!r}); it said: {first.output!r}")
    assert report.score < report.max_score


def catalog_tests(assignment: str, catalog, minimum: tuple[int, int, int]) -> dict:
    """Test functions for ``catalog`` (a module with MUTANTS, ALTERNATIVES, CHEATS, EXERCISES);
    ``minimum`` is the least number of mutants, alternatives and cheats it must hold."""
    hidden_tests = {t.name for t in load_suite(assignment).tests}
    mutants, alternatives, cheats = catalog.MUTANTS, catalog.ALTERNATIVES, catalog.CHEATS

    def grade(grade_cells, variant: Variant) -> GradeReport:
        kwargs = {"time_limit": variant.time_limit} if variant.time_limit else {}
        report = grade_cells(assignment, variant.cells, **kwargs)
        assert report.tests, f"the grader returned no test results; diagnostics: {report.diagnostics}"
        return report

    def test_catalog_is_well_formed():
        variants = mutants + alternatives + cheats
        names = [v.name for v in variants]
        assert len(names) == len(set(names)), "variant names must be unique"
        counts = (len(mutants), len(alternatives), len(cheats))
        assert all(n >= least for n, least in zip(counts, minimum)), f"catalog too small: {counts} < {minimum}"
        for v in variants:
            unknown = set(v.cells) - set(catalog.EXERCISES)
            assert v.cells and not unknown, f"{v.name} replaces unknown cells {unknown}"
        for m in mutants:
            assert m.fails and m.says, f"mutant {m.name} must say which tests fail and what they say"
            unknown = set(m.fails) - hidden_tests
            assert not unknown, f"mutant {m.name} names tests the suite does not have: {sorted(unknown)}"
        for c in cheats:
            assert isinstance(c, Cheat) and callable(c.check), f"cheat {c.name} needs a check(report)"

    def test_reference_solution_gets_full_marks(grade_cells):
        report = grade(grade_cells, Variant("reference", {}))
        assert report.score == report.max_score, f"the reference solution lost points:\n{failures(report)}"

    @pytest.mark.parametrize("mutant", mutants, ids=lambda v: v.name)
    def test_mutant_is_caught_and_named(grade_cells, mutant):
        expect_caught(grade(grade_cells, mutant), mutant)

    @pytest.mark.parametrize("alternative", alternatives, ids=lambda v: v.name)
    def test_alternative_gets_full_marks(grade_cells, alternative):
        report = grade(grade_cells, alternative)
        lost = [t for t in report.tests if not t.passed]
        assert not lost, (f"{alternative.name} is correct but lost points "
                          f"({report.score:g}/{report.max_score:g}):\n{failures(report)}")

    @pytest.mark.parametrize("cheat", cheats, ids=lambda v: v.name)
    def test_cheat_gets_the_expected_outcome(grade_cells, cheat):
        report = grade(grade_cells, cheat)  # the grader finished and reported: the cheat did not take it down
        assert report.score < report.max_score, f"{cheat.name} got full marks"
        cheat.check(report)

    return {name: fn for name, fn in locals().items() if name.startswith("test_")}
