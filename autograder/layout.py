"""Which assignment and which student a submission path belongs to, read from the path alone.

nbgrader keeps one submission per folder, ``submitted/<student>/<assignment>/`` (the same
shape under ``autograded/`` and ``feedback/``), and the grader takes that folder or a
notebook inside it. This module imports neither torch nor nbgrader, so the exports can use it.
"""

from __future__ import annotations

from pathlib import Path

from autograder.suites import SUITES


def assignment_in_path(path: Path | str) -> str | None:
    """The innermost folder or notebook of ``path`` named like an assignment id, if any."""
    for part in reversed(Path(path).resolve().parts):
        stem = Path(part).stem
        if part in SUITES:
            return part
        if stem in SUITES:
            return stem
    return None


# The course's own folders: a notebook in assignments/<assignment>/ is a learner's own copy,
# not the work of a student called "assignments".
COURSE_FOLDERS = {"assignments", "solutions", "source", "release"}


def student_id(submission: Path | str, assignment: str) -> str:
    """``<student>`` of ``.../<student>/<assignment>/[notebook]``; otherwise the submission's own name.

    The fallback keeps a loose notebook (``alice.ipynb`` gives ``alice``) and a folder of
    any other shape (``inbox/alice`` gives ``alice``) identifiable. A learner grading the release notebook in
    place (``assignments/a1_attention/attention.ipynb``) is ``self``.
    """
    path = Path(submission).resolve()
    is_notebook = path.suffix == ".ipynb"
    folder = path.parent if is_notebook else path
    if folder.name == assignment and folder.parent.name:
        return "self" if folder.parent.name in COURSE_FOLDERS else folder.parent.name
    return path.stem if is_notebook else path.name
