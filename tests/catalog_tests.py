"""What every assignment's catalog is held to (mutants caught and named, alternatives at 100%, cheats with their
stated outcome); ``tests/test_catalogs.py`` runs it for a1-a4, ``tests/test_a5_catalog.py`` for a5."""

from __future__ import annotations

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


def grade(grade_cells, assignment: str, variant: Variant) -> GradeReport:
    kwargs = {"time_limit": variant.time_limit} if variant.time_limit else {}
    report = grade_cells(assignment, variant.cells, **kwargs)
    assert report.tests, f"the grader returned no test results; diagnostics: {report.diagnostics}"
    return report


def expect_well_formed(assignment: str, catalog, minimum: tuple[int, int, int]) -> None:
    """``minimum``: the least number of mutants, alternatives and cheats the catalog must hold."""
    hidden_tests = {t.name for t in load_suite(assignment).tests}
    mutants, alternatives, cheats = catalog.MUTANTS, catalog.ALTERNATIVES, catalog.CHEATS
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
