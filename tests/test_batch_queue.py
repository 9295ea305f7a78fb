"""The batch's shared queue (``cli._grade_in_sessions``): every submission is reported once, each thread runs one
pytest session per run of one assignment, and a session that breaks costs only the submission it was on. The
sessions are stand-ins here (no worker, no pytest), so these tests check the scheduling alone."""

from __future__ import annotations

import queue
import threading
from pathlib import Path
from types import SimpleNamespace

import pytest

from autograder import cli, runner

ARGS = SimpleNamespace(time_limit=None, time_budget=None, strict=True, assignment=None)


def run(groups: dict, jobs: int, session) -> dict:
    results: queue.Queue = queue.Queue()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(runner, "grade_many", session)
        cli._grade_in_sessions(ARGS, groups, server=None, device="cpu", jobs=jobs, results=results)
    out = {}
    while not results.empty():
        n, path, report, error = results.get()
        assert n not in out, f"submission {n} reported twice"
        out[n] = (report, error)
    return out


def groups_of(sizes: dict[str, int]) -> dict:
    groups, n = {}, 0
    for assignment, size in sizes.items():
        groups[assignment] = []
        for _ in range(size):
            n += 1
            groups[assignment].append((n, Path(f"s{n}/{assignment}")))
    return groups


@pytest.mark.parametrize("jobs", [1, 2, 3])
def test_every_submission_is_graded_once_in_a_session_of_its_assignment(jobs):
    groups = groups_of({"a1_attention": 5, "a2_masking": 1, "a4_residual_norm": 4})
    sessions, lock = [], threading.Lock()

    def session(batch, assignment, on_report, **_):
        graded = []
        for key, path in batch:
            assert path.name == assignment
            graded.append(key[0])
            on_report(key, f"report {key[0]}", None)
        with lock:
            sessions.append((assignment, graded))

    out = run(groups, jobs, session)
    assert sorted(out) == list(range(1, 11))
    assert all(report == f"report {n}" for n, (report, _) in out.items())
    # a thread starts a new session only when the assignment changes: at most one session per thread and assignment
    assert len([s for s in sessions if s[1]]) <= jobs * len(groups)


def test_a_broken_session_costs_only_the_submission_it_was_on():
    groups = groups_of({"a1_attention": 4, "a2_masking": 2})

    def session(batch, assignment, on_report, **_):
        for key, _ in batch:
            if key[0] == 2:
                raise RuntimeError("the session broke")
            on_report(key, "ok", None)

    out = run(groups, 1, session)
    assert sorted(out) == [1, 2, 3, 4, 5, 6]
    assert out[2][0].internal_errors and "internal error" in out[2][1]
    assert all(out[n] == ("ok", None) for n in (1, 3, 4, 5, 6))


def test_a_suite_that_breaks_before_grading_costs_its_assignment_only():
    groups = groups_of({"a1_attention": 2, "a2_masking": 2})

    def session(batch, assignment, on_report, **_):
        if assignment == "a1_attention":
            raise RuntimeError("the suite does not collect")
        for key, _ in batch:
            on_report(key, "ok", None)

    out = run(groups, 1, session)
    assert [n for n in out if out[n][1]] == [1, 2]
    assert out[3] == out[4] == ("ok", None)
