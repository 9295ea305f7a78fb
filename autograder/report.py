"""The report a person reads, and results.json in Gradescope's schema."""

from __future__ import annotations

import json
import shutil
import textwrap
from dataclasses import replace
from itertools import groupby
from pathlib import Path

from autograder.runner import GradeReport
from autograder.timestamps import submission_time
from autograder.wire import printable
from autograder.worker.sandbox import missing_layers


def render(report: GradeReport, color: bool = False) -> str:
    report = printable_copy(report)  # the escapes below are the only ones that reach the terminal
    width = min(shutil.get_terminal_size((100, 20)).columns, 110)
    green, red, dim, bold, reset = ("\033[32m", "\033[31m", "\033[2m", "\033[1m", "\033[0m") if color else ("",) * 5
    lines = [f"{bold}{report.assignment}{reset} · {report.notebook or report.submission}"]
    for exercise, group in groupby(report.tests, key=lambda t: t.exercise):
        tests = list(group)
        got, total = sum(t.score for t in tests), sum(t.max_score for t in tests)
        lines.append(f"  {bold}{exercise}{reset}  {_pts(got)}/{_pts(total)}")
        previous = None
        for t in tests:
            mark = f"{green}✓{reset}" if t.passed else f"{red}✗{reset}"
            lines.append(f"    {mark} {_pts(t.score):>3}/{_pts(t.max_score):<3} {t.title}")
            if t.output:
                text = "(same reason as above)" if t.output == previous else t.output
                for piece in textwrap.wrap(text, width - 14):
                    lines.append(f"{dim}              {piece}{reset}")
            previous = t.output
    for note in report.diagnostics:
        lines.append(f"  note: {note}")
    for note in report.review:
        lines.append(f"  review: {note}")
    if report.review:
        lines.append("  review: " + ("scored 0 until a person has checked it (strict grading)" if report.strict
                                     else "points kept (--lenient); check these by hand"))
    pct = 100 * report.score / report.max_score if report.max_score else 0.0
    passed = sum(t.passed for t in report.tests)
    lines.append(f"  {bold}score {_pts(report.score)}/{_pts(report.max_score)} ({pct:.0f}%){reset}"
                 f" · {passed}/{len(report.tests)} tests passed · {report.execution_time:.2f} s")
    return "\n".join(lines)


def _pts(x: float) -> str:
    return f"{x:g}"


def printable_copy(report: GradeReport) -> GradeReport:
    """The report with control characters stripped from every text that may come from the student (test
    output, notes, the notebook's file name): a second pass behind the one where the text is made."""
    tests = [replace(t, output=printable(t.output), title=printable(t.title)) for t in report.tests]
    return replace(report, tests=tests, notebook=report.notebook and printable(report.notebook),
                   submission=printable(report.submission), diagnostics=[printable(d) for d in report.diagnostics],
                   review=[printable(r) for r in report.review],
                   internal_errors=[printable(e) for e in report.internal_errors],
                   sandbox={printable(k): printable(v) for k, v in report.sandbox.items()})


def gradescope(report: GradeReport, visibility: str = "visible") -> dict:
    """results.json as Gradescope's autograder specification describes it.

    ``extra_data`` is stored by Gradescope and never shown to students: internal errors (tracebacks that name
    hidden-suite files) go there and to stderr only. ``visibility`` (one of ``gradescope.VISIBILITIES``) is when
    students see the tests and the output, at the top level and on every test; the grader's stdout stays hidden.
    """
    report = printable_copy(report)
    return {
        "score": report.score,
        "execution_time": round(report.execution_time, 3),
        "output": "\n".join(report.diagnostics)
        or f"{report.assignment}: {sum(t.passed for t in report.tests)}/{len(report.tests)} tests passed",
        "visibility": visibility,
        "stdout_visibility": "hidden",
        "tests": [
            {
                "name": f"{t.exercise}: {t.title}",
                "number": f"{i}",
                "score": t.score,
                "max_score": t.max_score,
                "status": "passed" if t.passed else "failed",
                "output": t.output,
                "tags": [t.exercise, t.group],
                "visibility": visibility,
            }
            for i, t in enumerate(report.tests, start=1)
        ],
        "extra_data": {
            # student and submission let `export-gradebook` file this result without the submission at hand
            "assignment": report.assignment,
            "student": report.student,
            "submission": report.submission,
            "diagnostics": report.diagnostics,
            "notebook": report.notebook,
            "max_score": report.max_score,
            "seed": report.seed,
            "review": report.review_by_exercise,  # per exercise: what the policy scan could not resolve
            "review_lines": report.review,  # the same findings as the report prints them (rebuild's grades.csv)
            "strict": report.strict,
            "sandbox": report.sandbox,
            # grade --allow-weaker-sandbox: graded even where sandbox.missing_layers(sandbox) names missing layers
            "sandbox_weaker_allowed": report.weaker_sandbox_allowed,
            "sandbox_missing": sorted(missing_layers(report.sandbox)) if report.sandbox else [],
            "internal_errors": report.internal_errors,
            # for export-gradebook: the notebook refused as another assignment's, and when it was submitted
            "wrong_notebook": report.wrong_notebook,
            **submission_time(report.submission, report.notebook),
        },
    }


def write_results(report: GradeReport, path: Path, visibility: str = "visible") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(gradescope(report, visibility), indent=2) + "\n")
    tmp.replace(path)  # never a half-written results.json
