"""Submissions that attack the grader or their neighbours through the worker (tests/catalog/adversarial_worker.py).

Each case is graded on the session's worker server, with the number of workers it started, the growth of the
grader's peak memory and the SysV IPC objects left on the machine recorded for its ``check``; a batch case is
graded next to the reference solution, two at once, as ``grade --jobs 2`` does.
"""

from __future__ import annotations

import ctypes
import errno
import json
import os
import random
import socket
import struct
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from autograder import wire
from autograder.report import gradescope, render
from autograder.runner import grade
from autograder.session import Session
from tests.catalog.adversarial import ASSIGNMENT
from tests.catalog.adversarial_worker import CASES, Seen
from tests.variants import solution_path, write_variant

pytestmark = pytest.mark.engine


class CountingServer:
    """The session's worker server, counting the workers one submission starts."""

    def __init__(self, server):
        self.server = server
        self.spawned = 0

    def spawn(self):
        self.spawned += 1
        return self.server.spawn()

    def __getattr__(self, name):
        return getattr(self.server, name)


def peak_rss() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


def reset_peak_rss() -> None:
    """Make VmHWM the current RSS (Linux 4.0+), so a case's peak is its own."""
    Path("/proc/self/clear_refs").write_text("5")


def sysv_keys(keys: set[int]) -> set[str]:
    """Which of ``keys`` name a SysV shared-memory segment, message queue or semaphore set on this machine."""
    found = set()
    for kind in ("shm", "msg", "sem"):
        try:
            lines = Path(f"/proc/sysvipc/{kind}").read_text().splitlines()[1:]
        except OSError:
            continue
        found |= {f"{kind} {line.split()[0]}" for line in lines if int(line.split()[0]) in keys}
    return found


def remove_sysv(key: int) -> None:
    """Clean up what a case left on a grader that does not isolate IPC (so a failed run does not leak)."""
    libc = ctypes.CDLL(None, use_errno=True)
    for get, ctl, args in ((libc.shmget, libc.shmctl, (key, 0, 0)), (libc.msgget, libc.msgctl, (key + 1, 0)),
                           (libc.semget, libc.semctl, (key + 2, 0, 0))):
        ident = get(*args)
        if ident >= 0:
            ctl(ident, 0, None) if ctl is not libc.semctl else ctl(ident, 0, 0)  # IPC_RMID


@pytest.fixture(scope="module")
def honest_layers(server) -> dict:
    session = Session(server, [{"index": 1, "grade_id": None, "source": "def ping():\n    return 1\n"}],
                      seed=0, device="cpu", trace=[], time_limit=60)
    try:
        session.call("ping")
        return dict(session.sandbox_layers)
    finally:
        session.close()


def observe(server, case, folder: Path, honest: dict) -> Seen:
    key = random.randrange(0x10000000, 0x7FFFFF00)
    cells = {gid: src.replace("__GRADER_PID__", str(os.getpid())).replace("__SERVER_PID__", str(server.process.pid))
                     .replace("__SHM_KEY__", str(key)) for gid, src in case.cells.items()}
    path = write_variant(ASSIGNMENT, cells, folder)
    counting = CountingServer(server)
    kwargs = {k: v for k, v in (("time_limit", case.time_limit), ("time_budget", case.time_budget)) if v}
    server.wait_ready()
    reset_peak_rss()
    before = peak_rss()
    started = time.monotonic()
    neighbour = None
    try:
        if case.batch:
            with ThreadPoolExecutor(max_workers=2) as pool:
                flood = pool.submit(grade, path, assignment=ASSIGNMENT, server=counting, strict=False, **kwargs)
                correct = pool.submit(grade, solution_path(ASSIGNMENT), assignment=ASSIGNMENT, server=server)
                report, neighbour = flood.result(), correct.result()
        else:
            # Lenient: these cases test containment, and their imports (ctypes, sys, ...) need review, which
            # strict grading would turn into a zero before the worker ever ran.
            report = grade(path, assignment=ASSIGNMENT, server=counting, strict=False, **kwargs)
        elapsed = time.monotonic() - started
        growth = peak_rss() - before
        left = sysv_keys({key, key + 1, key + 2})
    finally:
        remove_sysv(key)
    results_json = json.dumps(gradescope(report), indent=2)
    return Seen(report, render(report, color=False), results_json, elapsed, counting.spawned, growth, left,
                neighbour, honest)


def test_catalog_is_well_formed():
    names = [c.name for c in CASES]
    assert len(names) == len(set(names)) and len(CASES) >= 10


@pytest.mark.parametrize("case", [pytest.param(c, id=c.name) for c in CASES])
def test_worker_attack(server, honest_layers, tmp_path, case):
    seen = observe(server, case, tmp_path, honest_layers)
    case.check(seen)


# --- the same bounds, one level down -----------------------------------------------------------

def _bomb(header: bytes, tail: bytes = b"") -> bytes:
    payload = struct.pack("<I", len(header)) + header + tail
    return struct.pack("<Q", len(payload)) + payload


BOMBS = {  # built when a test runs, not when the module is collected
    "48 MiB of nesting": (lambda: _bomb(b"[" + b",".join([b"[" * 900 + b"]" * 900] * 27_000) + b"]"),
                          "exceeds the 1 MiB limit"),
    "300 000 values": (lambda: _bomb(b"[" + b"[]," * 300_000 + b"[]]"), "more than 100000 values"),
    "40 deep": (lambda: _bomb(b'{"a": ' + b"[" * 40 + b"]" * 40 + b"}"), "nested more than 32 deep"),
    "a million buffers": (lambda: _bomb(b"{}", struct.pack("<Q", 0) * 1_000_000), "more than 4096 buffers"),
}


def _send_all(sock, data: bytes) -> None:
    try:
        sock.sendall(data)
    except OSError:  # the reader refused the message and closed its end
        pass


@pytest.mark.parametrize("name", list(BOMBS))
def test_bomb_is_refused_within_bounded_memory(name):
    """wire.recv refuses each bomb, for its own reason, before building it (main parsed them all)."""
    build, reason = BOMBS[name]
    bomb = build()
    a, b = socket.socketpair()
    with ThreadPoolExecutor(max_workers=1) as sender:
        with a, b:
            sender.submit(_send_all, a, bomb)
            reset_peak_rss()
            before = peak_rss()
            with pytest.raises(wire.WireError, match=reason):
                wire.recv(b, time.monotonic() + 60)
            growth = peak_rss() - before
    assert growth < 64 * 2**20, f"refusing {name} cost {growth / 2**20:.0f} MiB"


def test_legit_replies_stay_within_the_bounds():
    """The largest legitimate kind of reply (a module's parameters and gradients) crosses; the bounds are wide."""
    import torch

    state = {f"layer{i}.weight": torch.randn(64, 64) for i in range(150)}
    buffers: list[bytes] = []
    header = {"ok": True, "result": wire.encode(state, buffers)}
    a, b = socket.socketpair()
    with a, b:
        sender = ThreadPoolExecutor(max_workers=1)
        sender.submit(wire.send, a, header, buffers)
        got, got_buffers = wire.recv(b, time.monotonic() + 60)
        sender.shutdown()
    decoded = wire.decode(got["result"], got_buffers)
    assert all(torch.equal(decoded[k].tensor, v) for k, v in state.items())


# --- IPC refused by seccomp even where the namespace would contain it ---------------------------

IPC_PROBE = '''\
import ctypes

_libc = ctypes.CDLL(None, use_errno=True)


def try_ipc():
    """errno of shmget, msgget, semget and mq_open (0 when one succeeded: then the object is removed again)."""
    calls = [(lambda: _libc.shmget(0, 4096, 0o1000 | 0o600), lambda i: _libc.shmctl(i, 0, None)),
             (lambda: _libc.msgget(0, 0o1000 | 0o600), lambda i: _libc.msgctl(i, 0, None)),
             (lambda: _libc.semget(0, 1, 0o1000 | 0o600), lambda i: _libc.semctl(i, 0, 0)),
             (lambda: _libc.mq_open(b"/probe", 0o100 | 2, 0o600, None), lambda i: _libc.mq_unlink(b"/probe"))]
    out = []
    for make, remove in calls:
        ctypes.set_errno(0)
        ident = make()
        out.append(0 if ident >= 0 else ctypes.get_errno())
        if ident >= 0:
            remove(ident)
    return out
'''


def test_seccomp_refuses_sysv_ipc_and_message_queues(server, honest_layers):
    if not honest_layers.get("no_new_processes", "").startswith("on"):
        pytest.skip(f"no seccomp layer here: {honest_layers.get('no_new_processes')}")
    session = Session(server, [{"index": 1, "grade_id": None, "source": IPC_PROBE}], seed=0, device="cpu",
                      trace=[], time_limit=20)
    try:
        assert session.call("try_ipc").value == [errno.EPERM] * 4
    finally:
        session.close()


PROC_PROBE = '''\
import os


def peek(pids):
    """How many other processes /proc lists, and what reading the given ones' command lines gives."""
    own = str(os.getpid())
    others = [p for p in os.listdir("/proc") if p.isdigit() and p != own]
    seen = []
    for pid in pids:
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                seen.append(f.read()[:40].decode(errors="replace"))
        except OSError as exc:
            seen.append(type(exc).__name__)
    return [len(others), seen]
'''


def test_root_worker_without_a_uid_sees_only_itself_in_proc():
    """The fallback when no uid block is free: root without capabilities. Its procfs's hidepid (with a group no
    process has) and Landlock's ptrace scoping still hide the grader, the server and pid 1."""
    if os.geteuid() != 0:
        pytest.skip("only a root grader has the fallback")
    from autograder.worker.pool import WorkerServer

    with WorkerServer() as server:
        if server.uids:
            server.uids.release()
            server.uids = None
        session = Session(server, [{"index": 1, "grade_id": None, "source": PROC_PROBE}], seed=0, device="cpu",
                          trace=[], time_limit=60)
        try:
            others, seen = session.call("peek", [os.getpid(), server.process.pid, 1]).value
            layers = session.sandbox_layers
        finally:
            session.close()
    if not layers.get("proc_private", "").startswith("on"):
        pytest.skip(f"no private /proc here: {layers.get('proc_private')}")
    assert layers["unprivileged_uid"].startswith("off"), layers
    assert others == 0 and seen == ["FileNotFoundError"] * 3, (others, seen)


def test_cli_time_budget_option(tmp_path):
    """`grade --time-budget` reaches the session: with a budget already spent, no test runs and each says why."""
    from autograder.cli import main

    out = tmp_path / "results.json"
    assert main(["grade", str(solution_path(ASSIGNMENT)), "--assignment", ASSIGNMENT, "--device", "cpu",
                 "--time-budget", "0.001", "--out", str(out), "--quiet"]) == 0
    tests = json.loads(out.read_text())["tests"]
    assert tests and all(t["score"] == 0 and "time budget of 0.001 s" in t["output"] for t in tests), tests[:2]
