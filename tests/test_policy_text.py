"""Rules and grader agree (issue 8, point 6): each exercise's instructions state what it may use in the
grader's own words (autograder/policy.py's describe), and each notebook ends with a cell that runs the
grader's policy check on itself."""

from __future__ import annotations

import json
import re

import pytest

from autograder import policy
from autograder.suites import SUITES, load_suite
from tests.variants import REPO

NOTEBOOKS = [(folder, assignment) for assignment in SUITES for folder in ("solutions", "assignments")]


def markdown_of_exercises(path) -> dict[str, str]:
    cells = json.loads(path.read_text())["cells"]
    found = {}
    for cell in cells:
        text = "".join(cell["source"])
        heading = re.search(r"### Exercise \d+ — (\w+)", text)
        if cell["cell_type"] == "markdown" and heading:
            found[heading.group(1)] = " ".join(text.split())
    return found


@pytest.mark.parametrize("folder,assignment", NOTEBOOKS, ids=lambda v: v)
def test_each_exercise_states_what_it_may_use(folder, assignment):
    path = REPO / folder / assignment / load_suite(assignment).notebook
    exercises = markdown_of_exercises(path)
    for exercise in load_suite(assignment).exercises:
        assert exercise in exercises, f"{path.name}: no heading for {exercise}"
        words = " ".join(policy.describe(assignment, exercise).split())
        assert words in exercises[exercise], f"{folder}/{path.name}, {exercise}: the instructions should say {words!r}"


@pytest.mark.parametrize("folder,assignment", NOTEBOOKS, ids=lambda v: v)
def test_notebook_ends_with_the_policy_check(folder, assignment):
    notebook = load_suite(assignment).notebook
    cells = json.loads((REPO / folder / assignment / notebook).read_text())["cells"]
    code = [c for c in cells if c["cell_type"] == "code"][-1]
    assert f'check_notebook("{notebook}")' in "".join(code["source"])
    meta = code["metadata"]["nbgrader"]
    assert meta["locked"] and not meta["grade"] and not meta["solution"]
    assert any("Before you submit: check your notebook against the grader's rules" in "".join(c["source"])
               for c in cells if c["cell_type"] == "markdown")


def test_check_cell_is_not_graded_code():
    """The grader keeps only definitions of non-exercise cells: the check cell adds nothing to the program."""
    from autograder.notebook import read_submission

    for assignment in SUITES:
        path = REPO / "assignments" / assignment / load_suite(assignment).notebook
        program = read_submission(path).program()
        # not even a comment: the program (and so the seed of the hidden inputs) is what it was without the cell
        assert not any(unit["grade_id"] == f"check_policy_{assignment}" for unit in program), assignment
