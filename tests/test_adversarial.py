"""Adversarial submissions and broken notebooks for a1_attention (tests/catalog/adversarial.py).

For every case: the grader finishes and reports; no process survives the grading; the grader, its worker
server and the repository are untouched; and the case's own check holds (no credit for what was faked,
the other exercises graded correctly).
"""

from __future__ import annotations

import json
import os
import re
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from autograder.runner import grade
from autograder.session import Session
from autograder.worker import sandbox
from autograder.worker.pool import WorkerServer
from tests.catalog.adversarial import (
    ASSIGNMENT,
    BROKEN,
    CASES,
    SUITE,
    WRONG_EVERYWHERE,
    Run,
    expect_one_line_diagnostics,
    table,
)
from tests.variants import REPO, solution_path, write_variant

pytestmark = pytest.mark.engine

PLANTED = ("results.json", "conftest.py", "torch.py")


# --- what the machine around the worker looks like -------------------------------------------

@pytest.fixture(scope="module")
def layers(server) -> dict[str, str]:
    """The sandbox layers a worker of this machine gets (a case that needs a missing one is skipped)."""
    session = Session(server, [{"index": 1, "grade_id": None, "source": "def ping():\n    return 1\n"}],
                      seed=0, device="cpu", trace=[], time_limit=60)
    try:
        assert session.call("ping").value == 1
        found = dict(session.sandbox_layers)
    finally:
        session.close()
    abi = re.search(r"ABI (\d+)", found.get("landlock", ""))
    scoped = (abi and int(abi.group(1)) >= 6) or found.get("unprivileged_uid", "").startswith("on")
    found["signal_scoping"] = "on" if scoped else "off: needs Landlock ABI 6 or a uid of its own"
    return found


def _stat(pid: int) -> list[str] | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].decode().split()
    except OSError:
        return None


def server_processes(server) -> set[int]:
    """Live processes that belong to the worker server, other than the server itself: its descendants
    (the server is a subreaper, so orphans land there) and anything carrying its private TMPDIR in the
    environment it was started with (an orphan that got away from the subreaper)."""
    root = server.process.pid
    marker = f"TMPDIR={server.tmp}".encode()
    parents, found = {}, set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == root:
            continue
        fields = _stat(int(entry))
        if fields is None or fields[0] in ("Z", "X"):
            continue
        parents[int(entry)] = int(fields[1])
        try:
            with open(f"/proc/{entry}/environ", "rb") as f:
                if marker in f.read().split(b"\0"):
                    found.add(int(entry))
        except OSError:
            pass
    for pid in parents:
        seen, p = set(), pid
        while p in parents and p not in seen:
            seen.add(p)
            p = parents[p]
            if p == root:
                found.add(pid)
                break
    return found


def left_behind(server, before: set[int]) -> list[str]:
    deadline = time.monotonic() + 5  # a killed worker's exit completes asynchronously
    while (left := server_processes(server) - before) and time.monotonic() < deadline:
        time.sleep(0.05)
    return _describe(left)


def _describe(pids) -> list[str]:
    out = []
    for pid in sorted(pids):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            out.append(f"{pid}: {cmdline[:80]}")
        except OSError:
            out.append(f"{pid}: gone")
    return out


def watched_paths(submission: Path, server) -> list[Path]:
    """Where a planted results.json, conftest.py or torch.py would do harm."""
    folders = [REPO, REPO / "tests", REPO / "solutions" / ASSIGNMENT, submission, Path(server.tmp)]
    return [folder / name for folder in folders for name in PLANTED]


def snapshot(paths: list[Path]) -> dict[Path, tuple | None]:
    def stat(p: Path):
        try:
            s = p.stat()
            return (s.st_size, s.st_mtime_ns)
        except OSError:
            return None

    return {p: stat(p) for p in paths}


def private_folders(server) -> set[Path]:
    return set(Path(server.tmp).glob("grader-worker-*"))


class Listeners:
    """A TCP and a UDP port and a unix socket the worker must not reach; records what arrives."""

    def __init__(self, folder: Path):
        for _ in range(20):  # a TCP and a UDP socket on one port number: retry if UDP's is taken
            self.tcp = socket.socket()
            self.tcp.bind(("127.0.0.1", 0))
            self.port = self.tcp.getsockname()[1]
            self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            try:
                self.udp.bind(("127.0.0.1", self.port))
                break
            except OSError:
                self.tcp.close()
                self.udp.close()
        self.tcp.listen()
        self.unix_path = str(folder / "listener.sock")
        self.unix = socket.socket(socket.AF_UNIX)
        self.unix.bind(self.unix_path)
        self.unix.listen()
        for s in (self.tcp, self.udp, self.unix):
            s.setblocking(False)

    def received(self) -> list[str]:
        got = []
        for name, s in (("tcp", self.tcp), ("unix", self.unix)):
            try:
                conn, _ = s.accept()
                got.append(f"{name} connection")
                conn.close()
            except BlockingIOError:
                pass
        try:
            data = self.udp.recv(4096)
            got.append(f"udp datagram {data[:16]!r}")
        except BlockingIOError:
            pass
        return got

    def close(self):
        for s in (self.tcp, self.udp, self.unix):
            s.close()


# --- adversarial submissions ------------------------------------------------------------------

# Cases that mostly wait (time limits) or copy memory: graded on a second worker server, in a background
# thread, while the other cases run, so the module stays within its time budget on two cores.
BACKGROUND = ("infinite_loop", "sleeps_ignoring_sigterm", "oversized_result")


@dataclass
class Observed:
    run: Run
    left_behind: list[str]       # processes of the worker server still alive after grading
    server_survived: bool
    changed: list[str]           # watched files outside the worker's folder that appeared or changed


def observe(server, case, folder: Path) -> Observed:
    """Grade ``case`` and record everything the test asserts afterwards."""
    listeners = Listeners(folder)
    cells = {gid: src.replace("__PORT__", str(listeners.port)).replace("__UNIX_SOCKET__", listeners.unix_path)
                     .replace("__SUBMISSION_DIR__", str(folder)) for gid, src in case.cells.items()}
    server.wait_ready()
    server_pid, restarts = server.process.pid, server.restarts
    before = server_processes(server)
    watched = watched_paths(folder, server)
    files_before = snapshot(watched)
    folders_before = private_folders(server)
    try:
        started = time.monotonic()
        path = write_variant(ASSIGNMENT, cells, folder)
        kwargs = {"time_limit": case.time_limit} if case.time_limit else {}
        # Lenient: these cases test containment, and strict grading would zero every exercise whose code needs
        # review (sys, os, gc, ...) before their checks could see what the sandbox did; the usage policy's own
        # verdicts are tests/test_adversarial_policy.py's.
        report = grade(path, assignment=ASSIGNMENT, server=server, strict=False, **kwargs)
        elapsed = time.monotonic() - started
        received = listeners.received()
    finally:
        listeners.close()
        changed = [p for p, s in snapshot(watched).items() if s != files_before[p]]
        for p in changed:  # never leave a planted file behind, whatever the verdict
            if files_before[p] is None and p.exists():
                p.unlink()
    left = left_behind(server, before)
    survived = server.process.poll() is None and server.process.pid == server_pid and server.restarts == restarts
    private = sorted({f.name for d in private_folders(server) - folders_before for f in d.iterdir()})
    return Observed(Run(report, elapsed, received, private), left, survived, sorted(map(str, changed)))


@pytest.fixture(scope="module")
def background(request, tmp_path_factory):
    """Start grading the selected BACKGROUND cases on a server of their own; yields name -> future."""
    selected = {item.callspec.params["case"].name for item in request.session.items
                if item.module is request.module and "case" in getattr(getattr(item, "callspec", None), "params", {})}
    names = [n for n in BACKGROUND if n in selected]
    if not names:
        yield {}
        return
    with WorkerServer() as server, ThreadPoolExecutor(max_workers=1) as pool:
        cases = {c.name: c for c in CASES}
        yield {n: pool.submit(observe, server, cases[n], tmp_path_factory.mktemp(n)) for n in names}


def test_process_census_sees_live_workers(server):
    """The leak check is only as good as its census: a live worker must show up in it, and go with its session."""
    before = server_processes(server)
    session = Session(server, [{"index": 1, "grade_id": None, "source": "def ping():\n    return 1\n"}],
                      seed=0, device="cpu", trace=[], time_limit=60)
    try:
        session.call("ping")
        assert session.worker.pid in server_processes(server) - before
    finally:
        session.close()
    assert not left_behind(server, before)


def _param(case):
    marks = [pytest.mark.xfail(strict=True, reason=case.weakness)] if case.weakness else []
    return pytest.param(case, id=case.name, marks=marks)


def test_catalog_is_well_formed():
    names = [c.name for c in CASES] + [b.name for b in BROKEN]
    assert len(names) == len(set(names))
    assert len(CASES) >= 30 and len(BROKEN) >= 9
    assert set(BACKGROUND) <= {c.name for c in CASES}
    for case in CASES:
        assert case.cells and set(case.cells) <= set(SUITE.exercises), case.name
        assert not (case.needs and case.name in BACKGROUND), "background cases run without a layer check"


@pytest.mark.parametrize("case", [_param(c) for c in CASES])
def test_adversarial_submission(server, layers, background, tmp_path, case):
    missing = [n for n in case.needs if not layers.get(n, "").startswith("on")]
    if missing:
        pytest.skip(f"unsafe without sandbox layer(s) {missing}: {[layers.get(n) for n in missing]}")
    if case.name == "allocates_8_gib":
        assert sandbox.LIMITS["RLIMIT_DATA"] < 8 * 2**30, "the 8 GiB case assumes a smaller data limit"
    if case.name in background:
        seen = background[case.name].result(timeout=600)
    else:
        seen = observe(server, case, tmp_path)
    report = seen.run.report
    # the grader finished and reported on every hidden test
    assert [t.name for t in report.tests] == [t.name for t in SUITE.tests], report.diagnostics
    # nothing survived the grading; the worker server, the grader and the repository are untouched
    assert not seen.left_behind, f"processes outlived the grading: {seen.left_behind}"
    assert seen.server_survived, "the worker server died or was restarted during grading"
    assert torch.get_default_dtype() == torch.float32 and torch.is_grad_enabled(), "the grader's torch state changed"
    assert not seen.changed, f"files outside the worker's folder appeared or changed: {seen.changed}"
    case.check(seen.run)


# --- broken notebooks -------------------------------------------------------------------------

@pytest.mark.parametrize("broken", [pytest.param(b, id=b.name, marks=[pytest.mark.xfail(strict=True, reason=b.weakness)]
                                                  if b.weakness else []) for b in BROKEN])
def test_broken_notebook(server, tmp_path, broken):
    nb = json.loads(solution_path(ASSIGNMENT).read_text())
    path = broken.build(nb, tmp_path)
    before = server_processes(server)
    report = grade(path, assignment=ASSIGNMENT, server=server)
    assert [t.name for t in report.tests] == [t.name for t in SUITE.tests], report.diagnostics
    expect_one_line_diagnostics(report)
    left = left_behind(server, before)
    assert not left, f"processes outlived the grading: {left}"
    broken.check(report)


# --- no leaks ---------------------------------------------------------------------------------

# A decimal or scientific literal (0.2781, -1.5e-03, 1e-10): what a printed tensor value looks like.
# Integers (shapes, indices, sizes) are not counted.
DECIMAL = re.compile(r"(?<![\w.])-?\d+(?:\.\d+(?:e[-+]?\d+)?|e[-+]?\d+)(?![\w.])", re.IGNORECASE)


def test_feedback_never_prints_hidden_inputs(grade_cells):
    report = grade_cells(ASSIGNMENT, WRONG_EVERYWHERE)
    failing = [t for t in report.tests if not t.passed]
    assert len(failing) >= 15, f"the wrong implementations should fail most tests:\n{table(report)}"
    for t in report.tests:
        numbers = DECIMAL.findall(t.output)
        assert len(numbers) <= 6, f"{t.name} prints {len(numbers)} values: {t.output!r}"
        assert len(t.output) <= 600, f"{t.name} prints {len(t.output)} characters: {t.output!r}"
        assert "tensor(" not in t.output, f"{t.name} prints a tensor: {t.output!r}"
    for d in report.diagnostics:
        assert len(DECIMAL.findall(d)) <= 6 and len(d) <= 600, d


