"""The class summary at the end of a batch run: what the class got wrong, so it can be taught again.

When ``grade`` grades more than one submission it prints, per assignment, after the
per-submission reports:

- how many submissions were graded and how many could not be, the mean and median score;
- per exercise, in the suite's order: mean points out of the maximum, and the share of
  submissions with full marks;
- how many submissions need review (code the usage policy's scan could not resolve);
- the hidden tests failed most often, with how many submissions failed each and the
  commonest reason (the first line of the test's message, already safe to show).

and draws the same numbers into ``<out-dir>/summary.png``. The numbers cover the graded
submissions (a broken notebook or the untouched release is graded, with 0); one the grader
could not grade at all (unknown assignment, internal error) is counted, nothing more.

matplotlib is imported inside :func:`write_figure` only: grading one notebook never pays for it.
"""

from __future__ import annotations

import re
import shutil
import statistics
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from autograder.suites import ORDER

if TYPE_CHECKING:  # the runner imports torch; the summary only reads its reports
    from autograder.runner import GradeReport

FIGURE_NAME = "summary.png"
MOST_FAILED = 5
UNKNOWN = "unknown assignment"
# Messages the runner gives when the student's code never ran: they say nothing about a bug to teach.
NOT_ATTEMPTED = ("not implemented yet", "not graded:")
_NUMBER = re.compile(r"[-+]?\d+(?:\.\d+)?(?:e[-+]?\d+)?")


@dataclass
class ExerciseStats:
    name: str
    max_points: float
    mean_points: float
    full_marks: int  # submissions with every point of the exercise


@dataclass
class FailedTest:
    name: str  # "exercise: title", as results.json names it
    failed: int  # submissions that lost its points
    attempted: int  # of those, how many failed with code that ran (not "not implemented yet")
    reason: str  # the commonest reason, as one submission was told it
    reason_count: int  # submissions failing for that reason


@dataclass
class AssignmentSummary:
    assignment: str
    max_score: float = 0.0
    scores: list[float] = field(default_factory=list)
    not_gradable: int = 0
    exercises: list[ExerciseStats] = field(default_factory=list)
    most_failed: list[FailedTest] = field(default_factory=list)
    needs_review: int = 0  # graded submissions with code the policy scan could not resolve

    @property
    def graded(self) -> int:
        return len(self.scores)

    @property
    def mean(self) -> float:
        return statistics.fmean(self.scores) if self.scores else 0.0

    @property
    def median(self) -> float:
        return statistics.median(self.scores) if self.scores else 0.0


# --- the numbers ----------------------------------------------------------------------------

def summarise(reports: list[GradeReport], not_gradable: list[str | None]) -> list[AssignmentSummary]:
    """One summary per assignment, in course order.

    ``reports`` in submission order (it decides which example of a reason is shown);
    ``not_gradable`` holds the assignment, if known, of each submission that has no report.
    A report without tests (the grader failed on it) counts as not gradable too.
    """
    graded = [r for r in reports if r.tests]
    missing = [_known(a) for a in not_gradable] + [_known(r.assignment) for r in reports if not r.tests]
    by_assignment = {a: [r for r in graded if r.assignment == a] for a in _course_order({r.assignment for r in graded})}
    summaries = {a: _summarise_assignment(a, rs) for a, rs in by_assignment.items()}
    if len(summaries) == 1:  # one assignment in the run: a folder it could not place surely belongs to it
        only = next(iter(summaries))
        missing = [a or only for a in missing]
    for assignment in missing:
        key = assignment or UNKNOWN
        summaries.setdefault(key, AssignmentSummary(key)).not_gradable += 1
    return [summaries[a] for a in _course_order(set(summaries))]


def _summarise_assignment(assignment: str, reports: list[GradeReport]) -> AssignmentSummary:
    return AssignmentSummary(
        assignment=assignment,
        max_score=reports[0].max_score,
        scores=[r.score for r in reports],
        exercises=exercise_stats(reports),
        most_failed=most_failed(reports),
        needs_review=sum(bool(getattr(r, "review", None)) for r in reports),
    )


def exercise_stats(reports: list[GradeReport]) -> list[ExerciseStats]:
    order = list(dict.fromkeys(t.exercise for t in reports[0].tests))  # the suite's order
    stats = []
    for exercise in order:
        earned = [sum(t.score for t in r.tests if t.exercise == exercise) for r in reports]
        maximum = sum(t.max_score for t in reports[0].tests if t.exercise == exercise)
        stats.append(ExerciseStats(exercise, maximum, statistics.fmean(earned), sum(e >= maximum for e in earned)))
    return stats


def most_failed(reports: list[GradeReport], limit: int = MOST_FAILED) -> list[FailedTest]:
    """The tests most submissions failed; ties go to the test more students failed with running code,
    then suite order."""
    tests = []
    for position, first in enumerate(reports[0].tests):
        outputs = [t.output for r in reports for t in r.tests if t.name == first.name and not t.passed]
        if outputs:
            tests.append((position, _failed_test(f"{first.exercise}: {first.title}", outputs)))
    tests.sort(key=lambda pt: (-pt[1].failed, -pt[1].attempted, pt[0]))
    return [test for _, test in tests[:limit]]


def _failed_test(name: str, outputs: list[str]) -> FailedTest:
    reason, count = commonest_reason(outputs)
    attempted = sum(not _not_attempted(o) for o in outputs)
    return FailedTest(name, len(outputs), attempted, reason, count)


def commonest_reason(outputs: list[str]) -> tuple[str, int]:
    """(reason, how many gave it): first lines grouped with their numbers masked, so "max abs error 0.3"
    and "max abs error 0.5" are one reason. A reason from code that ran beats "not implemented yet",
    however many left the exercise empty: it is the one worth teaching. Ties go to the earliest."""
    lines = [_first_line(o) for o in outputs]
    groups = Counter(_NUMBER.sub("#", line) for line in lines)
    best = min(groups, key=lambda key: (_not_attempted(key), -groups[key]))  # min keeps the first of equals
    example = next(line for line in lines if _NUMBER.sub("#", line) == best)
    return example, groups[best]


def _not_attempted(output: str) -> bool:
    return output.startswith(NOT_ATTEMPTED)


def _first_line(output: str) -> str:
    lines = output.strip().splitlines()
    return lines[0] if lines else "(no message)"


def _known(assignment: str | None) -> str | None:
    return assignment if assignment and assignment != "?" else None  # "?" is the runner's "could not tell"


def _course_order(assignments: set[str]) -> list[str]:
    return sorted(assignments, key=lambda a: (a not in ORDER, ORDER.index(a) if a in ORDER else 0, a))


# --- the text -------------------------------------------------------------------------------

def render_summary(summaries: list[AssignmentSummary], quiet: bool = False, color: bool = False) -> str:
    """The class summary; with ``quiet``, only each assignment's score line."""
    bold, reset = ("\033[1m", "\033[0m") if color else ("", "")
    width = min(shutil.get_terminal_size((100, 20)).columns, 110)
    lines = []
    for summary in summaries:
        lines.append(f"{bold}{score_line(summary)}{reset}")
        if not quiet and summary.graded:
            lines += [review_line(summary)] if summary.needs_review else []
            lines += _exercise_lines(summary) + _failed_lines(summary, width)
    return "\n".join(lines)


def score_line(summary: AssignmentSummary) -> str:
    counts = f"class · {summary.assignment}: {summary.graded} graded"
    if summary.not_gradable:
        counts += f", {summary.not_gradable} not gradable"
    if not summary.graded:
        return counts
    return (f"{counts} · mean {_score(summary.mean, summary.max_score)}"
            f" · median {_score(summary.median, summary.max_score)}")


def review_line(summary: AssignmentSummary) -> str:
    """How many submissions hold code the usage policy could not resolve: their reports' review lines say where."""
    return (f"  {summary.needs_review}/{summary.graded} submissions need review "
            "(code the usage policy's scan cannot resolve; see each report's review lines)")


def _exercise_lines(summary: AssignmentSummary) -> list[str]:
    name_width = max(len(e.name) for e in summary.exercises)
    lines = [f"  {'exercise':<{name_width}}  {'mean/max':>9}  full marks"]
    for e in summary.exercises:
        share = f"{e.full_marks}/{summary.graded} ({_percent(e.full_marks, summary.graded)})"
        lines.append(f"  {e.name:<{name_width}}  {_pts(e.mean_points) + '/' + _pts(e.max_points):>9}  {share}")
    return lines


def _failed_lines(summary: AssignmentSummary, width: int) -> list[str]:
    if not summary.most_failed:
        return ["  no hidden test failed"]
    lines = ["  most failed hidden tests (failing/graded), commonest reason (n× = how many got it):"]
    for test in summary.most_failed:
        lines.append(_clip(f"  {test.failed:>3}/{summary.graded:<3} {test.name}", width))
        lines.append(_clip(f"            {test.reason_count}× {test.reason}", width))
    return lines


def _score(points: float, max_score: float) -> str:
    return f"{_pts(points)}/{_pts(max_score)} ({_percent(points, max_score)})"


def _percent(part: float, whole: float) -> str:
    return f"{100 * part / whole:.0f}%" if whole else "-"


def _pts(x: float) -> str:
    return f"{x:.3g}" if x != int(x) else f"{x:g}"


def _clip(line: str, width: int) -> str:
    return line if len(line) <= width else line[: width - 1] + "…"


# --- the figure -----------------------------------------------------------------------------

def write_figure(summaries: list[AssignmentSummary], path: Path) -> None:
    """summary.png: per assignment, a row of (score histogram, exercise means, most failed tests)."""
    # The figure API with an Agg canvas, not pyplot: no global backend to set, safe beside other threads.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    rows = [s for s in summaries if s.graded]
    if not rows:
        raise ValueError("no graded submission to draw")
    height = 4.2 * len(rows)
    fig = Figure(figsize=(16, height))
    FigureCanvasAgg(fig)
    # Fixed margins sized for the longest labels (exercise names; test names clipped to 44 characters): the
    # constrained layout measured every label twice and took 3 of the 4.7 s this figure cost for five assignments.
    fig.subplots_adjust(left=0.04, right=0.985, wspace=0.8, top=1 - 0.45 / height, bottom=0.6 / height,
                        hspace=1.25 / 4.2)
    for axes, summary in zip(fig.subplots(len(rows), 3, squeeze=False), rows):
        _draw_scores(axes[0], summary)
        _draw_exercises(axes[1], summary)
        _draw_failed(axes[2], summary)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)


def _draw_scores(ax, summary: AssignmentSummary) -> None:
    from matplotlib.ticker import MaxNLocator

    fractions = [s / summary.max_score if summary.max_score else 0.0 for s in summary.scores]
    ax.hist(fractions, bins=[i / 10 for i in range(11)], color="tab:blue", edgecolor="white")
    mean = summary.mean / summary.max_score if summary.max_score else 0.0
    ax.axvline(mean, color="black", linestyle="--", label=f"mean {mean:.0%}")
    ax.legend(loc="upper center")
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))  # counts of submissions, never 1.25
    ax.set(xlim=(0, 1), xlabel="total score (fraction of max)", ylabel="submissions",
           title=f"{summary.assignment}: {summary.graded} graded, median {_percent(summary.median, summary.max_score)}")


def _draw_exercises(ax, summary: AssignmentSummary) -> None:
    exercises = summary.exercises
    means = [e.mean_points / e.max_points if e.max_points else 0.0 for e in exercises]
    ax.barh([e.name for e in exercises], means, color="tab:green")
    ax.invert_yaxis()  # suite order, top to bottom, as in the printed table
    for y, (e, mean) in enumerate(zip(exercises, means)):
        ax.annotate(f"{_pts(e.mean_points)}/{_pts(e.max_points)}", (mean, y), xytext=(3, 0),
                    textcoords="offset points", va="center")
    ax.set(xlim=(0, 1.15), xlabel="mean fraction of the exercise's points", title="per exercise")


def _draw_failed(ax, summary: AssignmentSummary) -> None:
    tests = summary.most_failed
    ax.barh([_two_lines(t.name) for t in tests], [t.failed for t in tests], color="tab:red")
    ax.invert_yaxis()  # most failed on top
    for y, test in enumerate(tests):
        ax.annotate(str(test.failed), (test.failed, y), xytext=(3, 0), textcoords="offset points", va="center")
    ax.set(xlim=(0, max(summary.graded, 1) * 1.1), xlabel=f"submissions failing (of {summary.graded})",
           title="most failed hidden tests")
    ax.tick_params(axis="y", labelsize=8)
    if not tests:
        ax.set_yticks([])
        ax.text(0.5, 0.5, "no hidden test failed", transform=ax.transAxes, ha="center", va="center")


def _two_lines(test_name: str) -> str:
    """"exercise: title" as the exercise over the title: a one-line label would squeeze the bars."""
    exercise, _, title = test_name.partition(": ")
    return f"{exercise}\n{_clip(title, 44)}"
