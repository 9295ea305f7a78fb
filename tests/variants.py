"""Build variants of a solution notebook (mutants, other correct styles, cheats) and grade them."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import nbformat

from autograder.runner import GradeReport, grade
from autograder.suites import load_suite

REPO = Path(__file__).resolve().parents[1]


@dataclass
class Variant:
    """A submission that differs from the reference solution in some exercise cells.

    ``cells`` maps an exercise cell's grade_id to the source that replaces it.
    For a mutant, ``fails`` lists the hidden tests that must fail and ``says`` a phrase
    the first of them must say (the bug named in the feedback).
    """

    name: str
    cells: dict[str, str]
    fails: list[str] = field(default_factory=list)
    says: str = ""
    time_limit: float | None = None


def solution_path(assignment: str) -> Path:
    return REPO / "solutions" / assignment / load_suite(assignment).notebook


def write_variant(assignment: str, cells: dict[str, str], folder: Path) -> Path:
    nb = nbformat.read(solution_path(assignment), as_version=4)
    unused = set(cells)
    for cell in nb.cells:
        grade_id = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")
        if grade_id in cells:
            cell.source = cells[grade_id]
            unused.discard(grade_id)
    if unused:
        raise KeyError(f"no cell with grade_id {sorted(unused)} in {assignment}")
    path = folder / load_suite(assignment).notebook
    nbformat.write(nb, path)
    return path


def grade_variant(assignment: str, cells: dict[str, str], folder: Path, **kwargs) -> GradeReport:
    return grade(write_variant(assignment, cells, folder), assignment=assignment, **kwargs)


def by_name(report: GradeReport) -> dict:
    return {t.name: t for t in report.tests}


# --- what catalogs assert about a report ---------------------------------------------------

@dataclass
class Cheat(Variant):
    """A variant whose expected outcome is more than "these tests fail": ``check(report)`` asserts it."""

    check: Callable[[GradeReport], None] | None = None


def tests_of(report: GradeReport, exercise: str) -> list:
    return [t for t in report.tests if t.exercise == exercise]


def failures(report: GradeReport) -> str:
    return "\n".join(f"  {t.name} ({t.score:g}/{t.max_score:g}): {t.output}"
                     for t in report.tests if not t.passed) or "  none"


def expect_full_marks(report: GradeReport, *exercises: str) -> None:
    for exercise in exercises:
        lost = [t for t in tests_of(report, exercise) if not t.passed]
        assert not lost, f"{exercise} should get full marks (its code is the reference); failing:\n{failures(report)}"


def expect_no_credit(report: GradeReport, exercise: str, *phrases: str, tests: list[str] | None = None) -> None:
    """Every test of ``exercise`` scores 0; the named ``tests`` (default: all of them) say each phrase."""
    graded = tests_of(report, exercise)
    assert graded, f"no hidden test for {exercise} in the report"
    credited = [t for t in graded if t.score > 0]
    assert not credited, f"{exercise} got credit from {[t.name for t in credited]}; all results:\n{failures(report)}"
    for t in graded:
        if tests is None or t.name in tests:
            for phrase in phrases:
                assert phrase.lower() in t.output.lower(), f"{t.name} should say {phrase!r}, said: {t.output!r}"


def expect_failing(report: GradeReport, names: list[str], phrase: str = "") -> None:
    results = by_name(report)
    for name in names:
        assert not results[name].passed, f"{name} should fail; results:\n{failures(report)}"
        assert phrase.lower() in results[name].output.lower(), (
            f"{name} should say {phrase!r}, said: {results[name].output!r}")
