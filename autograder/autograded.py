"""``autograded/<student>/<assignment>/``: what ``nbgrader generate_feedback`` and formgrader read.

``nbgrader autograde`` writes that folder (``converters/autograde.py``): every file of the submission folder
(``timestamp.txt`` and ``submission_secret.txt`` among them, which ``release_feedback`` needs) and each notebook
after its sanitising preprocessors (``ClearOutput``, ``DeduplicateIds``, ``OverwriteKernelspec``,
``OverwriteCells``, ``CheckCellMetadata``) and a run of the notebook. ``export-gradebook`` writes the same folder
from a results.json: the same preprocessors, nbgrader's own, on the student's notebook (so read-only and grade
cells are the release's again, with their checksums), and instead of a run, each exercise's grade cell
``test_E`` gets an output listing the hidden tests of ``E``, passed or failed, with the message the student reads
in the report. formgrader's submission view and the feedback HTML show it next to the gradebook's score and the
comment on the solution cell.

A notebook that cannot be graded (invalid JSON, another assignment's, none at hand) still gives the student
feedback: the assignment's release notebook, under the expected name, opening with a cell that says why.
"""

from __future__ import annotations

import contextlib
import html
import logging
import secrets
from pathlib import Path

from autograder.timestamps import STAMP, small_text

SECRET = "submission_secret.txt"
SANITIZE = ["ClearOutput", "DeduplicateIds", "OverwriteKernelspec", "OverwriteCells", "CheckCellMetadata"]


def write_autograded(coursedir, db_url: str, result, plan) -> bool:
    """Write ``result``'s autograded folder; returns whether it made up a submission_secret.txt."""
    import nbformat

    dest = Path(coursedir.format_path(coursedir.autograded_directory, result.student, result.assignment))
    dest.mkdir(parents=True, exist_ok=True)
    source = _submitted_notebook(coursedir, result, plan.notebook)
    nb, why = _read(source, result)
    if why:
        nb = nbformat.read(_release_notebook(coursedir, result.assignment, plan.notebook), as_version=4)
        # escaped: the reason may quote a file name the student chose, and formgrader renders this cell as HTML
        nb.cells.insert(0, nbformat.v4.new_markdown_cell(f"**This notebook was not graded:** {html.escape(why)}\n\n"
                                                          "Below is the assignment's release, not your work."))
    nb = _sanitize(nb, db_url, result, plan.notebook)
    _show_hidden_tests(nb, result, plan)
    path = dest / f"{plan.notebook}.ipynb"
    nbformat.write(nb, path)
    return _submission_files(source, dest, result)


def _submitted_notebook(coursedir, result, notebook: str) -> Path | None:
    """The notebook graded, else the course's ``submitted/<student>/<assignment>/<notebook>.ipynb``."""
    if result.notebook and Path(result.notebook).is_file():
        return Path(result.notebook)
    folder = Path(coursedir.format_path(coursedir.submitted_directory, result.student, result.assignment))
    candidate = folder / f"{notebook}.ipynb"
    return candidate if result.notebook and candidate.is_file() else None


def _read(source: Path | None, result):
    """(the student's notebook, None), or (None, why it was not graded)."""
    import nbformat

    if result.wrong_notebook:
        return None, result.wrong_notebook
    if source is None:
        return None, "; ".join(result.notes) or "no notebook was found in your submission"
    try:
        return nbformat.read(source, as_version=4), None
    except Exception:  # noqa: BLE001  (invalid JSON or nbformat: the report's notes say which)
        return None, "; ".join(result.notes) or "your notebook could not be read"


def _release_notebook(coursedir, assignment: str, notebook: str) -> Path:
    from autograder.release import RELEASE_ROOT

    course = Path(coursedir.format_path(coursedir.release_directory, ".", assignment)) / f"{notebook}.ipynb"
    return course if course.is_file() else RELEASE_ROOT / assignment / f"{notebook}.ipynb"


def _sanitize(nb, db_url: str, result, notebook: str):
    """nbgrader autograde's sanitising step, with nbgrader's own preprocessors."""
    from nbgrader import preprocessors

    resources = {"nbgrader": {"notebook": notebook, "assignment": result.assignment, "student": result.student,
                              "db_url": db_url}}
    quiet = logging.getLogger("autograder.nbgrader")
    quiet.setLevel(logging.ERROR)  # their per-cell warnings: the grader's report already says what was edited
    for name in SANITIZE:
        nb, resources = getattr(preprocessors, name)(log=quiet).preprocess(nb, resources)
    return nb


def _show_hidden_tests(nb, result, plan) -> None:
    """The first grade cell of each exercise shows its hidden tests as the cell's output; exercises whose grade
    cell the notebook lacks (one written from scratch) are shown in a cell added at the end."""
    import nbformat

    first_cells = {cells[0][0]: exercise for exercise, cells in plan.grade_cells.items() if cells}
    shown = set()
    for cell in nb.cells:
        exercise = first_cells.get(((cell.metadata.get("nbgrader") or {}).get("grade_id")))
        if exercise is None or cell.cell_type != "code" or exercise in shown:
            continue
        cell.outputs = [_listing(result, [exercise])]
        shown.add(exercise)
    missing = [e for e in result.exercises if e not in shown]
    if missing:
        cell = nbformat.v4.new_code_cell("# The hidden tests of the exercises whose test cell is not in this notebook")
        cell.outputs = [_listing(result, missing)]
        nb.cells.append(cell)


def _listing(result, exercises: list[str]):
    import nbformat

    lines = []
    for exercise in exercises:
        score, max_score = result.exercises[exercise]
        lines += [f"Hidden tests of {exercise}: {score:g}/{max_score:g} points", *result.tests[exercise]]
    return nbformat.v4.new_output("stream", name="stdout", text="\n".join(lines) + "\n")


def _submission_files(source: Path | None, dest: Path, result) -> bool:
    """timestamp.txt and submission_secret.txt, copied as autograde copies them, or made when the submission
    had none (``release_feedback`` stops at a folder without them); returns whether a secret was made up."""
    copied: dict[str, str] = {}
    for name in (STAMP, SECRET):  # never a link or a large file: the folder is the student's
        with contextlib.suppress(OSError, UnicodeDecodeError, ValueError):
            copied[name] = small_text(source.parent / name, 1024) if source else ""
        if copied.get(name):
            (dest / name).write_text(copied[name])
    if not copied.get(STAMP) and result.submitted_at:
        (dest / STAMP).write_text(result.submitted_at_text())
    if copied.get(SECRET):
        return False
    if not (dest / SECRET).is_file():  # kept across re-exports, so a released feedback file keeps its name
        (dest / SECRET).write_text(secrets.token_hex(64))
    return True
