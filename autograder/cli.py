"""The command line.

``python -m autograder grade SUBMISSION [SUBMISSION ...] [--assignment ID] [--out results.json]
[--out-dir DIR] [--csv grades.csv] [--resume]`` grades; ``python -m autograder rebuild DIR [DIR ...]
[--csv grades.csv]`` regenerates grades.csv and the class summary from results folders (``autograder/batch.py``);
``python -m autograder export-gradebook RESULTS... [--db gradebook.db] [--course-dir DIR] [--due-date DATE]`` files
graded results into nbgrader's gradebook and autograded/ folders (see ``autograder/gradebook.py`` for why that is
a step of its own); ``python -m autograder student-release OUT [--through ASSIGNMENT]`` copies what to hand
students (``autograder/student_release.py``). Grading several submissions ends with a class summary
(``autograder/summary.py``) and ``<out-dir>/summary.png``.
``python -m autograder gradescope ASSIGNMENT [--out DIR_OR_ZIP] [--visibility V]`` builds the assignment's
Gradescope autograder zip (``autograder/gradescope.py``).

Exit status 0 whenever grading ran, whatever the score; 2, with one line on stderr,
when the grader itself could not run (an unreadable path, an unknown assignment); 3, with one line on stderr,
when this machine cannot sandbox student code as a grade requires (``sandbox.missing_layers``): before anything
is graded, or for the submissions whose worker reported so (they get no results file and no grades.csv row, so
``--resume`` grades them later). ``--allow-weaker-sandbox`` grades with the strongest layers available instead.
"""

from __future__ import annotations

import argparse
import contextlib
import queue
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

from autograder import parsing
from autograder.cpus import usable_cpus
from autograder.gradescope import VISIBILITIES
from autograder.suites import SUITES

if TYPE_CHECKING:
    from autograder.runner import GradeReport


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m autograder", description="Grade Transformer-course notebooks.")
    sub = p.add_subparsers(dest="command", required=True)
    g = sub.add_parser("grade", help="grade one or more submissions")
    g.add_argument("submissions", nargs="+", type=Path, metavar="SUBMISSION",
                   help="a notebook, or a folder with one submission's notebooks "
                        "(nbgrader's submitted/<student>/<assignment>/ works)")
    g.add_argument("--assignment", choices=list(SUITES),
                   help="the assignment id (default: inferred from the path or notebook)")
    g.add_argument("--out", type=Path,
                   help="where to write results.json (default: results/<student>-<assignment>.json; "
                        "one submission only)")
    g.add_argument("--out-dir", type=Path, help="write <DIR>/<student>-<assignment>.json for each submission, and "
                   "<DIR>/grades.csv (default with several submissions: ./results/)")
    g.add_argument("--csv", type=Path,
                   help="update this grades.csv instead of <DIR>/grades.csv (also with one submission): "
                        "rows of the students graded now are replaced, other rows kept")
    g.add_argument("--device", default="auto",
                   help="device the student's code runs on: auto (cuda when present), cpu, cuda, cuda:1, ...")
    g.add_argument("--time-limit", type=float, default=None, help="seconds per hidden test (default 10)")
    g.add_argument("--time-budget", type=float, default=None,
                   help="seconds for one whole submission, loading its notebook included (default 150); "
                        "when spent, its remaining tests fail and no new worker starts")
    g.add_argument("--jobs", type=int, default=None,
                   help="submissions graded at once (default: the CPUs this process may use: its affinity mask, "
                        "capped by a container's CPU quota)")
    g.add_argument("--quiet", action="store_true", help="print only the score line of each submission")
    g.add_argument("--shard", metavar="I/N",
                   help="grade only shard I of N (every N-th submission in path order, from the I-th): N jobs given "
                        "the same submissions grade disjoint slices; merge their --out-dir folders with rebuild")
    g.add_argument("--resume", action="store_true",
                   help="skip submissions whose results file is newer than their notebook (after a killed run) and "
                        "reuse those results for grades.csv and the summary")
    g.add_argument("--allow-weaker-sandbox", action="store_true",
                   help="where this machine cannot sandbox student code as a grade requires (exit status 3), grade "
                        "with the strongest layers it has; results.json records the layers and this permission")
    strictness = g.add_mutually_exclusive_group()
    strictness.add_argument("--strict", dest="strict", action="store_true", default=True,
                            help="code the policy scan cannot resolve (\"needs review\") scores 0 for its exercise "
                                 "(default)")
    strictness.add_argument("--lenient", dest="strict", action="store_false",
                            help="code that needs review keeps its points and is only flagged in the report, "
                                 "results.json and grades.csv")
    g.add_argument("--visibility", choices=VISIBILITIES, default="visible",
                   help="when Gradescope shows students the tests and the output (results.json's visibility, "
                        "top level and per test; default visible)")
    gs = sub.add_parser("gradescope", help="build an assignment's Gradescope autograder zip (autograder/gradescope.py)")
    gs.add_argument("assignment", choices=list(SUITES), metavar="ASSIGNMENT", help="the assignment id")
    gs.add_argument("--out", type=Path, help="the zip, or a folder for <ASSIGNMENT>-gradescope.zip (default: results/)")
    gs.add_argument("--visibility", choices=VISIBILITIES, default="visible",
                    help="when students see the tests and the output on Gradescope (default visible)")
    r = sub.add_parser("rebuild", help="regenerate grades.csv and the class summary from results folders "
                                       "(also merges the folders of several runs)")
    r.add_argument("folders", nargs="+", type=Path, metavar="DIR", help="folders of results files (grade --out-dir)")
    r.add_argument("--csv", type=Path, help="the grades.csv to update (default: <first DIR>/grades.csv); "
                                            "summary.png goes beside it")
    r.add_argument("--quiet", action="store_true", help="print only each assignment's score line")
    e = sub.add_parser("export-gradebook", help="write graded results (results.json) into nbgrader's gradebook")
    e.add_argument("results", nargs="+", type=Path, metavar="RESULTS",
                   help="results.json files, or folders of them (what grade --out-dir wrote)")
    e.add_argument("--db", default="gradebook.db",
                   help="the gradebook: a sqlite file or an SQLAlchemy URL "
                        "(default: ./gradebook.db, the course folder's)")
    e.add_argument("--course-dir", type=Path,
                   help="the nbgrader course folder: its nbgrader_config.py (late-penalty plugin) is read and "
                        "autograded/<student>/<assignment>/ written there for generate_feedback and formgrader "
                        "(default: the gradebook's folder)")
    e.add_argument("--due-date", help="the assignments' due date, when the gradebook has none "
                                      "(as nbgrader reads it, e.g. '2026-12-01 17:00:00 UTC'): late penalties use it")
    s = sub.add_parser("student-release", help="copy what to hand students (releases, lectures, the notebook check) "
                                               "into a new folder: never solutions, suites or tests")
    s.add_argument("out", type=Path, metavar="OUT", help="a new or empty folder")
    s.add_argument("--through", choices=list(SUITES),
                   help="the last assignment to include, in course order (default: all)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.command == "export-gradebook":
        return export_gradebook(args)
    if args.command == "rebuild":
        return rebuild(args)
    if args.command == "gradescope":
        return gradescope(args)
    if args.command == "student-release":
        return student_release(args)
    if args.out and len(args.submissions) > 1:
        return _error("--out takes one submission; use --out-dir for several")
    for path in args.submissions:
        if not path.exists():
            return _error(f"cannot read {path}: no such file or folder")
    csv_path = _csv_path(args)
    if csv_path:
        from autograder.grades_csv import GradesCsvError, read_rows

        try:
            read_rows(csv_path)  # refuse a foreign CSV now, not after grading everything
        except (GradesCsvError, OSError, UnicodeDecodeError) as exc:
            return _error(str(exc))

    # Start the worker server first: it imports torch while this process does the same, and pytest (which runs the
    # hidden suites) loads in a thread meanwhile.
    threading.Thread(target=_import_pytest, daemon=True).start()
    from autograder.grading_process import helper_processes
    from autograder.worker.pool import WorkerServer

    jobs = min(args.jobs or usable_cpus(), len(args.submissions))
    spares = jobs - helper_processes(jobs, len(args.submissions))  # a worker ready ahead for each grading thread here
    with WorkerServer(optimizers=_needs_optimizers(args), spares=spares,
                      allow_weaker=getattr(args, "allow_weaker_sandbox", False)) as server:
        return grade_all(args, server)


def _needs_optimizers(args) -> bool:
    """Whether some submission may be of an assignment whose tests build an optimizer (a5's train_step); an
    assignment the path does not name counts as yes. Read from the paths alone, before torch is imported."""
    from autograder.layout import assignment_in_path

    assignments = {args.assignment} if args.assignment else {assignment_in_path(p) for p in args.submissions}
    return bool(assignments - {"a1_attention", "a2_masking", "a3_ffn_positions", "a4_residual_norm"})


def grade_all(args, server) -> int:
    import torch

    from autograder.batch import BatchError, shard
    from autograder.runner import GraderError, resolve_device
    from autograder.worker.pool import SandboxUnavailable, preflight

    torch.set_num_threads(1)  # the grader's tensors are tiny; extra threads only contend with the workers
    try:  # before anything is graded or written: the environment is never the student's fault
        warning = preflight(server)[1]
    except SandboxUnavailable as exc:
        return _environment_error(str(exc))
    if warning:
        print(f"warning: {warning}", file=sys.stderr, flush=True)
    try:
        device = resolve_device(args.device)  # once per run: one line, not an error (and a CSV row) per submission
        if args.shard:
            total = len(args.submissions)
            args.submissions = shard(args.submissions, args.shard)
            print(f"shard {args.shard}: {len(args.submissions)} of {total} submissions")
        plan = _plan(args)
    except (GraderError, BatchError) as exc:
        return _error(str(exc))
    return _run(args, server, device, plan)


def _run(args, server, device: str, plan: dict) -> int:
    from autograder.grades_csv import error_row, report_row
    from autograder.report import render

    many = len(args.submissions) > 1
    csv = _CsvWriter(_csv_path(args))
    written = _FinishedWriter(csv, args.visibility)
    reports, not_gradable = {}, []  # for the class summary: reports by submission number, assignments of the rest
    reused = plan["reused"]
    if args.resume:
        print(f"resume: {len(reused)} of {len(args.submissions)} submissions skipped "
              "(their results are newer than their notebooks)", flush=True)
    reports.update(reused)
    csv.write([report_row(report) for report in reused.values()])
    jobs = max(1, min(args.jobs or usable_cpus(), sum(map(len, plan["groups"].values())) or 1))
    if many:  # the class summary's figure needs matplotlib: import it while the workers grade
        threading.Thread(target=_import_plotting, daemon=True).start()
    status = 0
    not_graded = 0  # submissions whose worker could not be sandboxed: no results, no row, exit status 3
    results: queue.Queue = queue.Queue()  # (n, path, report, error), as each submission is done
    for error in plan["errors"]:
        results.put(error)
    from autograder.grading_process import helper_processes

    helpers = helper_processes(jobs, sum(map(len, plan["groups"].values())))
    coordinator = threading.Thread(target=_grade_in_sessions, daemon=True,
                                   args=(args, plan["groups"], server, device, jobs, results, helpers))
    coordinator.start()
    pending = set(range(1, len(args.submissions) + 1)) - set(reused)
    try:  # Ctrl-C or an error still writes what was printed as finished
        while pending:
            try:
                n, path, report, error = results.get(timeout=1.0)
            except queue.Empty:
                written.flush()
                if coordinator.is_alive() or not results.empty():
                    continue
                n = min(pending)  # the grader itself stopped: what it never reported is an internal error, not lost
                path = args.submissions[n - 1]
                report, error = _internal_error_report(args, path, RuntimeError("the grader stopped before this one"))
            pending.discard(n)
            done = len(args.submissions) - len(pending)
            if error:
                status = _error(error)
            if report is None:
                row = error_row(path, args.assignment, error)
                not_gradable.append(row["assignment"])
                written.add(row)
                continue
            if report.environment_error:  # the machine's fault, not the student's: no 0 anywhere, --resume regrades it
                not_graded += 1
                print(f"not graded: environment ({report.environment_error}): {path}", file=sys.stderr, flush=True)
                continue
            reports[n] = report
            out = plan["outs"].get(n) or args.out or _out_dir_or_default(args) / _name_of(report)
            written.add(report_row(report), report, out)
            if many:
                print(f"[{done}/{len(args.submissions)}] {path}", flush=True)
            text = render(report, color=sys.stdout.isatty())
            print(text.splitlines()[-1] if args.quiet else text, flush=True)
            print(f"  results: {out}\n", flush=True)
    finally:
        written.flush()
    if many:
        _class_summary(args, [reports[n] for n in sorted(reports)], not_gradable, _out_dir_or_default(args))
    if csv.path and csv.error is None:
        print(f"grades: {csv.path}", flush=True)
    if not_graded:
        return _environment_error(f"{not_graded} submission(s) not graded: this machine could not sandbox their "
                                  "workers (lines above); fix it, then run the same command with --resume")
    return status or csv.status


class _FinishedWriter:
    """The grades.csv rows and results files of finished submissions, written together at most once a second. Each
    CSV update rewrites the sorted file under its lock, so one per submission costs the square of the batch (1000
    rows: 9 s of this process's CPU, measured); a row still reaches grades.csv before its results file, so every
    results file ``--resume`` reuses has its row, and a killed run loses at most a second of finished work."""

    EVERY = 1.0  # seconds between writes

    def __init__(self, csv: "_CsvWriter", visibility: str):
        self.csv, self.visibility = csv, visibility
        self.pending: list[tuple[dict, GradeReport | None, Path | None]] = []
        self.last = time.monotonic()

    def add(self, row: dict, report: GradeReport | None = None, out: Path | None = None) -> None:
        self.pending.append((row, report, out))
        if time.monotonic() - self.last >= self.EVERY:
            self.flush()

    def flush(self) -> None:
        from autograder.report import write_results

        pending, self.pending, self.last = self.pending, [], time.monotonic()
        if pending:
            self.csv.write([row for row, _, _ in pending])
        for _, report, out in pending:
            if report is not None and out is not None:
                write_results(report, out, visibility=self.visibility)


class _CsvWriter:
    """grades.csv updated a row at a time; after a failure (the results.json files are still written) it stops
    trying and says so once."""

    def __init__(self, path: Path | None):
        self.path, self.status = path, 0
        self.error: Exception | None = None

    def write(self, rows: list[dict]) -> None:
        from autograder.grades_csv import GradesCsvError, update_csv

        if not self.path or not rows or self.error:
            return
        try:
            update_csv(self.path, rows)
        except (GradesCsvError, OSError) as exc:
            self.error = exc
            self.status = _error(f"grades.csv not written: {exc}")


def _plan(args) -> dict:
    """Which assignment each submission is and where its results go, before anything is graded: ``groups``
    (assignment -> [(n, path)] to grade), ``errors`` ([(n, path, report or None, why)] that cannot be graded), ``outs``
    (n -> results file) and ``reused`` (n -> the report --resume reads back instead of grading; an unreadable
    results file is graded again). Raises BatchError when two submissions would write one results file."""
    from autograder.batch import BatchError, check_unique, is_fresh, planned_name, read_report
    from autograder.runner import GraderError, resolve_assignment

    groups: dict[str, list] = {}
    errors, outs, reused = [], {}, {}
    writers: dict[Path, list[str]] = {}
    for n, path in enumerate(args.submissions, start=1):
        try:
            assignment = resolve_assignment(path, args.assignment)
        except GraderError as exc:  # this submission cannot be graded; the others still are
            errors.append((n, path, None, str(exc)))
            continue
        except Exception as exc:  # noqa: BLE001  (a grader bug on one path costs that path, not the run)
            errors.append((n, path, *_internal_error_report(args, path, exc)))
            continue
        outs[n] = args.out or _out_dir_or_default(args) / planned_name(path, assignment)
        writers.setdefault(outs[n], []).append(str(path))
        if args.resume and is_fresh(outs[n], path):
            with contextlib.suppress(BatchError):
                reused[n] = read_report(outs[n])
        if n not in reused:
            groups.setdefault(assignment, []).append((n, path))
    check_unique(writers)
    return {"groups": groups, "errors": errors, "outs": outs, "reused": reused}


def _name_of(report) -> str:
    from autograder.batch import result_name

    return result_name(report.student, report.assignment)


def _import_pytest() -> None:
    import _pytest.fixtures  # noqa: F401
    import _pytest.python  # noqa: F401
    import pytest  # noqa: F401


def _import_plotting() -> None:
    try:
        import matplotlib.backends.backend_agg  # noqa: F401
        import matplotlib.figure  # noqa: F401
    except Exception:  # noqa: BLE001  (write_figure reports the failure when it needs the module)
        pass


def _class_summary(args, reports, not_gradable, out_dir: Path) -> None:
    """What the class got wrong, printed and drawn into <out-dir>/summary.png; a plot that fails only warns."""
    from autograder.summary import FIGURE_NAME, render_summary, summarise, write_figure

    summaries = summarise(reports, not_gradable)
    print(render_summary(summaries, quiet=args.quiet, color=sys.stdout.isatty()), flush=True)
    figure = out_dir / FIGURE_NAME
    try:
        write_figure(summaries, figure)
        print(f"summary: {figure}", flush=True)
    except Exception as exc:  # the grades are written; a missing picture must not turn the run into a failure
        print(f"warning: {figure} not written: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)


def rebuild(args) -> int:
    """grades.csv, the class summary and summary.png from the results files in ``args.folders``."""
    from autograder.batch import BatchError, read_folders
    from autograder.grades_csv import GradesCsvError, report_row, update_csv

    csv_path = args.csv or args.folders[0] / "grades.csv"
    try:
        found = read_folders(args.folders)
        update_csv(csv_path, [report_row(report) for _, report in found])
    except (BatchError, GradesCsvError, OSError) as exc:
        return _error(str(exc))
    print(f"rebuilt from {len(found)} results file(s)", flush=True)
    _class_summary(args, [report for _, report in found], [], csv_path.parent)
    print(f"grades: {csv_path}", flush=True)
    return 0


def gradescope(args) -> int:
    from autograder.gradescope import build

    try:
        path = build(args.assignment, args.out, args.visibility)
    except OSError as exc:
        return _error(f"autograder zip not written: {exc}")
    print(f"autograder zip: {path} (upload it as the assignment's autograder on Gradescope)", flush=True)
    return 0


def export_gradebook(args) -> int:
    from autograder.gradebook import ExportError, export

    try:
        for line in export(args.results, args.db, args.course_dir, args.due_date):
            print(line, flush=True)
    except ExportError as exc:
        return _error(str(exc))
    return 0


def student_release(args) -> int:
    from autograder.student_release import student_release as write

    try:
        lines = write(args.out, args.through)
    except (ValueError, OSError) as exc:
        return _error(str(exc))
    print("\n".join([f"student release: {args.out}", *lines]), flush=True)
    return 0


def _out_dir_or_default(args) -> Path:
    """Where results files go: --out-dir, else ./results/."""
    return _out_dir(args) or Path("results")


def _out_dir(args) -> Path | None:
    """Where per-submission results go: --out-dir, or ./results/ when several submissions share a run."""
    return args.out_dir or (Path("results") if len(args.submissions) > 1 else None)


def _csv_path(args) -> Path | None:
    """--csv, else grades.csv next to the per-submission results; a one-notebook run writes none unless asked."""
    out_dir = _out_dir(args)
    return args.csv or (out_dir / "grades.csv" if out_dir else None)


def _grade_in_sessions(args, groups: dict, server, device: str, jobs: int, results: queue.Queue,
                       helpers: int = 0) -> None:
    """Put (n, path, report, error) into ``results`` for every submission of ``groups`` (assignment -> [(n, path)]).
    ``jobs`` threads share one queue of every submission, in assignment order, and each grades what it takes in one
    pytest session per assignment (collected once, so a submission costs its tests, not a pytest start-up). One queue
    for all assignments, not one after another: a thread that runs out of one assignment starts on the next while
    the other threads finish theirs, so no core waits at an assignment's end. ``helpers`` of the ``jobs`` are
    processes of their own (``autograder/grading_process.py``) that take from the same queue."""
    todo: queue.Queue = queue.Queue()
    for assignment, batch in groups.items():
        for n, path in batch:
            todo.put((assignment, n, path))
    jobs = min(jobs, todo.qsize())
    helpers = min(helpers, jobs - 1)
    threads = [threading.Thread(target=_session, args=(args, todo, server, device, results))
               for _ in range(jobs - helpers)]
    threads += [threading.Thread(target=_helper_job, args=(args, todo, server, device, results))
                for _ in range(helpers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def _session(args, todo: queue.Queue, server, device: str, results: queue.Queue) -> None:
    """Grade from ``todo`` until it is empty, one pytest session per run of submissions of one assignment; a session
    that breaks costs the submission it was on, and a new session takes the rest."""
    from autograder.runner import DEFAULT_TIME_LIMIT, grade_many
    from autograder.session import DEFAULT_TIME_BUDGET

    reported: set[int] = set()
    current: list = []
    taken: list = []  # an item taken from the queue for the next session (another assignment's)

    def next_item():
        if taken:
            return taken.pop()
        try:
            return todo.get_nowait()
        except queue.Empty:
            return None

    def drain(assignment: str):
        while (item := next_item()) is not None:
            if item[0] != assignment:
                taken.append(item)  # the next session's first submission
                return
            _, n, path = item
            current[:] = [(n, path)]
            yield (n, path), path  # (key, path): the key comes back with the report

    def on_report(key, report, error):
        n, path = key
        reported.add(n)
        results.put((n, path, report, error))

    while (first := next_item()) is not None:
        taken.append(first)
        assignment = first[0]
        current.clear()
        try:
            grade_many(drain(assignment), assignment, on_report, server=server, device=device,
                       time_limit=args.time_limit or DEFAULT_TIME_LIMIT,
                       time_budget=args.time_budget or DEFAULT_TIME_BUDGET, strict=args.strict)
        except Exception as exc:  # noqa: BLE001  (the session broke: the submission it was on pays, not the rest)
            broken = [current[0]] if current and current[0][0] not in reported else []
            if not current:  # it broke before grading anything (the suite itself): its assignment's submissions pay
                broken += [key for key, _ in drain(assignment)]
            for n, path in broken:
                reported.add(n)
                results.put((n, path, *_internal_error_report(args, path, exc)))


def _helper_job(args, todo: queue.Queue, server, device: str, results: queue.Queue) -> None:
    """A job in a grading process of its own; if the process cannot start, this thread grades instead."""
    from autograder.grading_process import HelperJob

    def lost(n: int, path, why: str) -> None:
        results.put((n, path, *_internal_error_report(args, path, RuntimeError(why))))

    try:
        job = HelperJob(args, device)
    except OSError as exc:
        print(f"warning: a grading process could not start ({exc}); this job grades in a thread", file=sys.stderr,
              flush=True)
        _session(args, todo, server, device, results)
        return
    job.serve(todo, results, lost)


def _internal_error_report(args, path: Path, exc: Exception):
    """(report, error line) for a submission the grader failed on: the student reads one line; what failed (which
    may name hidden-suite files) goes to the instructor only."""
    from autograder.layout import assignment_in_path
    from autograder.runner import GradeReport

    report = GradeReport(assignment=args.assignment or assignment_in_path(path) or "?", submission=str(path),
                         notebook=None)
    report.diagnostics.append("the grader failed on this submission (internal error); ask your instructor to regrade")
    report.internal_errors.append(parsing.format_exception(exc)[-3000:])
    return report, f"internal error while grading {path}: {type(exc).__name__}: {exc}"


def _error(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 2


ENVIRONMENT_STATUS = 3  # this machine cannot sandbox student code as a grade requires


def _environment_error(message: str) -> int:
    print(f"error: {message}", file=sys.stderr, flush=True)
    return ENVIRONMENT_STATUS
