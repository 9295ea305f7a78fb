"""Batches survive crashes (issue 11, autograder/batch.py): a killed run keeps its finished rows, `--resume`
grades only the rest, `rebuild` merges results folders, concurrent CSV writers lose nothing, and a killed
grader's temporary folder goes at the next start.

The uninterrupted run is graded once per module, in process; the killed run is a real
`python -m autograder grade` killed with SIGKILL as soon as its first results file appears.
"""

from __future__ import annotations

import csv
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from autograder.batch import shard
from autograder.cli import main
from autograder.worker.pool import claim_folder, remove_stale_folders
from tests.test_summary import run_grade
from tests.variants import REPO

pytestmark = pytest.mark.engine
EXAMPLES = REPO / "examples" / "submissions"
SUBMISSIONS = sorted(str(p) for p in EXAMPLES.glob("*/a1_attention"))
POLL_LIMIT = 20_000  # polls of 0.05 s before giving up on a run that never writes a result (a hang, not a timing)


def rows(path: Path) -> dict[str, dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as f:
        return {row["student"]: row for row in csv.DictReader(f)}


def summary_line(stdout: str) -> str:
    return next(line for line in stdout.splitlines() if line.startswith("class · "))


@pytest.fixture(scope="module")
def full(server, tmp_path_factory):
    """(results folder, stdout) of grading every example in one uninterrupted run."""
    out = tmp_path_factory.mktemp("full")
    status, stdout, _ = run_grade(server, [*SUBMISSIONS, "--out-dir", str(out), "--quiet"])
    assert status == 0
    return out, stdout


def test_results_are_named_by_student_and_assignment(full):
    out, _ = full
    assert sorted(p.name for p in out.glob("*.json")) == sorted(f"{Path(s).parent.name}-a1_attention.json"
                                                                 for s in SUBMISSIONS)


def test_killed_batch_keeps_finished_rows_and_resume_grades_the_rest(full, tmp_path):
    out, tmp = tmp_path / "out", tmp_path / "tmp"
    tmp.mkdir()
    env = {**os.environ, "PYTHONPATH": str(REPO), "TMPDIR": str(tmp)}
    argv = [sys.executable, "-m", "autograder", "grade", *SUBMISSIONS, "--out-dir", str(out), "--jobs", "1", "--quiet"]
    batch = subprocess.Popen(argv, env=env, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    for _ in range(POLL_LIMIT):
        if list(out.glob("*.json")) or batch.poll() is not None:
            break
        try:
            batch.wait(0.05)
        except subprocess.TimeoutExpired:
            pass
    batch.kill()
    _, stderr = batch.communicate()
    finished = {p.name.removesuffix("-a1_attention.json") for p in out.glob("*.json")}
    assert finished, stderr.decode()
    kept = rows(out / "grades.csv")
    expected = rows(full[0] / "grades.csv")
    assert finished <= set(kept)  # a row is written before its results file
    assert all(kept[s] == expected[s] for s in kept)
    assert list(tmp.glob("grader-*")), "the killed grader's temporary folder should be left behind"

    resumed = subprocess.run([*argv, "--resume"], env=env, cwd=tmp_path, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    assert f"resume: {len(finished)} of {len(SUBMISSIONS)} submissions skipped" in resumed.stdout
    graded_now = [line for line in resumed.stdout.splitlines() if line.startswith("[")]
    assert len(graded_now) == len(SUBMISSIONS) - len(finished)
    assert not any(name in line for line in graded_now for name in finished)
    assert rows(out / "grades.csv") == expected
    assert summary_line(resumed.stdout) == summary_line(full[1])
    assert not list(tmp.glob("grader-*")), "the killed grader's folder is removed at the next start, and its own"


def test_resume_regrades_a_notebook_newer_than_its_results_or_a_broken_one(server, tmp_path):
    submission = tmp_path / "perfect" / "a1_attention"
    shutil.copytree(EXAMPLES / "perfect" / "a1_attention", submission)
    out = tmp_path / "out"
    assert run_grade(server, [str(submission), "--out-dir", str(out), "--resume"])[0] == 0
    result = out / "perfect-a1_attention.json"
    _, stdout, _ = run_grade(server, [str(submission), "--out-dir", str(out), "--resume"])
    assert "resume: 1 of 1 submissions skipped" in stdout
    notebook = max(p.stat().st_mtime_ns for p in submission.glob("*.ipynb"))
    os.utime(result, ns=(notebook - 10**9, notebook - 10**9))  # the student resubmitted after the grading
    _, stdout, _ = run_grade(server, [str(submission), "--out-dir", str(out), "--resume"])
    assert "resume: 0 of 1 submissions skipped" in stdout
    assert "score 37/37" in stdout  # graded again
    result.write_text("{")  # a results file cut short: graded again, not reused
    _, stdout, _ = run_grade(server, [str(submission), "--out-dir", str(out), "--resume"])
    assert "resume: 0 of 1 submissions skipped" in stdout and "score 37/37" in stdout


def test_rebuild_from_two_folders_equals_one_run(full, tmp_path, capsys):
    out, stdout = full
    halves = [tmp_path / "shard1", tmp_path / "shard2"]
    for i, path in enumerate(sorted(out.glob("*.json"))):
        halves[i % 2].mkdir(exist_ok=True)
        shutil.copy(path, halves[i % 2])
    capsys.readouterr()
    assert main(["rebuild", *map(str, halves), "--csv", str(tmp_path / "grades.csv")]) == 0
    rebuilt = capsys.readouterr().out
    assert (tmp_path / "grades.csv").read_text() == (out / "grades.csv").read_text()
    assert summary_line(rebuilt) == summary_line(stdout)
    assert (tmp_path / "summary.png").stat().st_size > 0


def test_rebuild_refuses_two_results_of_one_student(full, tmp_path, capsys):
    out, _ = full
    for folder in ("shard1", "shard2"):
        (tmp_path / folder).mkdir()
        shutil.copy(out / "perfect-a1_attention.json", tmp_path / folder)
    assert main(["rebuild", str(tmp_path / "shard1"), str(tmp_path / "shard2")]) == 2
    assert "same student and assignment" in capsys.readouterr().err
    assert not (tmp_path / "shard1" / "grades.csv").exists()


def test_two_submissions_of_one_student_are_an_error(server, tmp_path):
    folder = EXAMPLES / "perfect" / "a1_attention"
    status, _, stderr = run_grade(server, [str(folder), str(folder / "attention.ipynb"), "--out-dir", str(tmp_path)])
    assert status == 2
    assert "would both be perfect-a1_attention.json" in stderr
    assert not list(tmp_path.iterdir())  # refused before grading anything


WRITER = """
import sys
from pathlib import Path
from autograder.grades_csv import update_csv
path, who = Path(sys.argv[1]), sys.argv[2]
for i in range(int(sys.argv[3])):
    update_csv(path, [{"student": f"{who}-{i}", "assignment": "x", "submission": "s", "score": "1", "max_score": "1",
                       "needs_review": "", "diagnostics": ""}])
"""


def test_concurrent_csv_writers_lose_no_row(tmp_path):
    path, writers, each = tmp_path / "grades.csv", 4, 30
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(path), f"w{w}", str(each)], env=env)
             for w in range(writers)]
    assert all(p.wait() == 0 for p in procs)
    assert set(rows(path)) == {f"w{w}-{i}" for w in range(writers) for i in range(each)}
    assert not list(tmp_path.glob(".grades.csv.*"))  # no temporary file left


def test_stale_temporary_folders_are_removed(tmp_path):
    dead, alive, unknown = (tmp_path / f"grader-{name}" for name in ("dead", "alive", "unknown"))
    for folder in (dead, alive, unknown):
        folder.mkdir()
    (dead / "server.log").write_text("")
    claim_folder(dead).close()  # a grader that died: nobody holds its lock
    owner = claim_folder(alive)  # a running grader
    try:
        assert remove_stale_folders(tmp_path) == [dead]
        assert not dead.exists() and alive.exists() and unknown.exists()  # no lock file: not known to be ours
    finally:
        owner.close()


@pytest.mark.parametrize("count", [1, 2, 3, 5, 8])
def test_shards_are_disjoint_balanced_and_cover_everything(count):
    paths = [Path(f"submitted/student{i:02d}/a1_attention") for i in (7, 3, 11, 0, 5, 9, 1)]
    slices = [shard(list(reversed(paths)), f"{i}/{count}") for i in range(1, count + 1)]
    assert sorted(p for s in slices for p in s) == sorted(paths)  # every submission once
    assert max(map(len, slices)) - min(map(len, slices)) <= 1
    assert slices == [shard(paths, f"{i}/{count}") for i in range(1, count + 1)]  # whatever order the shell gave


@pytest.mark.parametrize("spec", ["0/3", "4/3", "3", "a/b", "1/0"])
def test_a_bad_shard_is_one_line_and_exit_2(server, spec):
    status, _, stderr = run_grade(server, [*SUBMISSIONS, "--shard", spec])
    assert status == 2 and "--shard" in stderr and len(stderr.strip().splitlines()) == 1


def test_sharded_runs_merged_by_rebuild_equal_one_run(full, server, tmp_path, capsys):
    """The cluster recipe of the README run locally: N shards into N folders, then rebuild."""
    out, stdout = full
    folders = [tmp_path / f"shard{i}" for i in (1, 2, 3, 4)]
    for i, folder in enumerate(folders, start=1):  # 4 shards of the examples; more shards than jobs is fine
        status, shard_stdout, _ = run_grade(server, [*SUBMISSIONS, "--shard", f"{i}/4", "--out-dir", str(folder),
                                                     "--quiet"])
        assert status == 0 and f"shard {i}/4:" in shard_stdout
    assert main(["rebuild", *map(str, folders), "--csv", str(tmp_path / "grades.csv")]) == 0
    assert (tmp_path / "grades.csv").read_text() == (out / "grades.csv").read_text()
    assert summary_line(capsys.readouterr().out) == summary_line(stdout)


def test_an_empty_shard_grades_nothing_and_succeeds(server, tmp_path):
    status, stdout, _ = run_grade(server, [*SUBMISSIONS[:2], "--shard", "3/3", "--out-dir", str(tmp_path / "out")])
    assert status == 0 and "shard 3/3: 0 of 2 submissions" in stdout
