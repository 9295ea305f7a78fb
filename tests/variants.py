"""Build variants of a solution notebook (mutants, other correct styles, cheats) and grade them."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

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
