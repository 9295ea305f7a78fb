"""The worker's isolation layers hold against code that tries to get out.

Each probe runs inside a real worker and reports what happened as a string; a layer the
machine cannot provide is skipped with the reason the worker recorded.
"""

from __future__ import annotations

import os
import socket
import time

import pytest

from autograder.session import Session
from autograder.worker.sandbox import PACKAGE_ROOT

pytestmark = pytest.mark.engine

PROBES = f'''
import os, signal, socket, time

def read_hidden_suite():
    try:
        with open({str(PACKAGE_ROOT / "autograder" / "suites" / "a1_attention.py")!r}) as f:
            return "read " + str(len(f.read())) + " characters"
    except OSError as exc:
        return "refused: " + type(exc).__name__

def read_solution():
    try:
        return "listed " + str(os.listdir({str(PACKAGE_ROOT / "solutions")!r}))
    except OSError as exc:
        return "refused: " + type(exc).__name__

def connect(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
        return "connected"
    except OSError as exc:
        return "refused: " + type(exc).__name__

def signal_pid(pid):
    try:
        os.kill(pid, 0)
        return "signalled"
    except OSError as exc:
        return "refused: " + type(exc).__name__

def write_outside():
    try:
        with open("/tmp/escaped-from-the-worker", "w") as f:
            f.write("x")
        return "wrote"
    except OSError as exc:
        return "refused: " + type(exc).__name__

def write_inside():
    with open("scratch.txt", "w") as f:
        f.write("fine")
    return open("scratch.txt").read()

def leave_an_orphan():
    """Double fork; the grandchild leaves the session and ignores SIGTERM."""
    r, w = os.pipe()
    try:
        child = os.fork()
    except OSError as exc:
        return "refused: " + type(exc).__name__
    if child == 0:
        os.setsid()
        if os.fork() == 0:
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            os.write(w, str(os.getpid()).encode().ljust(16))
            while True:
                time.sleep(1)
        os._exit(0)
    return int(os.read(r, 16).decode())
'''


@pytest.fixture
def session(server):
    s = Session(server, [{"index": 1, "grade_id": None, "source": PROBES}], seed=0, device="cpu", trace=[], time_limit=20)
    yield s
    s.close()


def layer(session, name):
    session.call("write_inside")  # make sure a worker is loaded
    state = session.sandbox_layers.get(name, "off: not reported")
    if not state.startswith("on"):
        pytest.skip(f"layer {name} is {state}")


def test_worker_cannot_read_the_hidden_suite_or_the_solutions(session):
    layer(session, "landlock")
    assert session.call("read_hidden_suite").value.startswith("refused")
    assert session.call("read_solution").value.startswith("refused")


def test_worker_writes_only_in_its_private_folder(session):
    layer(session, "landlock")
    assert session.call("write_inside").value == "fine"
    assert session.call("write_outside").value.startswith("refused")
    assert not os.path.exists("/tmp/escaped-from-the-worker")


def test_worker_has_no_network(session):
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        assert session.call("connect", port).value.startswith("refused")


def test_worker_cannot_signal_the_grader(session):
    layer(session, "landlock")
    abi = int(session.sandbox_layers["landlock"].split("ABI ")[1].rstrip(")"))
    if abi < 6 and not session.sandbox_layers["unprivileged_uid"].startswith("on"):
        pytest.skip("needs Landlock ABI 6 (signal scoping) or a uid of its own")
    assert session.call("signal_pid", os.getpid()).value.startswith("refused")


def test_a_double_forked_orphan_ignoring_sigterm_cannot_outlive_its_worker(session):
    """Either the worker may not fork at all (seccomp), or the orphan dies with the worker (subreaper)."""
    orphan = session.call("leave_an_orphan").value
    if session.sandbox_layers.get("no_new_processes", "").startswith("on"):
        assert orphan == "refused: BlockingIOError"
        return
    assert isinstance(orphan, int) and _alive(orphan)
    session.drop_worker()
    deadline = time.monotonic() + 5
    while _alive(orphan) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not _alive(orphan), f"process {orphan} outlived its worker"


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False
