"""Grading throughput: this grader against `nbgrader autograde`, on the same notebooks.

    .venv/bin/python benchmarks/bench_grading.py [--students 20] [--nbgrader-students 4] [--repeats 3]

Measures, on the reference solutions of a1..a5 (every submission correct, so every test runs to the end):
1. one a1 submission from a cold start (a new `python -m autograder grade` process), against a bare
   `python -c "import torch"` on the same machine: the ratio the issue bounds at 1.5x;
2. the five-assignment batch of N students (5N notebooks) in one `grade` command: wall time, the CPU time of the
   grader and everything it started, and the utilisation of the CPUs this process may use;
3. `nbgrader autograde` of the same five assignments for M students (M defaults to 4: nbgrader takes about 6 s a
   notebook), per notebook, and the ratio to ours.
CPU time is read from a cgroup of the run's own (cgroup v1 `cpuacct` or v2 `cpu.stat`, as root); where none can be
made, from the machine-wide counters of /proc/stat, which count other processes too (the table says which). The
worker server reaps its workers itself, so the `time` command's children totals miss most of their CPU.
Prints Markdown for the README. Wall-clock seconds; medians of repeats for (1).
"""

from __future__ import annotations

import argparse
import contextlib
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
sys.path.insert(0, str(REPO))
from autograder.cpus import usable_cpus  # noqa: E402

ASSIGNMENTS = ["a1_attention", "a2_masking", "a3_ffn_positions", "a4_residual_norm", "a5_transformer_lm"]


def make_course(root: Path, students: int) -> list[Path]:
    """An nbgrader course directory with every student's five submissions; returns their folders."""
    shutil.copytree(REPO / "solutions", root / "solutions")
    shutil.copy(REPO / "nbgrader_config.py", root)
    folders = []
    for i in range(students):
        for assignment in ASSIGNMENTS:
            folder = root / "submitted" / f"student{i:03d}" / assignment
            shutil.copytree(REPO / "solutions" / assignment, folder)  # the notebook and its data (a5's corpus)
            folders.append(folder)
    return folders


class CpuClock:
    """CPU seconds of one command and everything it starts: a cgroup of its own where one can be made."""

    def __init__(self):
        self.cgroup = self._make_cgroup()
        self.how = "cgroup" if self.cgroup else "machine-wide /proc/stat"

    @staticmethod
    def _make_cgroup() -> Path | None:
        for parent in (Path("/sys/fs/cgroup/cpuacct"), Path("/sys/fs/cgroup")):
            usage = "cpuacct.usage" if parent.name == "cpuacct" else "cpu.stat"
            if (parent / usage).exists() or (parent / "cgroup.procs").exists():
                with contextlib.suppress(OSError):
                    group = parent / f"bench-grading-{os.getpid()}"
                    group.mkdir(exist_ok=True)
                    if (group / usage).exists():
                        return group
                    group.rmdir()
        return None

    def seconds(self) -> float:
        if self.cgroup is None:
            fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
            return (sum(fields) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")
        if (self.cgroup / "cpuacct.usage").exists():
            return int((self.cgroup / "cpuacct.usage").read_text()) / 1e9
        stat = dict(line.split() for line in (self.cgroup / "cpu.stat").read_text().splitlines())
        return int(stat["usage_usec"]) / 1e6

    def enter(self) -> None:  # in the child, before exec
        if self.cgroup is not None:
            (self.cgroup / "cgroup.procs").write_text(str(os.getpid()))

    def close(self) -> None:
        if self.cgroup is not None:
            time.sleep(0.2)  # the last processes leave the group
            with contextlib.suppress(OSError):
                self.cgroup.rmdir()


def run(cmd: list[str], cwd: Path, clock: CpuClock | None = None) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of ``cmd``; CPU is 0 without a clock."""
    # nbgrader runs `alembic` from PATH: put this interpreter's bin folder first.
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    cpu_before = clock.seconds() if clock else 0.0
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                          preexec_fn=clock.enter if clock else None)
    wall = time.perf_counter() - start
    cpu = (clock.seconds() - cpu_before) if clock else 0.0
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd[:4])} failed:\n{proc.stderr[-2000:]}")
    return wall, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--students", type=int, default=20, help="students in our five-assignment batch")
    parser.add_argument("--nbgrader-students", type=int, default=4, help="students nbgrader grades (0: skip it)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    py, cpus = sys.executable, usable_cpus()
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        root = Path(tmp)
        folders = make_course(root / "ours", args.students)
        grade = [py, "-m", "autograder", "grade"]
        torch_import = statistics.median(run([py, "-c", "import torch"], REPO)[0] for _ in range(args.repeats))
        cold = statistics.median(run(grade + [str(folders[0]), "--out", str(root / "one.json")], REPO)[0]
                                 for _ in range(args.repeats))
        ours = folders
        clock = CpuClock()
        try:
            wall, cpu = run(grade + [str(f) for f in ours] + ["--out-dir", str(root / "results"), "--quiet"], REPO,
                            clock)
            rows.append((f"this grader, {args.students} students x 5 assignments ({len(ours)} notebooks), one "
                         "command", wall, cpu, len(ours)))
            if args.nbgrader_students:
                course = root / "nbgrader"
                make_course(course, args.nbgrader_students)
                nbgrader = str(Path(py).parent / "nbgrader")
                for assignment in ASSIGNMENTS:
                    run([nbgrader, "generate_assignment", assignment, "--force"], course)
                nb_wall = nb_cpu = 0.0
                for assignment in ASSIGNMENTS:  # every student of the course, one assignment per command
                    w, c = run([nbgrader, "autograde", assignment, "--force"], course, clock)
                    nb_wall, nb_cpu = nb_wall + w, nb_cpu + c
                n = 5 * args.nbgrader_students
                rows.append((f"`nbgrader autograde`, {args.nbgrader_students} students x 5 assignments ({n} "
                             "notebooks), one command per assignment", nb_wall, nb_cpu, n))
        finally:
            clock.close()
    print(f"machine: {platform.machine()}, {cpu_model()}, {os.cpu_count()} cores ({cpus} usable by this process), "
          f"Python {platform.python_version()}; CPU time from {clock.how}\n")
    print(f"| run | wall time | per notebook | CPU time | CPU utilisation ({cpus} cores) |")
    print("| --- | ---: | ---: | ---: | ---: |")
    print(f"| bare `python -c \"import torch\"` | {torch_import:.2f} s | | | |")
    print(f"| this grader, 1 a1 submission, cold start | {cold:.2f} s | | | |")
    for label, wall, cpu, n in rows:
        print(f"| {label} | {wall:.1f} s | {wall / n:.2f} s | {cpu:.1f} s | {cpu / (wall * cpus):.0%} |")
    per_ours = rows[0][1] / rows[0][3]
    print(f"\ncold single grade / bare import torch: {cold / torch_import:.2f}x (bound: 1.5x)")
    print(f"200 students x 5 assignments at this rate: {1000 * per_ours / 60:.1f} min (bound: 5 min)")
    if len(rows) > 1:
        ratio = (rows[1][1] / rows[1][3]) / per_ours
        print(f"throughput ratio (nbgrader per notebook / ours per notebook): {ratio:.1f}x")


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
