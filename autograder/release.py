"""What the student release of an assignment fixes: which notebook it is, and its read-only cells.

The grader grades only what the student wrote. Two things follow, both judged against the release
notebook in ``assignments/<assignment>/`` (nbgrader's output, committed with the course):

- a notebook that is another assignment's (its nbgrader cells are that release's, not this one's)
  is not graded at all: ``identify`` says whose it is;
- read-only cells (nbgrader ``locked``, neither exercise nor test: the ``given_*`` code of earlier
  assignments) are taken from the release, never from the submission: ``apply_release`` puts the
  release's source in their place, restores one that was deleted, and says when a student edited one.
  Their definitions never earn points: an exercise whose last definition is given code is not the
  student's work (``exercises_given_only``).

This module imports neither torch nor nbgrader.
"""

from __future__ import annotations

import ast
import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from autograder import parsing
from autograder.notebook import Cell, Submission, definitions_only, read_submission, strip_magics

RELEASE_ROOT = Path(__file__).resolve().parents[1] / "assignments"


@dataclass(frozen=True)
class Release:
    assignment: str
    notebook: str
    grade_ids: tuple[str, ...]     # every nbgrader cell of the release, in notebook order
    given: dict[str, str]          # read-only code cells: grade_id -> source
    trusted_sources: frozenset[str]  # the program units (as the grader runs them) of every non-exercise cell


def releases() -> list[Release]:
    """Every release the course folder holds."""
    folders = sorted(p.name for p in RELEASE_ROOT.iterdir() if p.is_dir()) if RELEASE_ROOT.is_dir() else []
    return [r for r in map(load_release, folders) if r is not None]


@cache
def load_release(assignment: str) -> Release | None:
    """The release of ``assignment`` (the one notebook in its folder), or None when the course folder lacks it."""
    notebooks = sorted((RELEASE_ROOT / assignment).glob("*.ipynb"))
    if len(notebooks) != 1:
        return None
    path = notebooks[0]
    try:
        cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    grade_ids, given = [], {}
    for cell in cells:
        meta = (cell.get("metadata") or {}).get("nbgrader") or {}
        grade_id = meta.get("grade_id")
        if not grade_id:
            continue
        grade_ids.append(grade_id)
        given_code = not meta.get("solution") and not meta.get("grade")
        if cell.get("cell_type") == "code" and meta.get("locked") and given_code:
            source = cell.get("source", "")
            given[grade_id] = "".join(source) if isinstance(source, list) else source
    program = read_submission(path)
    exercises = {c.grade_id for c in program.cells if c.kind == "exercise"}
    trusted = frozenset(u["source"] for u in program.program() if u["grade_id"] not in exercises)
    return Release(assignment, path.name, tuple(grade_ids), given, trusted)


def identify(submission: Submission, releases: list[Release]) -> Release | None:
    """The release whose nbgrader cells the submission's match best (Jaccard overlap of grade ids).

    None when the submission has no nbgrader cells (a notebook written from scratch is graded on
    what it defines) or matches no release at all.
    """
    ids = set(submission.grade_ids)
    if not ids:
        return None
    scored = [(len(ids & set(r.grade_ids)) / len(ids | set(r.grade_ids)), r) for r in releases]
    best = max(scored, key=lambda pair: pair[0], default=(0.0, None))
    return best[1] if best[0] > 0 else None


def apply_release(submission: Submission, release: Release) -> list[str]:
    """Replace read-only cells by the release's, restore deleted ones; return notes for the student."""
    notes = []
    present = {c.grade_id: c for c in submission.cells if c.grade_id in release.given}
    for grade_id, source in release.given.items():
        cell = present.get(grade_id)
        if cell is None:
            if _defines_nothing(source):
                continue  # the check cell, say: nothing of it runs at grade time, so nothing to restore
            _insert_given(submission, release, grade_id, source)
            notes.append(f"the read-only cell {grade_id} was missing; the grader used the release's version of it")
            continue
        if _normalised(cell.source) != _normalised(source):
            notes.append(f"cell {cell.index} ({grade_id}) is read-only and was edited; "
                         "the grader used the release's version, so your edits there were ignored")
        cell.source, cell.kind, cell.given = source, "code", True
    return notes


def _insert_given(submission: Submission, release: Release, grade_id: str, source: str) -> None:
    """Put a restored cell before the first cell the release places after it (definitions run in order)."""
    order = {g: i for i, g in enumerate(release.grade_ids)}
    position = next((i for i, c in enumerate(submission.cells)
                     if c.grade_id in order and order[c.grade_id] > order[grade_id]), len(submission.cells))
    submission.cells.insert(position, Cell(index=0, kind="code", grade_id=grade_id, source=source, given=True))


def _defines_nothing(source: str) -> bool:
    """Whether the grader would run nothing of this (non-exercise) cell: no import, def, class or constant."""
    return not definitions_only(strip_magics(source)).strip()


def _normalised(source: str) -> str:
    return "\n".join(line.rstrip() for line in source.strip().splitlines())


def exercises_given_only(submission: Submission, exercises: list[str]) -> list[str]:
    """Exercises whose last top-level definition in the program is read-only given code (or an alias of it).

    Exercises the notebook does not define at all are not listed: the worker reports those.
    """
    last: dict[str, bool] = {}  # name -> whether its latest definition is given code
    given_names: set[str] = set()
    for cell in submission.cells:
        if cell.kind == "test":
            continue
        source = strip_magics(cell.source)
        try:
            tree = parsing.parse(source if cell.kind == "exercise" else definitions_only(source))
        except (SyntaxError, ValueError, RecursionError, MemoryError):  # deep nesting: RecursionError
            continue
        for name, value in _top_level_bindings(tree):
            is_given = cell.given or (isinstance(value, ast.Name) and value.id in given_names)
            last[name] = is_given
            if cell.given:
                given_names.add(name)
    return [e for e in exercises if last.get(e)]


def _top_level_bindings(tree: ast.Module):
    """(name, assigned value or None) for each name a cell binds at its top level."""
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            yield node.name, None
        elif isinstance(node, ast.Assign):
            for target in node.targets:
                if isinstance(target, ast.Name):
                    yield target.id, node.value
        elif isinstance(node, (ast.AnnAssign, ast.AugAssign)) and isinstance(node.target, ast.Name):
            yield node.target.id, node.value
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            for alias in node.names:
                yield (alias.asname or alias.name).split(".")[0], None
