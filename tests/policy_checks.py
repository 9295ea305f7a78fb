"""What catalogs assert about the usage policy's verdicts (autograder/policy.py) in a report."""

from __future__ import annotations

from autograder.runner import GradeReport
from tests.variants import failures, tests_of


def expect_zero_by_policy(report: GradeReport, exercise: str, verdict: str, *phrases: str) -> None:
    """Every test of ``exercise`` scores 0 and says ``verdict`` ("forbidden use" or "needs review") and each phrase."""
    graded = tests_of(report, exercise)
    assert graded, f"no hidden test for {exercise} in the report"
    for t in graded:
        assert t.score == 0, f"{t.name} of {exercise} got {t.score:g} points; all results:\n{failures(report)}"
        for phrase in (verdict, *phrases):
            assert phrase.lower() in t.output.lower(), f"{t.name} should say {phrase!r}, said: {t.output!r}"


def expect_forbidden(report: GradeReport, exercise: str, *phrases: str) -> None:
    expect_zero_by_policy(report, exercise, "forbidden use", *phrases)


def expect_needs_review(report: GradeReport, exercise: str, *phrases: str) -> None:
    """Zero under strict grading (the default), with the note also in the report's review list."""
    expect_zero_by_policy(report, exercise, "needs review", *phrases)
    notes = report.review_by_exercise.get(exercise, [])
    assert notes and all(p.lower() in " ".join(notes).lower() for p in phrases), (
        f"{exercise} should be flagged for review with {phrases}: {report.review_by_exercise}")


def expect_no_policy_finding(report: GradeReport, exercise: str) -> None:
    assert exercise not in report.review_by_exercise, report.review_by_exercise[exercise]
    for t in tests_of(report, exercise):
        assert "forbidden use" not in t.output and "needs review" not in t.output, t.output
