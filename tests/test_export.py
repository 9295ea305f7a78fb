"""Grades leave the grader: grades.csv from a batch run, and nbgrader's gradebook from results.json.

The examples are graded once per module (the `graded` fixture) and a gradebook is generated
once by nbgrader itself (the `course` fixture); every test works on copies of those.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import sys
from datetime import datetime
from pathlib import Path

import pytest

from autograder.cli import grade_all, main, parser
from autograder.grades_csv import GradesCsvError, read_rows, update_csv
from tests.variants import REPO

pytestmark = pytest.mark.engine
EXAMPLES = REPO / "examples" / "submissions"
STUDENTS = sorted(p.name for p in EXAMPLES.iterdir() if (p / "a1_attention").is_dir())
A1_EXERCISES = ["softmax", "scaled_dot_product_attention", "split_heads", "merge_heads", "MultiHeadAttention"]


@pytest.fixture(scope="module")
def graded(server, tmp_path_factory):
    """Grade every example and one folder no assignment fits, as `grade ... --out-dir` does: (status, dir)."""
    out = tmp_path_factory.mktemp("graded")
    mystery = tmp_path_factory.mktemp("inbox") / "mystery"
    mystery.mkdir()
    (mystery / "notes.ipynb").write_text(json.dumps({
        "nbformat": 4, "nbformat_minor": 5, "metadata": {},
        "cells": [{"cell_type": "code", "id": "c1", "metadata": {}, "source": "x = 1", "outputs": [],
                   "execution_count": None}],
    }))
    submissions = [str(EXAMPLES / name / "a1_attention") for name in STUDENTS] + [str(mystery)]
    args = parser().parse_args(["grade", *submissions, "--out-dir", str(out), "--quiet"])
    return grade_all(args, server), out


@pytest.fixture(scope="module")
def course(tmp_path_factory):
    """A copy of the course folder after `nbgrader generate_assignment a1_attention` (run in-process: faster)."""
    from nbgrader.apps import NbGraderAPI
    from traitlets.config.loader import PyFileConfigLoader

    root = tmp_path_factory.mktemp("course")
    shutil.copy(REPO / "nbgrader_config.py", root)
    shutil.copytree(REPO / "solutions" / "a1_attention", root / "solutions" / "a1_attention")
    config = PyFileConfigLoader("nbgrader_config.py", path=str(root)).load_config()
    with pytest.MonkeyPatch.context() as mp:
        # nbgrader runs alembic
        mp.setenv("PATH", f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
        mp.chdir(root)
        result = NbGraderAPI(config=config).generate_assignment("a1_attention", force=True)
    assert result["success"], result.get("log")
    return root


def results_by_student(out: Path) -> dict[str, dict]:
    results = [json.loads(p.read_text()) for p in sorted(out.glob("*.json"))]
    return {r["extra_data"]["student"]: r for r in results}


def exercise_points(results: dict) -> dict[str, float]:
    points = dict.fromkeys(A1_EXERCISES, 0.0)
    for test in results["tests"]:
        points[test["tags"][0]] += test["score"]
    return points


def read_csv(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        return list(reader.fieldnames), list(reader)


def grade_cell_points() -> dict[str, float]:
    """Points of each exercise's grade cell, read from the solution notebook (not from the gradebook)."""
    nb = json.loads((REPO / "solutions" / "a1_attention" / "attention.ipynb").read_text())
    meta = [c["metadata"].get("nbgrader", {}) for c in nb["cells"]]
    return {m["grade_id"].removeprefix("test_"): float(m["points"]) for m in meta if m.get("grade")}


def gradebook_db(course: Path, tmp_path: Path) -> Path:
    db = tmp_path / "gradebook.db"
    shutil.copy(course / "gradebook.db", db)
    return db


def open_gradebook(db: Path):
    from nbgrader.api import Gradebook

    return Gradebook(f"sqlite:///{db}", course_id="")


# --- grades.csv ----------------------------------------------------------------------------

def test_csv_has_one_row_per_submission_sorted_by_student(graded):
    status, out = graded
    header, rows = read_csv(out / "grades.csv")
    assert header == ["student", "assignment", "submission", "score", "max_score", *A1_EXERCISES, "needs_review",
                      "diagnostics"]
    assert [r["student"] for r in rows] == sorted([*STUDENTS, "mystery"])
    assert status == 2  # one submission could not be graded, and said so


def test_csv_scores_are_the_results_json_scores(graded):
    _, out = graded
    rows = {r["student"]: r for r in read_csv(out / "grades.csv")[1]}
    results = results_by_student(out)
    assert sorted(results) == STUDENTS
    for student, result in results.items():
        row = rows[student]
        assert (row["assignment"], row["submission"]) == ("a1_attention", str(EXAMPLES / student / "a1_attention"))
        assert float(row["score"]) == result["score"] and row["max_score"] == "37"
        assert {e: float(row[e]) for e in A1_EXERCISES} == exercise_points(result)
    assert rows["untouched_release"]["score"] == "0" and rows["untouched_release"]["diagnostics"] == ""
    assert "not valid notebook JSON" in rows["broken_json"]["diagnostics"]
    assert "\n" not in rows["broken_json"]["diagnostics"]


def test_csv_keeps_a_row_for_a_submission_the_grader_could_not_grade(graded):
    _, out = graded
    row = {r["student"]: r for r in read_csv(out / "grades.csv")[1]}["mystery"]
    assert (row["score"], row["assignment"], row["softmax"]) == ("0", "", "")
    assert "cannot tell which assignment" in row["diagnostics"]
    assert not any("mystery" in p.name for p in out.glob("*.json"))


def test_csv_update_replaces_the_regraded_student_and_keeps_the_others(graded, tmp_path):
    _, out = graded
    path = tmp_path / "grades.csv"
    shutil.copy(out / "grades.csv", path)
    _, before = read_csv(path)
    regraded = {**before[0], "score": "36", "submission": "late/x"}
    newcomer = {**before[0], "student": "aaron", "score": "1"}
    update_csv(path, [regraded, newcomer])
    _, after = read_csv(path)
    assert [r["student"] for r in after] == ["aaron", *[r["student"] for r in before]]
    assert after[1] == regraded and after[2:] == before[1:]


def test_a_foreign_csv_is_refused_before_grading(tmp_path, capsys):
    foreign = tmp_path / "marks.csv"
    foreign.write_text("name,mark\nalice,3\n")
    with pytest.raises(GradesCsvError):
        read_rows(foreign)
    assert main(["grade", str(EXAMPLES / "perfect" / "a1_attention"), "--csv", str(foreign)]) == 2
    assert "not a grades.csv" in capsys.readouterr().err and foreign.read_text() == "name,mark\nalice,3\n"


# --- nbgrader's gradebook ------------------------------------------------------------------

def test_gradebook_totals_are_the_results_scores(graded, course, tmp_path, capsys):
    """The solution notebook's grade cells are worth what the hidden suite awards, so nothing is scaled."""
    _, out = graded
    db = gradebook_db(course, tmp_path)
    assert main(["export-gradebook", str(out), "--db", str(db)]) == 0
    printed = capsys.readouterr().out
    assert "→" not in printed and f"({len(STUDENTS)} new student(s))" in printed
    results = results_by_student(out)
    with open_gradebook(db) as gb:
        assert sorted(s.id for s in gb.students) == STUDENTS
        for student, result in results.items():
            grades = {e: gb.find_grade(f"test_{e}", "attention", "a1_attention", student) for e in A1_EXERCISES}
            assert {e: g.auto_score for e, g in grades.items()} == exercise_points(result)
            assert not any(g.needs_manual_grade for g in grades.values())
            submission = gb.find_submission("a1_attention", student)
            assert (submission.score, submission.max_score) == (pytest.approx(result["score"]), 37.0)
        comment = gb.find_comment("softmax", "attention", "a1_attention", "untouched_release").comment
        assert comment.startswith("Hidden tests: 0/8 points.") and "not implemented yet" in comment


def test_gradebook_scales_to_a_grade_cell_worth_other_points(graded, course, tmp_path, capsys):
    """A gradebook made from an older notebook (softmax's grade cell worth 4, the suite 8) gets the fraction earned."""
    _, out = graded
    db = gradebook_db(course, tmp_path)
    with open_gradebook(db) as gb:
        gb.find_grade_cell("test_softmax", "attention", "a1_attention").max_score = 4.0
        gb.db.commit()
    cell_points = {**grade_cell_points(), "softmax": 4.0}
    assert main(["export-gradebook", str(out), "--db", str(db)]) == 0
    assert "softmax 8→4" in capsys.readouterr().out
    results = results_by_student(out)
    with open_gradebook(db) as gb:
        for student, result in results.items():
            maxima = {e: sum(t["max_score"] for t in result["tests"] if t["tags"][0] == e) for e in A1_EXERCISES}
            expected = {e: round(p / maxima[e] * cell_points[e], 2) for e, p in exercise_points(result).items()}
            grades = {e: gb.find_grade(f"test_{e}", "attention", "a1_attention", student) for e in A1_EXERCISES}
            assert {e: g.auto_score for e, g in grades.items()} == expected
            assert gb.find_submission("a1_attention", student).max_score == 33.0
        # split_heads is worth 3 in both: its score goes over unscaled
        assert gb.find_grade("test_split_heads", "attention", "a1_attention", "hostile").auto_score == \
            exercise_points(results["hostile"])["split_heads"]


def test_reexport_updates_and_never_duplicates_and_keeps_manual_scores(graded, course, tmp_path):
    _, out = graded
    db = gradebook_db(course, tmp_path)
    results = tmp_path / "results"
    shutil.copytree(out, results)
    assert main(["export-gradebook", str(results), "--db", str(db)]) == 0
    with open_gradebook(db) as gb:
        gb.find_grade("test_merge_heads", "attention", "a1_attention", "broken_json").manual_score = 2.0
        gb.db.commit()
    # A regrade: untouched_release now passes every softmax test.
    path = next(p for p in results.glob("*.json") if "untouched_release" in p.name)
    result = json.loads(path.read_text())
    for test in result["tests"]:
        if test["tags"][0] == "softmax":
            test["score"], test["status"] = test["max_score"], "passed"
    path.write_text(json.dumps(result))
    assert main(["export-gradebook", str(results), "--db", str(db)]) == 0
    with open_gradebook(db) as gb:
        submissions = gb.assignment_submissions("a1_attention")
        assert sorted(s.student.id for s in submissions) == STUDENTS
        assert all(len(s.notebooks) == 1 and len(s.notebooks[0].grades) == 5 for s in submissions)
        assert gb.find_submission("a1_attention", "untouched_release").score == 8.0  # 0 before, now softmax's 8
        kept = gb.find_grade("test_merge_heads", "attention", "a1_attention", "broken_json")
        assert (kept.manual_score, kept.needs_manual_grade, kept.score) == (2.0, True, 2.0)


def test_export_names_students_by_folder_and_reads_nbgraders_timestamp(graded, course, tmp_path):
    _, out = graded
    db = gradebook_db(course, tmp_path)
    folder = tmp_path / "submitted" / "zoe" / "a1_attention"
    folder.mkdir(parents=True)
    (folder / "timestamp.txt").write_text("2026-11-20 10:30:00 UTC\n")
    result = results_by_student(out)["perfect"]
    del result["extra_data"]["student"]  # as in results.json written before the student was recorded
    result["extra_data"]["submission"] = result["extra_data"]["notebook"] = str(folder / "attention.ipynb")
    (tmp_path / "zoe.json").write_text(json.dumps(result))
    assert main(["export-gradebook", str(tmp_path / "zoe.json"), "--db", str(db)]) == 0
    with open_gradebook(db) as gb:
        assert gb.find_submission("a1_attention", "zoe").timestamp == datetime(2026, 11, 20, 10, 30)


@pytest.mark.parametrize("problem, message", [
    ("no db", "no gradebook at"),
    ("unknown assignment", "assignment a2_masking is not in the gradebook"),
    ("not results", "is not a results.json written by this grader"),
])
def test_export_stops_with_one_line_and_writes_nothing(graded, course, tmp_path, capsys, problem, message):
    _, out = graded
    db = tmp_path / "missing.db" if problem == "no db" else gradebook_db(course, tmp_path)
    before = db.read_bytes() if db.exists() else None
    result = json.loads(next(out.glob("*.json")).read_text())
    if problem == "unknown assignment":
        result["extra_data"]["assignment"] = "a2_masking"
    if problem == "not results":
        result = {"score": 1}
    (tmp_path / "r.json").write_text(json.dumps(result))
    assert main(["export-gradebook", str(tmp_path / "r.json"), "--db", str(db)]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert (db.read_bytes() if db.exists() else None) == before


def test_student_is_read_from_nbgraders_folders_and_never_a_course_folder():
    from autograder.layout import student_id

    assert student_id("submitted/alice/a1_attention/attention.ipynb", "a1_attention") == "alice"
    assert student_id("submitted/alice/a1_attention", "a1_attention") == "alice"
    assert student_id("assignments/a1_attention/attention.ipynb", "a1_attention") == "self"
    assert student_id("inbox/bob.ipynb", "a1_attention") == "bob"


# --- nbgrader's whole loop: timestamps, late penalties, autograded/, feedback -------------------

LATE_PLUGIN = '''

from nbgrader.plugins import BasePlugin


class SubtractPerDay(BasePlugin):
    """One point per started day late (nbgrader's documented plugin example, per day)."""

    def late_submission_penalty(self, student_id, score, total_seconds_late):
        return float(-(-total_seconds_late // 86400))


c.AssignLatePenalties.plugin_class = SubtractPerDay
c.Exchange.root = os.path.join(c.CourseDirectory.root, "exchange")
'''
DUE = "2026-12-01 17:00:00 UTC"
STAMPS = {"perfect": "2026-12-01 16:59:00.000000 UTC", "partly_wrong": "2026-12-06 17:00:00.000000 UTC",
          "broken_json": None}  # on time, exactly 5 days late, no timestamp.txt (collected by hand)


@pytest.mark.parametrize("text", ["2026-11-20 10:30:00.123456 UTC", "2026-11-20 10:30:00 America/New_York",
                                  "2026-11-20 10:30:00 -0500", "2026-11-20T10:30:00+02:00", "2026-11-20 10:30:00"])
def test_grade_reads_timestamp_txt_as_nbgrader_does(tmp_path, text):
    from nbgrader.utils import parse_utc

    from autograder.timestamps import submission_time

    (tmp_path / "timestamp.txt").write_text(text + "\n")
    recorded = submission_time(tmp_path, tmp_path / "attention.ipynb")
    assert recorded["submitted_at_source"] == "timestamp.txt" and recorded["timestamp_txt"] == text
    assert datetime.fromisoformat(recorded["submitted_at"]).replace(tzinfo=None) == parse_utc(text)


def test_results_record_when_the_notebook_was_saved_without_timestamp_txt(graded):
    _, out = graded
    extra = results_by_student(out)["perfect"]["extra_data"]
    notebook = EXAMPLES / "perfect" / "a1_attention" / "attention.ipynb"
    assert (extra["submitted_at_source"], extra["timestamp_txt"], extra["wrong_notebook"]) == ("mtime", None, None)
    assert datetime.fromisoformat(extra["submitted_at"]).timestamp() == pytest.approx(notebook.stat().st_mtime)


def nbgrader_api(root: Path):
    from nbgrader.apps import NbGraderAPI
    from traitlets.config.loader import PyFileConfigLoader

    return NbGraderAPI(config=PyFileConfigLoader("nbgrader_config.py", path=str(root)).load_config())


def test_feedback_with_the_hidden_tests_reaches_every_student_late_penalty_included(graded, course, server, tmp_path,
                                                                                   monkeypatch):
    """submitted/ as nbgrader's collect leaves it, graded, exported, then nbgrader's generate_feedback and
    release_feedback: each student's feedback shows the hidden tests, a broken notebook and another assignment's
    say why they were not graded, a misnamed notebook is graded under the expected name, and the late submission
    loses what the course's late-submission plugin says."""
    from nbgrader.utils import notebook_hash

    from autograder.timestamps import submission_time

    _, out = graded
    root = tmp_path / "course"
    shutil.copytree(course, root)
    (root / "nbgrader_config.py").write_text((root / "nbgrader_config.py").read_text() + LATE_PLUGIN)
    (root / "exchange").mkdir()
    results, by_student = tmp_path / "results", results_by_student(out)
    results.mkdir()
    for student, stamp in STAMPS.items():
        folder = root / "submitted" / student / "a1_attention"
        shutil.copytree(EXAMPLES / student / "a1_attention", folder)
        if stamp:
            (folder / "timestamp.txt").write_text(stamp)
        result = by_student[student]  # as if graded from the course's submitted/ folder: what grade records there
        result["extra_data"].update(submission=str(folder), notebook=str(folder / "attention.ipynb"),
                                    **submission_time(folder, folder / "attention.ipynb"))
        (results / f"{student}.json").write_text(json.dumps(result))
    odd = {"wrong": (REPO / "assignments" / "a2_masking" / "masking.ipynb", "attention.ipynb"),
           "misnamed": (EXAMPLES / "perfect" / "a1_attention" / "attention.ipynb", "attention_final.ipynb")}
    for student, (notebook, name) in odd.items():
        (root / "submitted" / student / "a1_attention").mkdir(parents=True)
        shutil.copy(notebook, root / "submitted" / student / "a1_attention" / name)
    folders = [str(root / "submitted" / student / "a1_attention") for student in odd]
    assert grade_all(parser().parse_args(["grade", *folders, "--out-dir", str(results), "--quiet"]), server) == 0
    assert main(["export-gradebook", str(results), "--db", str(root / "gradebook.db"), "--due-date", DUE]) == 0

    with open_gradebook(root / "gradebook.db") as gb:
        penalties = {s: gb.find_submission("a1_attention", s).late_submission_penalty for s in STAMPS}
        assert penalties == {"perfect": 0.0, "partly_wrong": 5.0, "broken_json": 0.0}
        assert gb.find_submission("a1_attention", "broken_json").timestamp is None  # an mtime is never used
        assert gb.find_submission("a1_attention", "partly_wrong").score == by_student["partly_wrong"]["score"]
    monkeypatch.chdir(root)  # the course's db_url is relative, as in nbgrader's own config
    api = nbgrader_api(root)
    students = [*STAMPS, *odd]
    assert api.get_autograded_students("a1_attention") == set(students)  # formgrader's "autograded" check
    assert api.generate_feedback("a1_attention")["success"]
    assert api.release_feedback("a1_attention")["success"]
    pages = {}
    for student in students:
        feedback = root / "feedback" / student / "a1_attention"
        pages[student] = (feedback / "attention.html").read_text()
        secret = (feedback / "submission_secret.txt").read_text()
        released = f"{notebook_hash(secret=secret, notebook_id='attention')}.html"
        assert (root / "exchange" / "transformers" / "feedback" / released).read_text() == pages[student]
        assert "Hidden tests of scaled_dot_product_attention" in pages[student]
        assert "autograder/suites" not in pages[student] and "Traceback (most recent" not in pages[student]
    assert "1/d_k instead of 1/sqrt(d_k)" in pages["partly_wrong"]
    assert "Late submission penalty" in pages["partly_wrong"]
    assert "Late submission penalty" not in pages["perfect"] and "✗" not in pages["perfect"]
    assert "This notebook was not graded:" in pages["broken_json"] and "not valid notebook JSON" in pages["broken_json"]
    assert "This notebook was not graded:" in pages["wrong"] and "this is a2_masking's notebook" in pages["wrong"]
    assert "(Score: 37.0 / 37.0)" in pages["misnamed"] and "✗" not in pages["misnamed"]


def test_a_timestamp_txt_that_is_a_link_or_large_is_not_read(tmp_path):
    from autograder.timestamps import submission_time

    (tmp_path / "attention.ipynb").write_text("{}")
    (tmp_path / "elsewhere.txt").write_text("2026-11-20 10:30:00 UTC")
    (tmp_path / "timestamp.txt").symlink_to(tmp_path / "elsewhere.txt")
    assert submission_time(tmp_path, tmp_path / "attention.ipynb")["submitted_at_source"] == "mtime"
    (tmp_path / "timestamp.txt").unlink()
    (tmp_path / "timestamp.txt").write_text("2026-11-20 10:30:00 UTC" + " " * 1000)
    assert submission_time(tmp_path, tmp_path / "attention.ipynb")["submitted_at_source"] == "mtime"


def test_a_due_date_other_than_the_gradebooks_is_refused_before_anything_is_written(graded, course, tmp_path, capsys):
    _, out = graded
    db = gradebook_db(course, tmp_path)
    with open_gradebook(db) as gb:
        gb.update_or_create_assignment("a1_attention", duedate="2026-12-01 17:00:00 UTC")
    before = db.read_bytes()
    assert main(["export-gradebook", str(out), "--db", str(db), "--due-date", "2026-12-02 17:00:00 UTC"]) == 2
    assert "a1_attention is due 2026-12-01 17:00:00 UTC in the gradebook" in capsys.readouterr().err
    assert db.read_bytes() == before and not (tmp_path / "autograded").exists()


def test_a_comment_quoting_student_text_renders_no_html_in_the_feedback():
    """Measured before the fix (grade, export-gradebook, nbgrader generate_feedback): a softmax raising
    ValueError('<img src=x onerror="alert(1)">') put a live <img onerror> into the student's feedback page, through
    the solution cell's comment, which nbgrader's feedback template renders with markdown2html. The grade cells'
    listing was already escaped (a stream output)."""
    from nbconvert.filters import markdown2html

    from autograder.gradebook import GradedResult, _comment

    evil = '<img src=x onerror="alert(1)">'
    result = GradedResult(Path("r.json"), "a1_attention", "eve", None, {"softmax": (0.0, 8.0)},
                          {"softmax": [f"✗ shape (0/1): softmax() raised ValueError: {evil}"]}, [f"a note {evil}"],
                          {"softmax": []})
    rendered = markdown2html(_comment(result, "softmax"))
    assert "<img" not in rendered and "&lt;img" in rendered, rendered
