"""A batch's extra jobs as processes of their own (``autograder/grading_process.py``): they grade as a thread would,
every submission is reported once, and what a process took and never returned is an internal error, not lost."""

from __future__ import annotations

import queue
import signal
from pathlib import Path
from types import SimpleNamespace

import pytest

from autograder import cli, grading_process
from autograder.grading_process import HelperJob, helper_processes

pytestmark = pytest.mark.engine

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "submissions"
ARGS = SimpleNamespace(time_limit=None, time_budget=None, strict=True, assignment=None, allow_weaker_sandbox=False,
                       submissions=[EXAMPLES / "perfect" / "a1_attention"])


def test_processes_only_for_a_batch_that_repays_their_start():
    assert helper_processes(jobs=2, submissions=3) == 0  # make grade's three examples: threads
    assert helper_processes(jobs=2, submissions=15) == 0
    assert helper_processes(jobs=2, submissions=16) == 1
    assert helper_processes(jobs=4, submissions=1000) == 3
    assert helper_processes(jobs=16, submissions=1000) == 3  # each takes a block of worker uids: 8 on the machine
    assert helper_processes(jobs=1, submissions=1000) == 0


def graded(server, helpers: int) -> dict:
    names = ["perfect", "partly_wrong", "broken_json", "other_style"]
    groups = {"a1_attention": [(n, EXAMPLES / name / "a1_attention") for n, name in enumerate(names, start=1)]}
    results: queue.Queue = queue.Queue()
    cli._grade_in_sessions(ARGS, groups, server, "cpu", 2, results, helpers)
    out = {}
    while not results.empty():
        n, path, report, error = results.get()
        assert n not in out, f"submission {n} reported twice"
        out[n] = (path.parent.name, error, report and [(t.name, t.score) for t in report.tests])
    return out


def test_a_grading_process_grades_as_a_thread_does(server, monkeypatch):
    in_threads = graded(server, helpers=0)
    with monkeypatch.context() as patch:
        patch.setattr(cli, "_session", lambda *args: None)  # the parent's own job takes nothing: the process grades all
        in_a_process = graded(server, helpers=1)
    assert sorted(in_a_process) == [1, 2, 3, 4]
    assert in_a_process == in_threads


class KillingQueue(queue.Queue):
    """Hands out one submission, then kills the process that took it."""

    job: HelperJob

    def get_nowait(self):
        item = super().get_nowait()
        self.job.process.send_signal(signal.SIGKILL)
        return item


def test_what_a_dead_process_took_is_an_internal_error_never_lost(monkeypatch):
    todo, results = KillingQueue(), queue.Queue()
    todo.put(("a1_attention", 7, EXAMPLES / "perfect" / "a1_attention"))

    class Registered(HelperJob):
        def __init__(self, *args):
            super().__init__(*args)
            todo.job = self

    monkeypatch.setattr(grading_process, "HelperJob", Registered)
    cli._helper_job(ARGS, todo, None, "cpu", results)
    n, path, report, error = results.get_nowait()
    assert n == 7 and path.parent.name == "perfect" and "internal error" in error
    assert "exited (status -9)" in report.internal_errors[0], report.internal_errors
    assert "ask your instructor to regrade" in report.diagnostics[0]
    assert results.empty()


def test_a_process_whose_parent_is_gone_exits():
    job = HelperJob(ARGS, "cpu")
    job.conn.close()  # as when the parent is killed: its end of the pair closes
    assert job.process.wait(timeout=120) == 1
