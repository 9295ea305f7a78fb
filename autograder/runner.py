"""Grade one submission: read the notebook, scan it, run the hidden suite through pytest (``autograder/plugin.py``).

``Grading`` is one submission's state, from choosing its notebook to the final ``GradeReport``; the plugin drives it
from pytest's hooks, so `python -m pytest autograder/suites/<a> --submission X` and ``grade()`` share every step.
"""

from __future__ import annotations

import hashlib
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from autograder import parsing, policy, release
from autograder.hidden import Assignment, HiddenTest
from autograder.layout import assignment_in_path, student_id
from autograder.liveness import CallLog
from autograder.notebook import Submission, find_notebooks, read_submission
from autograder.session import DEFAULT_TIME_BUDGET, Session
from autograder.suites import SUITES, load_suite
from autograder.wire import printable, shorten
from autograder.worker.pool import WorkerServer

DEFAULT_TIME_LIMIT = 10.0  # seconds per hidden test; a correct solution needs a few milliseconds


class GraderError(Exception):
    """The grader itself cannot run: an unreadable path, an unknown assignment."""


@dataclass
class TestResult:
    name: str
    title: str
    exercise: str
    group: str
    score: float
    max_score: float
    output: str = ""

    @property
    def passed(self) -> bool:
        return self.score >= self.max_score


@dataclass
class GradeReport:
    assignment: str
    submission: str
    notebook: str | None
    tests: list[TestResult] = field(default_factory=list)
    diagnostics: list[str] = field(default_factory=list)
    review: list[str] = field(default_factory=list)  # "exercise: needs review: ..." lines, for people
    review_by_exercise: dict[str, list[str]] = field(default_factory=dict)  # the same notes, per exercise
    strict: bool = True  # whether "needs review" cost the exercise its points
    execution_time: float = 0.0
    seed: int = 0
    sandbox: dict = field(default_factory=dict)
    wrong_notebook: str | None = None  # set when the notebook is another assignment's: nothing is graded
    blocked: dict[str, str] = field(default_factory=dict)  # exercise -> why none of its tests can earn points
    internal_errors: list[str] = field(default_factory=list)  # tracebacks for the instructor, never for the student
    # Set when this machine could not sandbox the submission's worker as a grade requires (a worker's hello said
    # so, before any student code ran): the submission is not graded, and no results or grades.csv row is written.
    environment_error: str | None = None
    weaker_sandbox_allowed: bool = False  # grade --allow-weaker-sandbox: graded even where layers were missing

    @property
    def score(self) -> float:
        return sum(t.score for t in self.tests)

    @property
    def max_score(self) -> float:
        return sum(t.max_score for t in self.tests)

    @property
    def student(self) -> str:
        return student_id(self.submission, self.assignment)


def grade(path: Path | str, *, assignment: str | None = None, server: WorkerServer | None = None,
          device: str = "cpu", time_limit: float = DEFAULT_TIME_LIMIT,
          time_budget: float = DEFAULT_TIME_BUDGET, strict: bool = True,
          exercises: list[str] | None = None) -> GradeReport:
    """Grade the submission at ``path`` (a notebook or a folder of one student's notebooks).

    ``strict``: an exercise whose code "needs review" (the policy scan cannot resolve what it reaches) scores 0;
    with ``strict=False`` it keeps its points and is only flagged. ``exercises``: run only these exercises' tests.
    """
    from autograder import plugin

    path = Path(path)
    if not path.exists():
        raise GraderError(f"cannot read {path}: no such file or folder")
    device = resolve_device(device)
    grading = plugin.GradingPlugin(path, resolve_assignment(path, assignment), server=server, device=device,
                                   time_limit=time_limit, time_budget=time_budget, strict=strict)
    plugin.run(grading, exercises)
    return grading.report


def grade_many(batch, assignment: str, on_report, *, server: WorkerServer, device: str = "cpu",
               time_limit: float = DEFAULT_TIME_LIMIT, time_budget: float = DEFAULT_TIME_BUDGET,
               strict: bool = True) -> None:
    """Grade every (key, path) ``batch`` yields, all of ``assignment``, in one pytest session (collected once);
    ``on_report(key, report, error)`` receives each result as it is ready. Several threads may share one batch
    iterator that draws from a queue: each then grades its share in a session of its own."""
    from autograder import plugin

    grading = plugin.GradingPlugin(None, assignment, server=server, device=resolve_device(device),
                                   time_limit=time_limit, time_budget=time_budget, strict=strict, batch=batch,
                                   on_report=on_report)
    plugin.run(grading)


class Grading:
    """One submission from its notebook to its report. ``start`` before the first test, ``record`` each test's
    outcome, ``finish`` after the last."""

    def __init__(self, path: Path, spec: Assignment, *, server: WorkerServer | None, device: str,
                 time_limit: float, time_budget: float | None, strict: bool):
        self.path, self.spec, self.device, self.strict = path, spec, device, strict
        self.time_limit, self.time_budget = time_limit, time_budget or DEFAULT_TIME_BUDGET
        self.own_server = server is None
        self.server = server
        self.report = GradeReport(assignment=spec.name, submission=str(path), notebook=None, strict=strict)
        self.submission: Submission | None = None
        self.scan: policy.ScanResult | None = None
        self.session: Session | None = None
        self.log = CallLog()
        self.started = 0.0

    def start(self) -> None:
        self.started = time.monotonic()
        if not self.path.exists():
            raise GraderError(f"cannot read {self.path}: no such file or folder")
        self.submission = choose_notebook(self.path, self.spec, self.report)
        if self.submission is None or not self.submission.readable or self.report.wrong_notebook:
            return
        program = self.submission.program()
        self.report.seed = submission_seed(program)
        self.scan = policy.scan(self.spec.name, program, self.spec.exercises)
        self.report.review_by_exercise = {e: notes for e in self.spec.exercises if (notes := self.scan.review_notes(e))}
        self.report.review = _review_lines(self.scan, self.spec.exercises)
        self.server = self.server or WorkerServer()
        self.session = Session(self.server, program, seed=self.report.seed, device=self.device,
                               trace=policy.traced_names(self.spec.name), time_limit=self.time_limit,
                               time_budget=self.time_budget)
        self.session.cell_labels = self.submission.cell_labels()

    def why_not_graded(self, exercise: str) -> str | None:
        """Why no test of ``exercise`` can earn points, before it runs; None when it can."""
        if self.submission is None or not self.submission.readable:
            return "not graded: no readable notebook (see the note below)"
        if self.report.wrong_notebook:
            return f"not graded: {self.report.wrong_notebook}"
        if exercise in self.report.blocked:
            return self.report.blocked[exercise]
        # A forbidden use costs the exercise every test: its code is not the student's own work.
        return self.scan.forbidden_message(exercise) if self.scan else None

    def reaches(self, exercise: str) -> list[str]:
        """The other exercises whose code ``exercise``'s code calls (from the policy scan)."""
        return self.scan.reaches.get(exercise, []) if self.scan else []

    def record(self, test: HiddenTest, score: float, output: str) -> None:
        result = _result(test, score, output)
        if self.scan is not None:
            result = _judged_by_policy(result, self.scan, self.report)
        self.report.tests.append(result)
        if not result.passed and self.session is not None:
            self.session.test_failed()  # the next exercise starts on a fresh worker

    def internal_error(self, test_name: str, exc: Exception) -> None:
        _internal_error(self.report, test_name, exc)

    def finish(self) -> None:
        report = self.report
        try:
            if self.session is not None:
                self.session.close()
                _withhold_points_of_input_ignoring_code(report.tests, self.spec, self.log)
                report.sandbox = self.session.sandbox_layers
                report.environment_error = self.session.environment_failure
                report.weaker_sandbox_allowed = getattr(self.server, "allow_weaker", False)
                if self.submission is not None:
                    report.diagnostics += _cell_errors(self.session.load_report, self.submission)
                if self.session.load_failure:
                    report.diagnostics.append(self.session.load_failure)
                elif self.session.load_report:
                    defined = set(self.session.load_report.get("names", []))
                    missing = [e for e in self.spec.exercises if e not in defined]
                    if missing:
                        report.diagnostics.append(f"{', '.join(missing)} not defined by the notebook: renamed, "
                                                  "deleted, or its cell failed?")
        finally:
            if self.own_server and self.server is not None:
                self.server.close()
        report.execution_time = time.monotonic() - self.started
        report.diagnostics = [printable(d) for d in report.diagnostics]  # they quote the notebook (names, cell ids)
        report.review = [printable(r) for r in report.review]


def submission_seed(program: list[dict]) -> int:
    """From the cells the worker runs (position, grade id, source), so the same code gets the same inputs on every
    regrade; the cells' labels (how a message names them) are left out, so rewording a label changes no input."""
    cells = [{key: value for key, value in unit.items() if key != "label"} for unit in program]
    return int.from_bytes(hashlib.sha256(repr(cells).encode()).digest()[:4], "little")


def resolve_device(device: str) -> str:
    """``auto`` becomes ``cuda`` when there is a GPU, else ``cpu``; a device that is not here is a GraderError.

    Checked in the grader, before any worker: a missing GPU is the grader's problem, not a zero for every test.
    """
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError):
        raise GraderError(f"--device {device}: not a device (use auto, cpu, cuda or cuda:N)") from None
    if parsed.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise GraderError(f"--device {device}: no CUDA device here")
        if (parsed.index or 0) >= count:
            raise GraderError(f"--device {device}: no such CUDA device here ({count} found)")
    return str(device)


def resolve_assignment(path: Path, given: str | None) -> str:
    if given:
        if given not in SUITES:
            raise GraderError(f"unknown assignment {given!r}; known: {', '.join(SUITES)}")
        return given
    in_path = assignment_in_path(path)
    if in_path:
        return in_path
    notebooks = find_notebooks(path)
    for nb in notebooks:
        for assignment_id in SUITES:
            if nb.name == load_suite(assignment_id).notebook:
                return assignment_id
    best, overlap = None, 0
    for nb in notebooks:
        ids = set(read_submission(nb).grade_ids)
        for assignment_id in SUITES:
            n = len(ids & set(load_suite(assignment_id).exercises))
            if n > overlap:
                best, overlap = assignment_id, n
    if best:
        return best
    raise GraderError(f"cannot tell which assignment {path} is; pass --assignment ({', '.join(SUITES)})")


def choose_notebook(path: Path, suite: Assignment, report: GradeReport) -> Submission | None:
    notebooks = find_notebooks(path)
    if not notebooks:
        report.diagnostics.append(f"no notebook found in {path}; expected {suite.notebook}")
        return None
    named = [nb for nb in notebooks if nb.name == suite.notebook]
    chosen = named[0] if named else None
    if chosen is None:
        scored = sorted(notebooks, key=lambda nb: -len(set(read_submission(nb).grade_ids) & set(suite.exercises)))
        chosen = scored[0]
        report.diagnostics.append(f"expected a notebook named {suite.notebook}; grading {chosen.name} instead")
    report.notebook = str(chosen)
    submission = read_submission(chosen)
    report.diagnostics += submission.diagnostics
    if submission.readable:
        _check_release(submission, suite, report)
    if submission.readable and not report.wrong_notebook:
        _check_exercise_cells(submission, suite, report)
    return submission


def _check_release(submission: Submission, suite: Assignment, report: GradeReport) -> None:
    """Refuse another assignment's notebook; take read-only cells from this assignment's release."""
    owner = release.identify(submission, release.releases())
    if owner is not None and owner.assignment != suite.assignment:
        report.wrong_notebook = (f"this is {owner.assignment}'s notebook ({owner.notebook}), not {suite.assignment}'s: "
                                 f"submit your {suite.notebook}")
        report.diagnostics.append(report.wrong_notebook)
        return
    if not submission.grade_ids:
        return  # a notebook written from scratch (no nbgrader cells): graded on what it defines, nothing restored
    own = release.load_release(suite.assignment)
    if own is None:
        report.diagnostics.append(f"the grader has no release of {suite.assignment} (assignments/{suite.assignment}/), "
                                  "so read-only cells were taken from the submission as they are")
        return
    report.diagnostics += release.apply_release(submission, own)
    for exercise in release.exercises_given_only(submission, suite.exercises):
        report.blocked[exercise] = (f"not graded: {exercise} is defined only by the notebook's read-only given code, "
                                    f"not by your work; write it in its exercise cell")


def _check_exercise_cells(submission: Submission, suite: Assignment, report: GradeReport) -> None:
    if not any(c.source.strip() for c in submission.cells):
        report.diagnostics.append(f"{submission.path.name} has no code and no exercise cells: "
                                  "is it the right file, saved after your work?")
        return
    ids = set(submission.grade_ids)
    if ids and not ids & set(suite.exercises):
        report.diagnostics.append(
            f"this notebook has none of {suite.assignment}'s exercise cells "
            f"(its cells: {', '.join(sorted(ids)[:4])}...): "
            "is it from another assignment? Grading whatever it defines")
        return
    missing = [e for e in suite.exercises if e not in ids]
    if ids and missing:
        report.diagnostics.append(f"exercise cell(s) {', '.join(missing)} not found: deleted, or their metadata lost? "
                                  "Grading whatever the notebook defines")


# Checks that also hold for a function that ignores its input (equivariance, "unmodified", "deterministic").
GATED_GROUPS = ("properties", "hygiene")


def _withhold_points_of_input_ignoring_code(results: list[TestResult], suite: Assignment, log: CallLog) -> None:
    """Property and hygiene points go to an exercise only if its result depended on its input in its own tests.

    Decided from the calls the tests made anyway (no extra calls); shapes points are kept.
    """
    for exercise in suite.exercises:
        gated = [r for r in results if r.exercise == exercise and r.group in GATED_GROUPS and r.score > 0]
        why = log.why_not_live(exercise) if gated else None
        if why is None:
            continue
        for r in gated:
            r.score = 0.0
            r.output = (f"no points: {exercise} {why}; this check also holds for a function that ignores its input. "
                        "Property and hygiene checks count once the result depends on the input")


def _internal_error(report: GradeReport, test_name: str, exc: Exception) -> None:
    """The traceback names hidden-suite files and lines: it goes to the instructor only (stderr and results.json's
    extra_data, which Gradescope stores but never shows students), the student reads one generic line."""
    trace = printable(parsing.format_exception(exc)[-3000:])
    report.internal_errors.append(f"{test_name}: {trace}")
    print(f"internal error in hidden test {test_name} ({report.submission}):\n{trace}", file=sys.stderr, flush=True)


def _review_lines(scan: policy.ScanResult, exercises: list[str]) -> list[str]:
    """One line per finding, naming every exercise it concerns: module-level code concerns them all, and five
    copies of one line would bury the others."""
    concerned: dict[policy.Finding, list[str]] = {}
    for exercise in exercises:
        for finding in scan.review.get(exercise, []):
            concerned.setdefault(finding, []).append(exercise)
    return [f"{', '.join(names)}: needs review: {f.what} ({f.where()}); the grader cannot tell what it reaches"
            for f, names in concerned.items()]


def _judged_by_policy(result: TestResult, scan: policy.ScanResult, report: GradeReport) -> TestResult:
    """Under strict grading, code that needs review earns nothing until a person has looked; the test still
    ran, so a real bug is still named."""
    notes = scan.review_notes(result.exercise)
    if not notes or not report.strict or scan.forbidden_message(result.exercise):
        return result
    reason = notes[0] + (f" (and {len(notes) - 1} more)" if len(notes) > 1 else "")
    output = reason if result.passed else f"{reason}. Besides: {result.output}"
    return TestResult(result.name, result.title, result.exercise, result.group, 0.0, result.max_score, output)


def _result(test, score: float, output: str) -> TestResult:
    # Messages quote what the worker sent (error text, code lines, type names): no escape reaches a terminal.
    return TestResult(test.name, test.title, test.exercise, test.group, score, test.points, printable(output))


def _cell_errors(load_report: dict | None, submission: Submission) -> list[str]:
    if not load_report:
        return []
    labels = submission.cell_labels()
    notes = []
    for cell in load_report.get("cells", []):
        if cell.get("ok"):
            continue
        err = cell.get("error", {})
        where = err.get("where") or []
        label = labels.get(cell["index"], f"cell {cell['index']}")
        line = f" (line {where[-1]['line']})" if where else ""
        message = printable(err.get("message") or "").strip().splitlines()
        notes.append(printable(f"{label}{line} did not run: {err.get('type')}: "
                               f"{shorten(message[0], 200) if message else ''}"))
    return notes
