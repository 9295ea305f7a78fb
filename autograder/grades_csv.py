"""grades.csv: one row per graded submission, for a spreadsheet or an LMS import.

Columns: ``student, assignment, submission, score, max_score``, then one column per exercise
(the points earned, in the suite's order; blank where a row's assignment has no such
exercise), then ``needs_review`` (the exercises whose code the usage policy's scan could not
resolve, space-separated; blank when none), then ``diagnostics`` (the report's notes and review
flags, or why the grader could not run). A submission the grader could not grade still gets a row, with score 0.

Writing *updates* the file: rows of the (student, assignment) pairs graded now replace
earlier ones, every other row stays, and rows are sorted by student. So regrading one late
submission into the class's grades.csv neither loses the others nor lists the student twice.
A batch writes rows as submissions finish (at most once a second, each before its results file:
``cli._FinishedWriter``), so a killed run keeps the row of every results file it wrote.
Each update holds an exclusive ``fcntl.flock`` on ``grades.csv.lock`` beside the file while it reads,
merges and atomically replaces it (through a temporary file in the same folder): two processes
writing one CSV (two shards of a class) never lose each other's rows.
"""

from __future__ import annotations

import csv
import fcntl
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from autograder.layout import assignment_in_path, student_id
from autograder.suites import SUITES, load_suite

if TYPE_CHECKING:  # importing the runner imports torch: the CLI reads grades.csv before starting the worker server
    from autograder.runner import GradeReport

LEADING = ["student", "assignment", "submission", "score", "max_score"]
TRAILING = ["needs_review", "diagnostics"]


class GradesCsvError(Exception):
    """An existing file at the CSV path is not a grades.csv this grader can update."""


def report_row(report: GradeReport) -> dict[str, str]:
    points = dict.fromkeys(_exercises(report.assignment), 0.0)
    for test in report.tests:
        points[test.exercise] = points.get(test.exercise, 0.0) + test.score
    notes = report.diagnostics + [f"review: {line}" for line in report.review]
    # A report without tests (the grader failed on it) still shows what the assignment is worth.
    max_score = report.max_score or _suite_max(report.assignment)
    return {
        "student": report.student,
        "assignment": report.assignment,
        "submission": report.submission,
        "score": _pts(report.score),
        "max_score": _pts(max_score) if max_score else "",
        **{exercise: _pts(p) for exercise, p in points.items()},
        "needs_review": " ".join(getattr(report, "review_by_exercise", None) or {}),
        "diagnostics": _one_line(notes),
    }


def error_row(submission: Path, assignment: str | None, message: str) -> dict[str, str]:
    """The row of a submission the grader could not grade: score 0 and the reason."""
    assignment = assignment or assignment_in_path(submission) or ""
    max_score = _suite_max(assignment)
    return {
        "student": student_id(submission, assignment),
        "assignment": assignment,
        "submission": str(submission),
        "score": "0",
        "max_score": _pts(max_score) if max_score else "",
        **dict.fromkeys(_exercises(assignment), "0"),
        "needs_review": "",
        "diagnostics": _one_line([message]),
    }


def read_rows(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    """(header, rows) of an existing grades.csv; nothing when there is no file yet."""
    if not path.exists():
        return [], []
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        header = list(reader.fieldnames or [])
        rows = list(reader)
    if header and not {"student", "assignment"} <= set(header):
        # Never merge into (and so rewrite) a CSV someone else wrote.
        raise GradesCsvError(f"{path} exists and is not a grades.csv (no student and assignment columns); "
                             "choose another path with --csv")
    return header, rows


def update_csv(path: Path, rows: list[dict[str, str]]) -> None:
    """Write ``rows`` into ``path``, replacing earlier rows of the same student and assignment, under the lock."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes, or when the process dies
        old_header, old_rows = read_rows(path)
        graded_now = {_key(row) for row in rows}
        kept = [row for row in old_rows if _key(row) not in graded_now]
        merged = sorted(kept + rows, key=lambda r: (r["student"], r["assignment"], r["submission"]))
        _replace(path, _header(merged, old_header), merged)


def _replace(path: Path, header: list[str], rows: list[dict[str, str]]) -> None:
    """Write a temporary file beside ``path`` and rename it over ``path``: a reader never sees half a file."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=header, restval="")
            writer.writeheader()
            writer.writerows(rows)
        # mkstemp makes it 0600: keep the old file's mode, else the usual 0644
        os.chmod(tmp, path.stat().st_mode & 0o777 if path.exists() else 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _header(rows: list[dict[str, str]], old_header: list[str]) -> list[str]:
    """Exercise columns in course order, then any column only the old file had (nothing is dropped)."""
    present = {row["assignment"] for row in rows}
    exercises: list[str] = []
    for assignment in SUITES:
        if assignment in present:
            exercises += [e for e in _exercises(assignment) if e not in exercises]
    known = LEADING + exercises + TRAILING
    extra = [c for c in old_header if c not in known]
    return LEADING + exercises + extra + TRAILING


def _key(row: dict[str, str]) -> tuple[str, str]:
    return row["student"], row["assignment"]


def _exercises(assignment: str) -> list[str]:
    return list(load_suite(assignment).exercises) if assignment in SUITES else []


def _suite_max(assignment: str) -> float:
    return load_suite(assignment).max_score if assignment in SUITES else 0.0


def _pts(x: float) -> str:
    return f"{x:g}"


def _one_line(notes: list[str]) -> str:
    """Notes joined on one line: a spreadsheet cell with line breaks is hard to read and to filter."""
    return " | ".join(" ".join(note.split()) for note in notes)
