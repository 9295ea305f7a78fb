"""Only the student's work is graded: another assignment's notebook scores 0, and read-only cells come from
the release (issue 8, point 4).

Measured before this change: a2's solution handed in for a1 scored 37/37, and a2's untouched release 15/37,
because a2 ships a1's functions as read-only given code; an edit to a locked cell was graded as it stood.
"""

from __future__ import annotations

import nbformat
import pytest

from autograder.runner import grade
from tests.variants import REPO, by_name, solution_path, write_variant

pytestmark = pytest.mark.engine

BROKEN_SOFTMAX = '''\
def softmax(x, dim=-1):
    return x * 0  # an edit to the read-only cell: every a2 function built on it would break
'''


def _release(assignment: str, notebook: str):
    return REPO / "assignments" / assignment / notebook


def _expect_not_graded(report, phrase: str) -> None:
    assert report.score == 0 and report.max_score > 0
    assert all(t.output.startswith("not graded:") and phrase in t.output for t in report.tests), report.tests[0].output
    assert sum(phrase in d for d in report.diagnostics) == 1, report.diagnostics


@pytest.mark.parametrize("handed_in", [
    _release("a2_masking", "masking.ipynb"),       # untouched: its given cells define a1's softmax and heads
    solution_path("a2_masking"),                   # complete: it also defines attention and MultiHeadAttention
])
def test_another_assignments_notebook_scores_zero(server, handed_in):
    report = grade(handed_in, assignment="a1_attention", server=server)
    _expect_not_graded(report, "this is a2_masking's notebook (masking.ipynb), not a1_attention's: "
                               "submit your attention.ipynb")


def test_an_earlier_assignments_notebook_scores_zero_later_too(server, tmp_path):
    folder = tmp_path / "alice" / "a4_residual_norm"
    folder.mkdir(parents=True)
    (folder / "residual_norm.ipynb").write_bytes(solution_path("a1_attention").read_bytes())  # renamed, not rewritten
    report = grade(folder, server=server)
    assert report.assignment == "a4_residual_norm"
    _expect_not_graded(report, "this is a1_attention's notebook (attention.ipynb)")


def test_an_edited_read_only_cell_is_replaced_by_the_release(server, tmp_path):
    nb_path = write_variant("a2_masking", {}, tmp_path)
    nb = nbformat.read(nb_path, as_version=4)
    given = next(c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == "given_a1")
    given.source += "\n\n" + BROKEN_SOFTMAX
    nbformat.write(nb, nb_path)
    report = grade(nb_path, server=server)
    assert report.score == report.max_score, [t.output for t in report.tests if not t.passed]
    assert any("(given_a1) is read-only and was edited" in d and "your edits there were ignored" in d
               for d in report.diagnostics), report.diagnostics


def test_a_deleted_read_only_cell_is_restored_from_the_release(server, tmp_path):
    nb_path = write_variant("a2_masking", {}, tmp_path)
    nb = nbformat.read(nb_path, as_version=4)
    nb.cells = [c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") != "given_a1"]
    nbformat.write(nb, nb_path)
    report = grade(nb_path, server=server)
    assert report.score == report.max_score, [t.output for t in report.tests if not t.passed]
    assert any("the read-only cell given_a1 was missing" in d for d in report.diagnostics), report.diagnostics


def test_given_code_earns_no_points_under_an_exercise_name(server, tmp_path):
    """``masked_softmax = softmax`` in the exercise cell hands in the given (unmasked) softmax as the exercise."""
    nb_path = write_variant("a2_masking", {"masked_softmax": "masked_softmax = softmax\n"}, tmp_path)
    report = grade(nb_path, server=server)
    masked = [t for t in report.tests if t.exercise == "masked_softmax"]
    assert masked and all(t.score == 0 and "defined only by the notebook's read-only given code" in t.output
                          for t in masked)
    others = [t for t in report.tests if t.exercise in ("causal_mask", "padding_mask")]
    assert all(t.passed for t in others), "exercises that do not use masked_softmax keep their points"


def test_a_notebook_without_nbgrader_cells_is_graded_on_what_it_defines(server, tmp_path):
    """A learner's own notebook (no nbgrader metadata) is not another assignment's: it is graded."""
    nb = nbformat.read(solution_path("a1_attention"), as_version=4)
    for cell in nb.cells:
        cell.metadata.pop("nbgrader", None)
    path = tmp_path / "attention.ipynb"
    nbformat.write(nb, path)
    report = grade(path, assignment="a1_attention", server=server)
    assert report.score == report.max_score, [t.output for t in report.tests if not t.passed]
    assert not report.wrong_notebook


def test_the_release_is_graded_as_its_own_assignment(server):
    report = grade(_release("a2_masking", "masking.ipynb"), server=server)
    assert not report.wrong_notebook and not any("read-only" in d for d in report.diagnostics), report.diagnostics
    assert all(by_name(report)[t.name].output == "not implemented yet" for t in report.tests if not t.passed)
