"""Grading throughput: this grader against `nbgrader autograde`, on the same notebooks.

    .venv/bin/python benchmarks/bench_grading.py [--n 20] [--skip-nbgrader]

Measures, on the bundled example submissions (cycled to N students):
1. one submission from a cold start (a new `python -m autograder grade` process);
2. N submissions in a row in one `python -m autograder grade` process;
3. the same N with `nbgrader autograde` (which executes each notebook in a Jupyter kernel).
Prints a Markdown table for the README. Wall-clock seconds; median of repeats for (1).
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ASSIGNMENT = "a1_attention"
NOTEBOOK = "attention.ipynb"
# Valid notebooks only: nbgrader cannot grade the broken one at all.
SOURCES = ["perfect", "partly_wrong", "other_style", "untouched_release"]


def make_course(root: Path, n: int) -> list[Path]:
    """An nbgrader course directory with N submissions; returns their folders."""
    shutil.copytree(REPO / "solutions", root / "solutions")
    shutil.copy(REPO / "nbgrader_config.py", root)
    folders = []
    for i in range(n):
        src = REPO / "examples" / "submissions" / SOURCES[i % len(SOURCES)] / ASSIGNMENT / NOTEBOOK
        folder = root / "submitted" / f"student{i:02d}" / ASSIGNMENT
        folder.mkdir(parents=True)
        shutil.copy(src, folder / NOTEBOOK)
        folders.append(folder)
    return folders


def timed(cmd: list[str], cwd: Path) -> float:
    start = time.perf_counter()
    # nbgrader runs `alembic` from PATH: put this interpreter's bin folder first.
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    proc = subprocess.run(cmd, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd[:4])} failed:\n{proc.stderr[-2000:]}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-nbgrader", action="store_true")
    args = parser.parse_args()
    py = sys.executable
    bin_dir = Path(py).parent
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        root = Path(tmp)
        folders = make_course(root, args.n)
        grade = [py, "-m", "autograder", "grade"]
        cold = statistics.median(
            timed(grade + [str(folders[0]), "--out", str(root / "one.json")], REPO) for _ in range(args.repeats))
        batch = timed(grade + [str(f) for f in folders] + ["--out-dir", str(root / "ours"), "--quiet"], REPO)
        rows = [("this grader, 1 submission, cold start", cold, 1),
                (f"this grader, {args.n} submissions, one process", batch, args.n)]
        if not args.skip_nbgrader:
            nbgrader = str(bin_dir / "nbgrader")
            timed([nbgrader, "generate_assignment", ASSIGNMENT, "--force"], root)
            ours_per = batch / args.n
            nb = timed([nbgrader, "autograde", ASSIGNMENT, "--force"], root)
            rows.append((f"nbgrader autograde, {args.n} submissions", nb, args.n))
    print(f"machine: {platform.processor() or platform.machine()}, {cpu_model()}, {os.cpu_count()} cores, "
          f"Python {platform.python_version()}")
    print("\n| run | wall time | per submission |\n| --- | ---: | ---: |")
    for label, seconds, n in rows:
        print(f"| {label} | {seconds:.1f} s | {seconds / n:.2f} s |")
    if not args.skip_nbgrader:
        print(f"\nthroughput ratio (nbgrader per submission / ours per submission): {(nb / args.n) / ours_per:.1f}x")


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"


if __name__ == "__main__":
    main()
