"""A grading process of its own: a batch's second, third, ... job, with its own interpreter and worker server.

Threads of one grader share one GIL: two grading threads on two cores wait for each other whenever both are in
Python at once (measured: the CPUs 77% busy with two threads, 95% with two processes). So ``grade --jobs N`` on a
batch large enough to repay the start-up (an import of torch here and in its worker server, about 5 CPU-seconds)
grades with the parent's thread and N - 1 of these processes. Each asks the parent for the next submission and
sends back its report, over a socket pair (pickle: both ends are the grader's own processes; no student code runs
in either). The parent's ``HelperJob`` reports whatever a process took and never returned as an internal error.

    python -m autograder.grading_process FD      # started by HelperJob only
"""

from __future__ import annotations

import os
import queue
import socket
import subprocess
import sys
from multiprocessing.connection import Connection
from typing import NoReturn, cast

from autograder.worker.sandbox import PACKAGE_ROOT
from autograder.worker.uids import N_BLOCKS

START_COST_IN_SUBMISSIONS = 8  # a process's start-up is worth it only with this many submissions (or more) for it
# Each process's worker server claims one of the machine's blocks of worker uids (``uids.N_BLOCKS``, shared by every
# grader running): at most half of them per grade, so that every server gets one and workers keep a uid of their own.
MAX_HELPERS = N_BLOCKS // 2 - 1


def helper_processes(jobs: int, submissions: int) -> int:
    """How many of ``jobs`` run as processes of their own for a batch of ``submissions``: none for a small batch, and
    at most ``MAX_HELPERS`` (the rest are threads of the first)."""
    return max(0, min(jobs - 1, submissions // START_COST_IN_SUBMISSIONS - 1, MAX_HELPERS))


class HelperJob:
    """The parent's side: start the process, hand it submissions from ``todo``, put its reports into ``results``."""

    def __init__(self, args, device: str):
        ours, theirs = socket.socketpair()
        path = os.pathsep.join(p for p in (str(PACKAGE_ROOT), os.environ.get("PYTHONPATH")) if p)
        self.process = subprocess.Popen([sys.executable, "-m", "autograder.grading_process", str(theirs.fileno())],
                                        pass_fds=[theirs.fileno()], stdin=subprocess.DEVNULL,
                                        stdout=subprocess.DEVNULL, env={**os.environ, "PYTHONPATH": path})
        theirs.close()
        self.conn = Connection(ours.detach())
        self.conn.send((args, device))

    def serve(self, todo: queue.Queue, results: queue.Queue, lost) -> None:
        """Until the process exits. ``lost(n, path, why)`` reports what it took and never returned."""
        taken: dict[int, object] = {}
        try:
            while True:
                try:
                    message = self.conn.recv()
                except (EOFError, OSError):
                    break
                if message == "next":
                    try:
                        item = todo.get_nowait()
                    except queue.Empty:
                        item = None
                    if item is not None:
                        taken[item[1]] = item[2]
                    self.conn.send(item)
                else:
                    taken.pop(message[0], None)
                    results.put(message)
        finally:
            self.conn.close()
            status = self.process.wait()
            for n, path in taken.items():
                lost(n, path, f"the grading process {self.process.pid} exited (status {status}) before reporting it")


class _Todo:
    """``todo.get_nowait`` as ``cli._session`` calls it, answered by the parent."""

    def __init__(self, conn: Connection):
        self.conn = conn

    def get_nowait(self):
        try:
            self.conn.send("next")
            item = self.conn.recv()
        except (EOFError, OSError):
            _parent_gone()
        if item is None:
            raise queue.Empty
        return item


class _Results:
    def __init__(self, conn: Connection):
        self.conn = conn

    def put(self, item) -> None:
        try:
            self.conn.send(item)
        except OSError:
            _parent_gone()


def _parent_gone() -> NoReturn:
    """The parent died (killed, or Ctrl-C): nobody will read a report. Exiting closes the worker server's control
    socket, which ends the server, and the workers' sockets, which ends them."""
    os._exit(1)


def main() -> None:
    conn = Connection(int(sys.argv[1]))
    args, device = conn.recv()
    import torch

    from autograder.cli import _needs_optimizers, _session
    from autograder.worker.pool import WorkerServer

    torch.set_num_threads(1)  # as in the parent: the grader's tensors are tiny
    with WorkerServer(optimizers=_needs_optimizers(args), spares=1,
                      allow_weaker=getattr(args, "allow_weaker_sandbox", False)) as server:
        _session(args, cast(queue.Queue, _Todo(conn)), server, device, cast(queue.Queue, _Results(conn)))
    conn.close()


if __name__ == "__main__":
    main()
