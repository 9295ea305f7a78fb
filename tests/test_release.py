"""The student release is exactly what nbgrader generates, and gives nothing away."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from autograder.suites import SUITES, load_suite
from tests.variants import REPO

ASSIGNMENTS = list(SUITES)


def load(path: Path) -> dict:
    return json.loads(path.read_text())


def code_cells(nb: dict) -> list[dict]:
    return [c for c in nb["cells"] if c["cell_type"] == "code"]


def text(cell: dict) -> str:
    return "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]


def grade_id(cell: dict) -> str | None:
    return cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")


def normalized(nb: dict) -> dict:
    """What must match between a regenerated and the committed release."""
    return {
        "kernelspec": nb["metadata"].get("kernelspec"),
        "cells": [(c["cell_type"], c.get("id"), text(c), c.get("metadata", {})) for c in nb["cells"]],
    }


GENERATE_ALL = """
import sys
from nbgrader.apps import NbGraderAPI
from traitlets.config.loader import PyFileConfigLoader

api = NbGraderAPI(config=PyFileConfigLoader("nbgrader_config.py", path=".").load_config())
for assignment in sys.argv[1:]:
    result = api.generate_assignment(assignment, force=True)
    if not result["success"]:
        sys.exit(assignment + ": " + str(result.get("log"))[-3000:])
"""


@pytest.fixture(scope="module")
def regenerated(tmp_path_factory) -> Path:
    """A copy of the course where nbgrader generated every release: one process, not five (about 10 s, not 50)."""
    root = tmp_path_factory.mktemp("course")
    shutil.copytree(REPO / "solutions", root / "solutions")
    shutil.copy(REPO / "nbgrader_config.py", root)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}  # alembic
    proc = subprocess.run([sys.executable, "-c", GENERATE_ALL, *ASSIGNMENTS],
                          cwd=root, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return root


@pytest.mark.notebooks
@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_release_is_what_nbgrader_generates(assignment, regenerated):
    notebook = load_suite(assignment).notebook
    fresh = load(regenerated / "assignments" / assignment / notebook)
    committed = load(REPO / "assignments" / assignment / notebook)
    assert normalized(fresh) == normalized(committed), (
        f"assignments/{assignment} is stale: run `nbgrader generate_assignment {assignment} --force` and commit it")


def solution_lines(cell_source: str) -> list[str]:
    """The substantive lines inside BEGIN/END SOLUTION regions."""
    lines, inside = [], False
    for line in cell_source.splitlines():
        stripped = line.strip()
        if stripped.startswith("### BEGIN SOLUTION"):
            inside = True
        elif stripped.startswith("### END SOLUTION"):
            inside = False
        elif inside and len(stripped) > 12 and not stripped.startswith("#"):
            lines.append(stripped)
    return lines


def _count_in_solutions(nb: dict, line: str) -> int:
    return sum(solution_lines(text(cell)).count(line) for cell in code_cells(nb))


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_release_contains_no_solution_line_and_keeps_signatures(assignment):
    notebook = load_suite(assignment).notebook
    solution = load(REPO / "solutions" / assignment / notebook)
    release = load(REPO / "assignments" / assignment / notebook)
    release_lines = {line.strip() for cell in code_cells(release) for line in text(cell).splitlines()}
    # Lines the source shows outside solution regions (test cells, docstrings) are public by design.
    all_lines = [line.strip() for cell in code_cells(solution) for line in text(cell).splitlines()]
    hidden_lines = {line for cell in code_cells(solution) for line in solution_lines(text(cell))}
    public = {line for line in all_lines if line not in hidden_lines or all_lines.count(line) > _count_in_solutions(solution, line)}
    exercises = [c for c in code_cells(solution) if c["metadata"].get("nbgrader", {}).get("solution")]
    assert {grade_id(c) for c in exercises} == set(load_suite(assignment).exercises)
    for cell in exercises:
        leaked = [line for line in solution_lines(text(cell)) if line in release_lines and line not in public]
        assert not leaked, f"{grade_id(cell)}: solution lines in the release: {leaked}"
        signatures = [line.strip() for line in text(cell).splitlines() if re.match(r"\s*(def|class) ", line)]
        missing = [s for s in signatures if s not in release_lines]
        assert not missing, f"{grade_id(cell)}: signatures missing from the release: {missing}"


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_release_contains_no_hidden_test(assignment):
    suite = load_suite(assignment)
    release = (REPO / "assignments" / assignment / suite.notebook).read_text()
    # The grader's public modules a release may import, neither holding a hidden test: the usage-policy check
    # (autograder/policy.py) and the known bugs its visible checks name (autograder/known_bugs/<assignment>.py).
    assert "autograder" not in re.sub(rf"from autograder\.(policy|known_bugs\.{assignment}) import", "", release)
    assert not [t.name for t in suite.tests if t.name in release]


def test_committed_notebooks_carry_no_outputs():
    dirty = []
    for folder in ("solutions", "assignments", "lectures"):
        for path in (REPO / folder).rglob("*.ipynb"):
            for cell in load(path)["cells"]:
                if cell["cell_type"] == "code" and (cell.get("outputs") or cell.get("execution_count") is not None):
                    dirty.append(str(path.relative_to(REPO)))
                    break
    assert not dirty, f"clear outputs before committing: {dirty}"


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_points_agree_between_heading_gradebook_and_hidden_suite(assignment):
    """An exercise is worth the same everywhere: its heading ("> Points: N"), its nbgrader grade cell
    (what the gradebook totals) and the hidden suite (what the grader awards)."""
    suite = load_suite(assignment)
    awarded: dict[str, float] = {}
    for test in suite.tests:
        awarded[test.exercise] = awarded.get(test.exercise, 0) + test.points
    nb = load(REPO / "solutions" / assignment / suite.notebook)
    cells = {grade_id(c): c["metadata"]["nbgrader"].get("points") for c in nb["cells"]
             if c.get("metadata", {}).get("nbgrader", {}).get("grade")}
    headings = {}
    for cell in nb["cells"]:
        found = re.search(r"### Exercise \d+ — (\w+)\s+> Points: (\d+)", text(cell))
        if cell["cell_type"] == "markdown" and found:
            headings[found.group(1)] = int(found.group(2))
    assert {f"test_{e}": p for e, p in awarded.items()} == cells
    assert awarded == headings
