"""``python -m autograder grade SUBMISSION [SUBMISSION ...] [--assignment ID] [--out results.json]``.

Exit status 0 whenever grading ran, whatever the score; 2, with one line on stderr,
when the grader itself could not run (an unreadable path, an unknown assignment).
"""

from __future__ import annotations

import argparse
import os
import sys
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

from autograder.suites import SUITES


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m autograder", description="Grade Transformer-course notebooks.")
    sub = p.add_subparsers(dest="command", required=True)
    g = sub.add_parser("grade", help="grade one or more submissions")
    g.add_argument("submissions", nargs="+", type=Path, metavar="SUBMISSION",
                   help="a notebook, or a folder with one submission's notebooks (nbgrader's submitted/<student>/<assignment>/ works)")
    g.add_argument("--assignment", choices=list(SUITES), help="the assignment id (default: inferred from the path or notebook)")
    g.add_argument("--out", type=Path, help="where to write results.json (default: ./results.json; one submission only)")
    g.add_argument("--out-dir", type=Path, help="with several submissions: write <DIR>/<n>-<name>.json for each (default: ./results/)")
    g.add_argument("--device", default="auto", help="device the student's code runs on: auto (cuda when present), cpu, cuda, cuda:1, ...")
    g.add_argument("--time-limit", type=float, default=None, help="seconds per hidden test (default 10)")
    g.add_argument("--jobs", type=int, default=None, help="submissions graded at once (default: the number of CPU cores)")
    g.add_argument("--quiet", action="store_true", help="print only the score line of each submission")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.out and len(args.submissions) > 1:
        return _error("--out takes one submission; use --out-dir for several")
    for path in args.submissions:
        if not path.exists():
            return _error(f"cannot read {path}: no such file or folder")

    # Start the worker server first: it imports torch while this process does the same.
    from autograder.worker.pool import WorkerServer

    with WorkerServer() as server:
        return grade_all(args, server)


def grade_all(args, server) -> int:
    import torch
    import torch.fx.experimental.symbolic_shapes  # noqa: F401  (the first backward needs it; load it while the server starts)

    from autograder.report import render, write_results

    torch.set_num_threads(1)  # the grader's tensors are tiny; extra threads only contend with the workers
    device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    many = len(args.submissions) > 1
    jobs = max(1, min(args.jobs or os.cpu_count() or 1, len(args.submissions)))
    status = 0
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        futures = {pool.submit(_grade_one, args, path, server, device): (n, path)
                   for n, path in enumerate(args.submissions, start=1)}
        for done, future in enumerate(as_completed(futures), start=1):
            n, path = futures[future]
            report, error = future.result()
            if error:
                status = _error(error)
            if report is None:
                continue
            out = args.out or ((args.out_dir or Path("results")) / f"{n:03d}-{_slug(path)}.json" if many else Path("results.json"))
            write_results(report, out)
            if many:
                print(f"[{done}/{len(args.submissions)}] {path}", flush=True)
            text = render(report, color=sys.stdout.isatty())
            print(text.splitlines()[-1] if args.quiet else text, flush=True)
            print(f"  results: {out}\n", flush=True)
    return status


def _grade_one(args, path: Path, server, device: str):
    """(report, error line): a GraderError gives no report; a grader bug still gives one saying so."""
    from autograder.runner import DEFAULT_TIME_LIMIT, GradeReport, GraderError, grade

    try:
        return grade(path, assignment=args.assignment, server=server, device=device,
                     time_limit=args.time_limit or DEFAULT_TIME_LIMIT), None
    except GraderError as exc:  # this submission cannot be graded; the others still are
        return None, str(exc)
    except Exception as exc:
        report = GradeReport(assignment=args.assignment or "?", submission=str(path), notebook=None)
        report.diagnostics.append(f"the grader failed on this submission ({type(exc).__name__}: {exc}); ask your instructor to regrade")
        return report, f"internal error while grading {path}: {type(exc).__name__}: {exc}"


def _slug(path: Path) -> str:
    name = "-".join(p for p in path.with_suffix("").parts[-2:] if p not in ("/", ".", ".."))
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name) or "submission"


def _error(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 2
