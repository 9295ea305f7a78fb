"""The class summary a batch run prints and draws (autograder/summary.py).

The examples (and one folder no assignment fits) are graded once per module, as `grade ...
--out-dir` does; every expected number is computed here from the results.json files the run
wrote, not from the summary's own code.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

from autograder.cli import grade_all, parser
from autograder.runner import GradeReport
from autograder.runner import TestResult as Result  # as TestResult, pytest would try to collect it
from autograder.summary import commonest_reason, render_summary, summarise
from tests.variants import REPO

pytestmark = pytest.mark.engine
EXAMPLES = REPO / "examples" / "submissions"
STUDENTS = sorted(p.name for p in EXAMPLES.iterdir() if (p / "a1_attention").is_dir())
NOT_ATTEMPTED = ("not implemented yet", "not graded:")
SCORE_LINE = re.compile(r"class · a1_attention: (\d+) graded, (\d+) not gradable"
                        r" · mean ([\d.]+)/37 \((\d+)%\) · median ([\d.]+)/37 \((\d+)%\)")
EXERCISE_LINE = re.compile(r"  (\w+)\s+([\d.]+)/([\d.]+)\s+(\d+)/(\d+) \((\d+)%\)")
FAILED_LINE = re.compile(r"\s+(\d+)/(\d+)\s+(.+)")
REASON_LINE = re.compile(r"\s+(\d+)× (.+)")


def run_grade(server, argv: list[str]) -> tuple[int, str, str]:
    """`grade_all` as `python -m autograder grade` runs it: (status, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = grade_all(parser().parse_args(["grade", *argv]), server)
    return status, out.getvalue(), err.getvalue()


def mystery_folder(root: Path) -> Path:
    """A folder with a notebook of no assignment: the grader cannot grade it."""
    folder = root / "mystery"
    folder.mkdir()
    (folder / "notes.ipynb").write_text(json.dumps({"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": []}))
    return folder


def example(name: str) -> str:
    return str(EXAMPLES / name / "a1_attention")


@pytest.fixture(scope="module")
def graded(server, tmp_path_factory):
    """(stdout, stderr, out-dir) of grading every example and the mystery folder, not quiet."""
    out = tmp_path_factory.mktemp("graded")
    mystery = mystery_folder(tmp_path_factory.mktemp("inbox"))
    status, stdout, stderr = run_grade(server, [*map(example, STUDENTS), str(mystery), "--out-dir", str(out)])
    assert status == 2  # the mystery folder could not be graded, and said so
    return stdout, stderr, out


def summary_lines(stdout: str) -> list[str]:
    """The summary block: from the class score line to the line naming the figure."""
    lines = stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("class · "))
    end = next(i for i, line in enumerate(lines) if line.startswith("summary: "))
    return lines[start:end]


def results(out: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(out.glob("*.json"))]


def expected_most_failed(graded_results: list[dict]) -> list[tuple[str, int]]:
    """(test name, failing submissions) of the 5 most failed tests;
    ties: more failures from code that ran, then suite order."""
    names = [t["name"] for t in graded_results[0]["tests"]]
    failing = {name: [t["output"] for r in graded_results for t in r["tests"]
                      if t["name"] == name and t["status"] == "failed"]
               for name in names}
    ranked = sorted((name for name in names if failing[name]),
                    key=lambda n: (-len(failing[n]),
                                   -sum(not o.startswith(NOT_ATTEMPTED) for o in failing[n]),
                                   names.index(n)))
    return [(name, len(failing[name])) for name in ranked[:5]]


# --- the printed summary -------------------------------------------------------------------

def test_score_line_counts_the_ungradable_and_matches_results_json(graded):
    stdout, _, out = graded
    scores = [r["score"] for r in results(out)]
    assert len(scores) == len(STUDENTS)
    count, not_gradable, mean, mean_pct, median, median_pct = SCORE_LINE.fullmatch(summary_lines(stdout)[0]).groups()
    assert (int(count), int(not_gradable)) == (len(STUDENTS), 1)
    assert float(mean) == pytest.approx(statistics.fmean(scores), abs=0.05)
    assert float(median) == pytest.approx(statistics.median(scores), abs=0.05)
    assert int(mean_pct) == round(100 * statistics.fmean(scores) / 37)
    assert int(median_pct) == round(100 * statistics.median(scores) / 37)


def test_exercise_rows_match_results_json_in_suite_order(graded):
    stdout, _, out = graded
    graded_results = results(out)
    rows = [m.groups() for m in map(EXERCISE_LINE.fullmatch, summary_lines(stdout)) if m]
    exercises = list(dict.fromkeys(t["tags"][0] for t in graded_results[0]["tests"]))
    assert [row[0] for row in rows] == exercises
    for name, mean, maximum, full, count, pct in rows:
        earned = [sum(t["score"] for t in r["tests"] if t["tags"][0] == name) for r in graded_results]
        most = sum(t["max_score"] for t in graded_results[0]["tests"] if t["tags"][0] == name)
        full_marks = sum(e == most for e in earned)
        assert float(mean) == pytest.approx(statistics.fmean(earned), abs=0.005)
        assert (float(maximum), int(full), int(count)) == (most, full_marks, len(graded_results))
        assert int(pct) == round(100 * full_marks / len(graded_results))


def test_most_failed_tests_are_the_examples_most_failed(graded):
    stdout, _, out = graded
    graded_results = results(out)
    lines = summary_lines(stdout)
    start = next(i for i, line in enumerate(lines) if "most failed hidden tests" in line) + 1
    tests, reasons = lines[start::2], lines[start + 1::2]
    expected = expected_most_failed(graded_results)
    assert len(tests) == len(reasons) == len(expected) == 5
    for line, reason_line, (name, failing) in zip(tests, reasons, expected):
        count, total, printed = FAILED_LINE.fullmatch(line).groups()
        assert (int(count), int(total)) == (failing, len(graded_results))
        assert name.startswith(printed.removesuffix("…"))
        # A reason some student who wrote code was given beats "not implemented yet" and "not graded".
        given, reason = REASON_LINE.fullmatch(reason_line).groups()
        attempted = [t["output"].splitlines()[0] for r in graded_results for t in r["tests"]
                     if t["name"] == name and t["status"] == "failed" and not t["output"].startswith(NOT_ATTEMPTED)]
        assert any(o.startswith(reason.removesuffix("…")) for o in attempted)
        assert 1 <= int(given) <= len(attempted)
    assert len(lines) <= 20


def test_figure_is_a_png_with_one_row_of_three_panels(graded):
    stdout, stderr, out = graded
    figure = out / "summary.png"
    assert f"summary: {figure}" in stdout and "warning" not in stderr
    data = figure.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")  # the IHDR chunk
    assert width > 2 * height > 0  # three panels side by side, one assignment


def test_quiet_prints_only_the_class_score_line(server, tmp_path):
    status, stdout, _ = run_grade(server, [example("broken_json"), example("untouched_release"),
                                           "--out-dir", str(tmp_path), "--quiet"])
    assert status == 0
    assert summary_lines(stdout) == ["class · a1_attention: 2 graded · mean 0/37 (0%) · median 0/37 (0%)"]
    assert (tmp_path / "summary.png").is_file()


def test_a_figure_that_cannot_be_written_warns_and_the_run_still_succeeds(server, tmp_path):
    (tmp_path / "summary.png").mkdir()  # savefig cannot write over a folder
    status, stdout, stderr = run_grade(server, [example("broken_json"), example("untouched_release"),
                                                "--out-dir", str(tmp_path), "--quiet"])
    assert status == 0 and "summary: " not in stdout
    assert len(stderr.splitlines()) == 1 and stderr.startswith(f"warning: {tmp_path / 'summary.png'} not written")
    assert (tmp_path / "grades.csv").is_file()


def test_one_submission_gets_no_summary(server, tmp_path):
    status, stdout, _ = run_grade(server, [example("broken_json"), "--out-dir", str(tmp_path)])
    assert status == 0 and "class · " not in stdout and not (tmp_path / "summary.png").exists()


def test_matplotlib_is_imported_only_to_draw():
    code = ("import sys, autograder.cli, autograder.summary; "
            "assert 'matplotlib' not in sys.modules, 'matplotlib imported at module level'")
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True, timeout=60)


# --- the numbers, on reports made by hand ----------------------------------------------------

def report(assignment: str, outputs: dict[str, str], submission: str = "s") -> GradeReport:
    """A report of tests t1 (exercise e1, 2 points), t2 and t3 (exercise e2, 1 point each); an output means failed."""
    tests = [("t1", "e1", 2.0), ("t2", "e2", 1.0), ("t3", "e2", 1.0)]
    r = GradeReport(assignment=assignment, submission=submission, notebook=None)
    r.tests = [Result(name, name.upper(), exercise, "numerics", 0.0 if name in outputs else points, points,
                          outputs.get(name, "")) for name, exercise, points in tests]
    return r


def test_mixed_assignments_get_a_summary_each_and_unplaced_failures_their_own():
    reports = [report("a2_masking", {}), report("a1_attention", {"t2": "wrong"}), report("a1_attention", {})]
    summaries = summarise(reports, ["a2_masking", None])
    assert [(s.assignment, s.graded, s.not_gradable) for s in summaries] == \
        [("a1_attention", 2, 0), ("a2_masking", 1, 1), ("unknown assignment", 0, 1)]
    assert render_summary(summaries, quiet=True).splitlines() == [
        "class · a1_attention: 2 graded · mean 3.5/4 (88%) · median 3.5/4 (88%)",
        "class · a2_masking: 1 graded, 1 not gradable · mean 4/4 (100%) · median 4/4 (100%)",
        "class · unknown assignment: 0 graded, 1 not gradable",
    ]


def test_most_failed_ranks_by_failures_then_by_attempts_then_suite_order():
    reports = [report("a1_attention",
                      {"t1": "not implemented yet", "t2": "not implemented yet", "t3": "not implemented yet"}),
               report("a1_attention", {"t3": "off by 1"}),
               report("a1_attention", {"t1": "not implemented yet", "t2": "wrong sign"})]
    (summary,) = summarise(reports, [])
    assert [(t.name, t.failed, t.attempted) for t in summary.most_failed] == \
        [("e2: T2", 2, 1), ("e2: T3", 2, 1), ("e1: T1", 2, 0)]
    assert [(e.name, e.mean_points, e.full_marks) for e in summary.exercises] == [("e1", 2 / 3, 1), ("e2", 2 / 3, 0)]


def test_commonest_reason_groups_numbers_and_prefers_code_that_ran():
    outputs = ["not implemented yet"] * 3 + [
        "max abs error 0.3 at [1, 2]. Did you scale by 1/sqrt(d_k)?\nsecond line",
        "NaN in the output",
        "max abs error 0.51 at [0, 4]. Did you scale by 1/sqrt(d_k)?",
    ]
    assert commonest_reason(outputs) == ("max abs error 0.3 at [1, 2]. Did you scale by 1/sqrt(d_k)?", 2)
    assert commonest_reason(["not implemented yet"] * 2) == ("not implemented yet", 2)
