"""Batches that survive a crash (issue 11): stable results names, ``--resume`` and ``rebuild``.

Each graded submission is written to ``<DIR>/<student>-<assignment>.json`` (no position on the
command line in the name, so a second run finds it again). ``grade --resume`` skips a submission
whose results file is newer than its notebook and reuses that file; ``rebuild DIR [DIR ...]``
regenerates grades.csv and the class summary from results files alone, which is also how the
folders of sharded runs are merged. Reading a results.json back gives a :class:`GradeReport` with
everything grades.csv and the summary use.
"""

from __future__ import annotations

import json
from pathlib import Path

from autograder.layout import student_id
from autograder.runner import GradeReport, TestResult


class BatchError(Exception):
    """Two submissions would share a results file, or a results folder cannot be read."""


def result_name(student: str, assignment: str) -> str:
    """``<student>-<assignment>.json``, with every character but letters, digits, ``-_.`` replaced by ``_``."""
    name = f"{student}-{assignment}"
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name).lstrip(".") + ".json"


def planned_name(path: Path, assignment: str) -> str:
    return result_name(student_id(path, assignment), assignment)


def check_unique(planned: dict[Path, list[str]]) -> None:
    """``planned``: results file -> the submissions that would write it. Two submissions of one student and one
    assignment in a run are an error, not a silent overwrite: grade.csv keeps one row per (student, assignment)."""
    for out, submissions in planned.items():
        if len(submissions) > 1:
            raise BatchError(f"{' and '.join(submissions)} would both be {out.name} (same student and assignment); "
                             "grade them in separate runs")


def is_fresh(result: Path, submission: Path) -> bool:
    """Whether ``result`` exists and is newer than every notebook of ``submission`` (a notebook or a folder)."""
    if not result.is_file():
        return False
    notebooks = [submission] if submission.is_file() else list(submission.rglob("*.ipynb"))
    newest = max((nb.stat().st_mtime_ns for nb in notebooks), default=submission.stat().st_mtime_ns)
    return result.stat().st_mtime_ns > newest


def read_report(path: Path) -> GradeReport:
    """The report a results.json was written from, as far as grades.csv and the class summary need it."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        extra = data["extra_data"]
        tests = [_test(t) for t in data["tests"]]
        report = GradeReport(assignment=extra["assignment"], submission=extra["submission"],
                             notebook=extra.get("notebook"), tests=tests)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BatchError(f"cannot read {path}: {exc}") from None
    except (KeyError, TypeError, ValueError, AttributeError):
        raise BatchError(f"{path} is not a results.json written by this grader") from None
    report.diagnostics = list(extra.get("diagnostics") or [])
    report.review_by_exercise = dict(extra.get("review") or {})
    flat = [note for notes in report.review_by_exercise.values() for note in notes]  # results without review_lines
    report.review = list(extra.get("review_lines") or flat)
    report.strict = bool(extra.get("strict", True))
    report.seed = int(extra.get("seed") or 0)
    report.execution_time = float(data.get("execution_time") or 0.0)
    report.internal_errors = list(extra.get("internal_errors") or [])
    return report


def _test(entry: dict) -> TestResult:
    exercise, group = (list(entry.get("tags") or []) + ["", ""])[:2]
    title = entry["name"].partition(": ")[2] or entry["name"]
    return TestResult(name=entry["name"], title=title, exercise=exercise or entry["name"].partition(": ")[0],
                      group=group, score=float(entry["score"]), max_score=float(entry["max_score"]),
                      output=entry.get("output") or "")


def read_folders(folders: list[Path]) -> list[tuple[Path, GradeReport]]:
    """Every results.json in ``folders`` (sorted by name within each), read; another .json in them is an error."""
    found: list[tuple[Path, GradeReport]] = []
    for folder in folders:
        if not folder.is_dir():
            raise BatchError(f"cannot read {folder}: not a folder")
        found += [(path, read_report(path)) for path in sorted(folder.glob("*.json"))]
    check_unique(_by_key(found))
    return found


def _by_key(found: list[tuple[Path, GradeReport]]) -> dict[Path, list[str]]:
    by_key: dict[Path, list[str]] = {}
    for path, report in found:
        by_key.setdefault(Path(result_name(report.student, report.assignment)), []).append(str(path))
    return by_key


def shard(submissions: list[Path], spec: str) -> list[Path]:
    """Shard ``spec`` = "I/N" (1 <= I <= N) of ``submissions``: every N-th one, from the I-th, in the order of their
    paths as text. Each of N jobs given the same list grades a disjoint slice, together all of it, and the slices
    differ in size by at most one; ``rebuild`` merges their folders."""
    try:
        index, count = (int(part) for part in spec.split("/"))
    except ValueError:
        raise BatchError(f"--shard takes I/N, such as 2/8, not {spec!r}") from None
    if not 1 <= index <= count:
        raise BatchError(f"--shard {spec}: I must be between 1 and N")
    ordered = sorted(submissions, key=str)
    return ordered[index - 1::count]
