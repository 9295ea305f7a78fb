"""``export-gradebook``: file graded results (results.json) into nbgrader's gradebook.

Why a command of its own rather than a ``grade --gradebook`` option: grading runs untrusted
code and is best done in a locked-down container (see "Security model" in the README),
while the gradebook lives with the nbgrader course and formgrader. The results.json files
are the durable record between the two: an instructor can read them, regrade a few, and
export (again) when satisfied, without grading anything twice. Exporting is idempotent.

What it writes mirrors ``nbgrader autograde`` (``converters/autograde.py`` and
``preprocessors/saveautogrades.py``), through nbgrader's own ``Gradebook`` API:

- the student, created when new (``update_or_create_student``);
- the submission (``update_or_create_submission``), with the time of nbgrader's ``timestamp.txt`` that
  ``grade`` recorded in results.json (``extra_data.timestamp_txt``, parsed again by nbgrader's ``parse_utc``),
  else the file itself when the submission folder is at hand; a time the grader took from the notebook's mtime
  is not used, as autograde never uses one (formgrader then sees the submission as graded);
- every grade cell of an exercise: ``auto_score``; a manual score a person already gave is
  kept and wins, and the cell is flagged for review, as autograde does;
- every exercise's solution cell: an ``auto_comment`` naming the failed hidden tests and
  why, which formgrader shows next to the student's code;
- the late penalty, as autograde's ``AssignLatePenalties`` gives it: the course's configured
  ``LateSubmissionPlugin`` (default: none) on each notebook's score, when the submission is later than
  the assignment's due date (``--due-date`` sets one the gradebook lacks);
- ``autograded/<student>/<assignment>/``, what ``generate_feedback`` and formgrader read
  (``autograder/autograded.py``), after the gradebook is closed.

Exercise ``E`` of a hidden suite maps to the grade cell ``test_E`` (or ``test_E_*``) and the
solution cell ``E`` of the assignment's notebook, the names the solution notebooks use. The
course's notebooks give each grade cell the hidden suite's points (``tests/test_release.py``
checks it), but a gradebook made from an older release may not (softmax's grade cell worth 4,
the suite 8): then the *fraction* earned is kept, ``auto_score = score / max × cell points``
rounded to 0.01, and the command says which exercises it scaled. Grade cells of no
exercise (say, a written answer) are left alone for manual grading.
"""

from __future__ import annotations

import json
import sqlite3
import warnings
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.exc import SAWarning

from autograder.layout import student_id


class ExportError(Exception):
    """The export cannot run: no gradebook, an assignment it does not know, an unreadable result."""


@dataclass
class GradedResult:
    """What the gradebook needs from one results.json."""

    path: Path
    assignment: str
    student: str
    submission: str | None
    exercises: dict[str, tuple[float, float]]  # exercise -> (score, max_score), in the suite's order
    failures: dict[str, list[str]]             # exercise -> one line per failed hidden test
    notes: list[str]                           # the report's diagnostics about the whole notebook
    tests: dict[str, list[str]]                # exercise -> one line per hidden test, passed or failed
    notebook: str | None = None                # the notebook graded
    wrong_notebook: str | None = None          # why the notebook was refused as another assignment's
    submitted_at: str | None = None            # ISO 8601 (results.json's extra_data)
    submitted_at_source: str | None = None     # "timestamp.txt" or "mtime"
    timestamp_txt: str | None = None           # nbgrader's timestamp.txt, as it was

    def submitted_at_text(self) -> str:
        """What a timestamp.txt for this submission says (nbgrader's default ``timestamp_format``)."""
        if self.timestamp_txt:
            return self.timestamp_txt
        from datetime import datetime, timezone

        when = datetime.fromisoformat(self.submitted_at or "").astimezone(timezone.utc)
        return when.strftime("%Y-%m-%d %H:%M:%S.%f UTC")


@dataclass
class NotebookPlan:
    """Where one assignment's exercises land in the gradebook."""

    notebook: str
    grade_cells: dict[str, list[tuple[str, float]]]  # exercise -> [(grade cell, its points)]
    solution_cells: set[str]


def export(paths: list[Path], db: str, course_dir: Path | None = None, due_date: str | None = None) -> Iterator[str]:
    """Export the results at ``paths`` (files or folders of them) into ``db`` and the autograded folders of the
    course at ``course_dir`` (default: the gradebook's folder); yields what to print.

    Everything is checked (results readable, gradebook there, assignments known, due dates) before
    anything is written, so a mistake leaves the gradebook as it was.
    """
    results: list = []
    skipped: list = []
    for path in results_files(paths):
        result = read_result(path)
        (results if result.exercises else skipped).append(result)
    for result in skipped:
        yield (f"warning: {result.path}: not exported, the grader could not grade {result.student}'s submission "
               f"({'; '.join(result.notes) or 'no tests'}); regrade it")
    results, duplicates = newest_per_student(results)
    yield from duplicates
    with open_gradebook(db) as gb:
        config, coursedir = load_course(course_dir, db)
        plans = {}
        for assignment, sample in _one_per_assignment(results).items():
            plans[assignment] = plan_for(gb, assignment, sample, db)
            yield from plan_notes(assignment, sample, plans[assignment])
        yield from set_due_dates(gb, list(plans), due_date)
        new_students = {r.student for r in results} - {s.id for s in gb.students}
        late = late_penalties(config)
        for result in results:
            score, max_score = write_result(gb, result, plans[result.assignment])
            late_note = assign_late_penalty(gb, result, plans[result.assignment], late)
            yield f"{result.student}  {result.assignment}  {score:g}/{max_score:g}{late_note}"
    untimed = [f"{r.student}/{r.assignment}" for r in results if not _timestamp(r)]
    if untimed:
        yield (f"note: no timestamp.txt for {', '.join(untimed)}: no submission time in the gradebook, so no late "
               "penalty (results.json keeps the notebook's mtime, which nbgrader never uses)")
    yield f"exported {len(results)} result(s) into {db} ({len(new_students)} new student(s))"
    yield from write_autograded_folders(coursedir, _db_url(db)[0], results, plans)


# --- reading results -----------------------------------------------------------------------

def results_files(paths: list[Path]) -> list[Path]:
    files = []
    for path in paths:
        if path.is_dir():
            found = sorted(path.glob("*.json"))
            if not found:
                raise ExportError(f"no results .json files in {path}")
            files += found
        elif path.is_file():
            if path.suffix == ".json":  # so `results/a1/*` works: grades.csv sits next to the results
                files.append(path)
        else:
            raise ExportError(f"cannot read {path}: no such file or folder")
    return files


def read_result(path: Path) -> GradedResult:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        extra = data["extra_data"]
        assignment = extra["assignment"]
        exercises, failures, tests = _exercise_scores(data["tests"])
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ExportError(f"cannot read {path}: {exc}") from None
    except (KeyError, TypeError, ValueError, AttributeError):
        raise ExportError(f"{path} is not a results.json written by this grader") from None
    # Results written before extra_data had a student: the notebook's path tells the same.
    where = extra.get("submission") or extra.get("notebook") or str(path)
    student = extra.get("student") or student_id(where, assignment)
    return GradedResult(path, assignment, student, extra.get("submission"), exercises, failures,
                        list(extra.get("diagnostics") or []), tests, extra.get("notebook"),
                        extra.get("wrong_notebook"), extra.get("submitted_at"), extra.get("submitted_at_source"),
                        extra.get("timestamp_txt"))


def _exercise_scores(tests: list[dict]):
    """Per exercise: (points earned, points possible), the failed tests' feedback, and every test's line."""
    exercises: dict[str, tuple[float, float]] = {}
    failures: dict[str, list[str]] = {}
    lines: dict[str, list[str]] = {}
    for test in tests:
        exercise, _, title = test["name"].partition(": ")
        exercise = (test.get("tags") or [exercise])[0]  # report.py tags each test with its exercise first
        score, max_score = float(test["score"]), float(test["max_score"])
        earned, possible = exercises.get(exercise, (0.0, 0.0))
        exercises[exercise] = (earned + score, possible + max_score)
        if score < max_score:
            failures.setdefault(exercise, []).append(
                f"✗ {title or test['name']} ({score:g}/{max_score:g}): {test.get('output') or 'failed'}")
        lines.setdefault(exercise, []).append(failures[exercise][-1] if score < max_score
                                              else f"✓ {title or test['name']} ({score:g}/{max_score:g})")
    return exercises, failures, lines


def newest_per_student(results: list[GradedResult]) -> tuple[list[GradedResult], list[str]]:
    """One result per (student, assignment): the newest file, when a regrade left an older one around."""
    groups: dict[tuple[str, str], list[GradedResult]] = {}
    for result in results:
        groups.setdefault((result.student, result.assignment), []).append(result)
    chosen, notes = [], []
    for (student, assignment), group in sorted(groups.items()):
        newest = max(group, key=lambda r: r.path.stat().st_mtime)
        chosen.append(newest)
        if len(group) > 1:
            notes.append(f"note: {len(group)} results for {student}/{assignment}; exporting the newest, {newest.path}")
    return chosen, notes


def _one_per_assignment(results: list[GradedResult]) -> dict[str, GradedResult]:
    return {r.assignment: r for r in reversed(results)}


# --- the gradebook -------------------------------------------------------------------------

def open_gradebook(db: str):
    """nbgrader's Gradebook on ``db`` (a path or an SQLAlchemy URL), refusing to create one.

    ``Gradebook()`` would silently create an empty database at a mistyped path; an empty
    gradebook has no assignments, so the grades would go nowhere useful.
    """
    url, path = _db_url(db)
    if path is not None:
        _check_sqlite_gradebook(path)
    # Imported here: it takes seconds, and only this command needs it.
    from nbgrader.api import Gradebook

    # course_id="": open the gradebook without registering a course of its own in it
    return Gradebook(url, course_id="")


def _db_url(db: str) -> tuple[str, Path | None]:
    if "://" not in db:
        return f"sqlite:///{Path(db).resolve()}", Path(db)
    sqlite_prefix = "sqlite:///"
    return db, (Path(db[len(sqlite_prefix):]) if db.startswith(sqlite_prefix) else None)


def _check_sqlite_gradebook(path: Path) -> None:
    if not path.is_file():
        raise ExportError(f"no gradebook at {path}: run `nbgrader generate_assignment <assignment>` in the course "
                          "folder first (it creates gradebook.db), or pass --db")
    try:
        with closing(sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)) as con:
            tables = {row[0] for row in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    except sqlite3.DatabaseError as exc:
        raise ExportError(f"{path} is not an nbgrader gradebook ({exc})") from None
    if not {"assignment", "grade"} <= tables:
        raise ExportError(f"{path} is not an nbgrader gradebook (no assignment and grade tables)")


def plan_for(gb, assignment: str, sample: GradedResult, db: str) -> NotebookPlan:
    """The notebook of ``assignment`` whose grade cells are named after the most exercises."""
    from nbgrader.api import MissingEntry

    try:
        notebooks = gb.find_assignment(assignment).notebooks
    except MissingEntry:
        raise ExportError(f"assignment {assignment} is not in the gradebook {db}: run "
                          f"`nbgrader generate_assignment {assignment}` in the course folder first") from None
    plans = [NotebookPlan(nb.name, _cells_by_exercise(nb, sample.exercises), {c.name for c in nb.solution_cells})
             for nb in notebooks]
    best = max(plans, key=lambda p: len(p.grade_cells), default=None)
    if best is None or not best.grade_cells:
        raise ExportError(f"no grade cell of {assignment} in {db} is named test_<exercise> for an exercise of its "
                          f"hidden suite ({', '.join(sample.exercises)})")
    return best


def _cells_by_exercise(notebook, exercises) -> dict[str, list[tuple[str, float]]]:
    cells: dict[str, list[tuple[str, float]]] = {}
    for cell in notebook.grade_cells:
        exercise = _exercise_of(cell.name, exercises)
        if exercise:
            cells.setdefault(exercise, []).append((cell.name, float(cell.max_score)))
    return cells


def _exercise_of(grade_cell: str, exercises) -> str | None:
    """``test_E`` or ``test_E_<more>``; the longest ``E`` wins
    (``test_causal_mask_2`` is ``causal_mask``'s, not ``causal``'s)."""
    matches = [e for e in exercises if grade_cell == f"test_{e}" or grade_cell.startswith(f"test_{e}_")]
    return max(matches, key=len, default=None)


def plan_notes(assignment: str, sample: GradedResult, plan: NotebookPlan) -> Iterator[str]:
    """Say what an instructor would otherwise be surprised by: scaled points, exercises with no cell."""
    missing = [e for e in sample.exercises if e not in plan.grade_cells]
    if missing:
        yield (f"warning: {assignment}: no grade cell test_<exercise> in notebook {plan.notebook} for "
               f"{', '.join(missing)}; their points are not exported")
    scaled = []
    for exercise, cells in plan.grade_cells.items():
        suite_points, cell_points = sample.exercises[exercise][1], sum(points for _, points in cells)
        if suite_points != cell_points:
            scaled.append(f"{exercise} {suite_points:g}→{cell_points:g}")
    if scaled:
        yield (f"note: {assignment}: the hidden suite's points are scaled to the gradebook's grade cells "
               f"(the fraction earned is kept): {', '.join(scaled)}")


def write_result(gb, result: GradedResult, plan: NotebookPlan) -> tuple[float, float]:
    """Record one result, as nbgrader autograde would; returns the gradebook's (score, max_score) for it."""
    from nbgrader.api import MissingEntry

    gb.update_or_create_student(result.student)
    with warnings.catch_warnings():
        # add_submission builds the submission's notebooks and grades under autoflush, and SQLAlchemy
        # warns about that ordering on every new submission; nbgrader autograde does the same, harmlessly.
        warnings.simplefilter("ignore", SAWarning)
        gb.update_or_create_submission(result.assignment, result.student, **_timestamp(result))
    try:
        for exercise, (score, max_score) in result.exercises.items():
            fraction = score / max_score if max_score else 0.0
            for cell, points in plan.grade_cells.get(exercise, []):
                grade = gb.find_grade(cell, plan.notebook, result.assignment, result.student)
                grade.auto_score = round(fraction * points, 2)
                grade.needs_manual_grade = grade.manual_score is not None  # SaveAutoGrades' rule
            if exercise in plan.solution_cells:
                comment = gb.find_comment(exercise, plan.notebook, result.assignment, result.student)
                comment.auto_comment = _comment(result, exercise)
    except MissingEntry as exc:  # a submission recorded before the notebook changed
        gb.db.rollback()
        raise ExportError(f"{result.path}: {exc}; "
                          f"run `nbgrader generate_assignment {result.assignment}` again") from None
    gb.db.commit()
    submission = gb.find_submission(result.assignment, result.student)
    return submission.score, submission.max_score


def _comment(result: GradedResult, exercise: str) -> str:
    """The exercise's score, its failed tests with the grader's hint, and the notebook's notes.

    The notes (say, "not valid notebook JSON") go with every exercise that lost points, as they
    often explain it; with none lost, with the first exercise, so no note is dropped. Lines are HTML-escaped:
    they quote the student's code and exception messages, and nbgrader's feedback page renders a comment as
    Markdown, raw HTML included (an ``<img onerror=...>`` raised by a student's softmax ran there).
    """
    import html

    score, max_score = result.exercises[exercise]
    failures = [html.escape(line, quote=False) for line in result.failures.get(exercise, [])]
    head = (f"Hidden tests: {score:g}/{max_score:g} points." if failures
            else f"Hidden tests: all passed ({score:g}/{max_score:g} points).")
    first = exercise == next(iter(result.exercises))
    with_notes = bool(failures) or (first and not result.failures)
    notes = ([f"Note on the whole notebook: {html.escape(note, quote=False)}" for note in result.notes]
             if with_notes else [])
    return "\n".join([head, *failures, *notes])


def _timestamp(result: GradedResult) -> dict:
    """``timestamp=`` from nbgrader's timestamp.txt, as results.json recorded it or, for results written before
    it did, from the submission folder; nbgrader autograde reads the same file."""
    from nbgrader.utils import parse_utc

    from autograder.timestamps import small_text

    try:
        text = result.timestamp_txt
        if text is None and result.submission:
            folder = Path(result.submission)
            stamp = (folder.parent if folder.suffix == ".ipynb" else folder) / "timestamp.txt"
            text = small_text(stamp).strip() if stamp.is_file() else None
        return {"timestamp": parse_utc(text)} if text else {}
    except (OSError, UnicodeDecodeError, ValueError, OverflowError):
        return {}  # an unreadable date must not cost the student the grade; the submission just has no time


def write_autograded_folders(coursedir, db_url: str, results: list[GradedResult], plans) -> Iterator[str]:
    """After the gradebook is closed (nbgrader's preprocessors open it themselves): one folder per result; one that
    nbgrader's own checks refuse is skipped with a warning, as the grades are already in."""
    from autograder.autograded import write_autograded

    written, unsecret = 0, []
    for result in results:
        try:
            made_secret = write_autograded(coursedir, db_url, result, plans[result.assignment])
        except Exception as exc:  # noqa: BLE001  (nbgrader autograde would stop on this notebook too)
            yield (f"warning: autograded notebook of {result.student}/{result.assignment} not written: "
                   f"{type(exc).__name__}: {exc}")
            continue
        written += 1
        if made_secret:
            unsecret.append(result.student)
    if unsecret:
        yield (f"note: no submission_secret.txt (not collected through nbgrader's exchange) for {', '.join(unsecret)}: "
               "made one up (kept on re-export) so release_feedback runs, but fetch_feedback cannot find their "
               "feedback: hand them feedback/<student>/<assignment>/ directly")
    if written:
        folder = coursedir.format_path(coursedir.autograded_directory, "*", "*")
        yield f"autograded: {written} notebook(s) in {folder}; next: nbgrader generate_feedback <assignment>"


# --- the course: its configuration, due dates and late penalties ----------------------------

def load_course(course_dir: Path | None, db: str):
    """The course's nbgrader configuration (its nbgrader_config.py) and ``CourseDirectory``; the course folder is
    ``course_dir``, else the gradebook's folder (a sqlite file), else the working directory, as nbgrader's."""
    from nbgrader.coursedir import CourseDirectory
    from traitlets.config import Config
    from traitlets.config.loader import PyFileConfigLoader

    path = _db_url(db)[1]
    root = (course_dir or (path.resolve().parent if path is not None else Path.cwd())).resolve()
    config = Config()
    if (root / "nbgrader_config.py").is_file():
        config = PyFileConfigLoader("nbgrader_config.py", path=str(root)).load_config()
    coursedir = CourseDirectory(config=config)
    if course_dir is not None or "root" not in config.get("CourseDirectory", {}):
        coursedir.root = str(root)
    return config, coursedir


def set_due_dates(gb, assignments: list[str], due_date: str | None) -> Iterator[str]:
    """``--due-date`` for assignments whose gradebook entry has none; one that has another is refused."""
    if not due_date:
        return
    from nbgrader.utils import parse_utc

    try:
        wanted = parse_utc(due_date)
    except (ValueError, OverflowError):
        raise ExportError(f"--due-date {due_date!r} is not a date nbgrader reads "
                          "(e.g. '2026-12-01 17:00:00 UTC')") from None
    for name in assignments:
        current = gb.find_assignment(name).duedate
        if current is not None and current != wanted:
            raise ExportError(f"{name} is due {current} UTC in the gradebook, not {wanted}: change it there "
                              f"(formgrader, or `nbgrader db assignment add {name} --duedate=...`) or drop --due-date")
    for name in assignments:
        if gb.find_assignment(name).duedate is None:
            gb.update_or_create_assignment(name, duedate=wanted)
            yield f"{name}: due date set to {wanted} UTC"
    gb.db.commit()


def late_penalties(config):
    """nbgrader autograde's ``AssignLatePenalties`` with the course's configured plugin."""
    from nbgrader.preprocessors import AssignLatePenalties

    try:
        late = AssignLatePenalties(config=config)
        late.init_plugin()
    except Exception as exc:  # a TraitError or the plugin's own: the course's configuration, said in one line
        raise ExportError(f"nbgrader_config.py: the late-submission plugin cannot be used "
                          f"({type(exc).__name__}: {str(exc).splitlines()[-1][:300]})") from None
    return late


def assign_late_penalty(gb, result: GradedResult, plan: NotebookPlan, late) -> str:
    """``AssignLatePenalties.preprocess`` on the exported notebook; returns what to add to its printed line."""
    submission = gb.find_submission(result.assignment, result.student)
    notebook = gb.find_submission_notebook(plan.notebook, result.assignment, result.student)
    notebook.late_submission_penalty = None
    seconds = submission.total_seconds_late
    if seconds > 0:
        penalty = late.plugin_inst.late_submission_penalty(result.student, notebook.score, seconds)
        if penalty is not None:
            notebook.late_submission_penalty = late._check_late_penalty(notebook, penalty)
    gb.db.commit()
    if seconds <= 0:
        return ""
    return f"  late by {seconds / 3600:.1f} h, penalty {notebook.late_submission_penalty or 0:g}"
