"""The environment is never the student's fault: where the grader cannot sandbox student code as a grade requires
(``sandbox.missing_layers``), it refuses with exit status 3 and one line, or grades with the strongest layers left
when the instructor allows it (``--allow-weaker-sandbox``); a submission is never given a 0 for the machine.

Each test runs the real grader (``python -m autograder grade``) on the reference solution of a1 in a simulated
environment, named in its docstring:

- "no Landlock": a seccomp filter installed before the grader starts makes landlock_create_ruleset/add_rule/
  restrict_self fail with ENOSYS, as on a kernel built without Landlock; the grader, its worker server and every
  worker inherit it;
- "no CAP_SYS_ADMIN" / "Docker's default capabilities": ``setpriv`` removes capabilities from the bounding set
  before the grader starts, so neither the grader nor its workers can make namespaces (Docker's default
  capability list, https://docs.docker.com/engine/containers/run/#runtime-privilege-and-linux-capabilities);
- this machine's Python lives under /root (mode 700), so a worker's uid of its own needs the mount namespace that
  replaces /root by an open folder: without CAP_SYS_ADMIN the unprivileged-uid layer fails, as in a container
  whose Python other users cannot read.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from autograder.worker import sandbox
from autograder.worker.sandbox import PACKAGE_ROOT, landlock_abi, missing_layers, python_readable_by_others

pytestmark = pytest.mark.engine

# Runs the grader as `python -m autograder ARGS` after installing the seccomp filter; with EXHAUST_UIDS_AFTER=k,
# the grader's block of worker uids hands out k uids and then none (as when other workers hold them all).
GRADER = r'''
import ctypes, os, runpy, sys
from autograder.worker import sandbox

LD, JEQ, RET, ALLOW, ERRNO = 0x20, 0x15, 0x06, 0x7FFF0000, 0x00050000
arch = sandbox.AUDIT_ARCH[os.uname().machine]
landlock = (sandbox.SYS_CREATE_RULESET, sandbox.SYS_ADD_RULE, sandbox.SYS_RESTRICT_SELF)
prog = [(LD, 0, 0, 4), (JEQ, 0, 4, arch), (LD, 0, 0, 0)]  # another architecture: allowed
prog += [(JEQ, 3 - i, 0, nr) for i, nr in enumerate(landlock)]  # 444-446 on x86_64 and aarch64 alike
prog += [(RET, 0, 0, ALLOW), (RET, 0, 0, ERRNO | sandbox.ENOSYS)]
if os.environ.get("NO_LANDLOCK"):
    filters = (sandbox._Filter * len(prog))(*[sandbox._Filter(*ins) for ins in prog])
    libc = ctypes.CDLL(None, use_errno=True)
    assert libc.prctl(sandbox.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0
    assert libc.prctl(sandbox.PR_SET_SECCOMP, sandbox.SECCOMP_MODE_FILTER,
                      ctypes.byref(sandbox._Program(len(prog), filters)), 0, 0) == 0
    assert sandbox.landlock_abi() < 1
if os.environ.get("EXHAUST_UIDS_AFTER"):
    from autograder.worker import uids
    left = [int(os.environ["EXHAUST_UIDS_AFTER"])]
    take = uids.UidBlock.take
    def take_then_none(self):
        left[0] -= 1
        return take(self) if left[0] >= 0 else None
    uids.UidBlock.take = take_then_none
sys.argv = ["autograder", *sys.argv[1:]]
runpy.run_module("autograder", run_name="__main__")
'''

DOCKER_DEFAULT_CAPS = ("chown,dac_override,fowner,fsetid,kill,setgid,setuid,setpcap,net_bind_service,net_raw,"
                       "sys_chroot,mknod,audit_write,setfcap")
WITHOUT_SYS_ADMIN = ["setpriv", "--bounding-set=-sys_admin", "--inh-caps=-sys_admin"]
DOCKER_DEFAULT = ["setpriv", "--bounding-set=-all," + ",".join("+" + c for c in DOCKER_DEFAULT_CAPS.split(",")),
                  "--inh-caps=-all"]


def _needs_root_and_setpriv() -> None:
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("simulating a container needs root and setpriv (util-linux)")


@pytest.fixture
def submission(tmp_path) -> Path:
    folder = tmp_path / "submitted" / "alice" / "a1_attention"
    folder.mkdir(parents=True)
    shutil.copy(PACKAGE_ROOT / "solutions" / "a1_attention" / "attention.ipynb", folder)
    return folder


@pytest.fixture
def open_folder():
    """A folder every parent of which other users may enter (pytest's tmp_path lies in a folder only root may)."""
    folder = Path(tempfile.mkdtemp(dir="/tmp"))
    yield folder
    shutil.rmtree(folder)


def grade(tmp_path: Path, submission: Path, *flags: str, prefix=(), env=None) -> subprocess.CompletedProcess:
    """The real grader on ``submission``, results in tmp_path/results, after ``prefix`` (setpriv) and ``env``."""
    out = tmp_path / "results"
    command = [*prefix, sys.executable, "-c", GRADER, "grade", str(submission), "--out-dir", str(out),
               "--csv", str(out / "grades.csv"), "--quiet", *flags]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=tmp_path,
                          env={**os.environ, "PYTHONPATH": str(PACKAGE_ROOT), **(env or {})})


def results_of(tmp_path: Path) -> dict | None:
    found = list((tmp_path / "results").glob("*.json"))
    return json.loads(found[0].read_text()) if found else None


def test_no_landlock_no_sys_admin_refuses_with_status_3_or_grades_weaker_when_allowed(tmp_path, submission):
    """Simulates a Gradescope-like container on a kernel without Landlock: root, no CAP_SYS_ADMIN (so no
    namespaces, no course folders covered), Python unreadable to other users (so no uid of its own). Without
    permission: exit 3, one line naming the missing layers, their reasons and what to do, nothing written. With
    --allow-weaker-sandbox: a warning line, the perfect submission scores full, results.json records the layers,
    what was missing and the permission."""
    _needs_root_and_setpriv()
    if python_readable_by_others():
        pytest.skip("this Python is readable by other users: a worker gets a uid of its own without namespaces")
    refused = grade(tmp_path, submission, prefix=WITHOUT_SYS_ADMIN, env={"NO_LANDLOCK": "1"})
    assert refused.returncode == 3, refused.stderr
    lines = refused.stderr.strip().splitlines()
    assert len(lines) == 1, refused.stderr
    assert lines[0].startswith("error: cannot sandbox student code here: missing landlock (")
    assert "Landlock is not available in this kernel" in lines[0]
    for part in ("unprivileged_uid (other users cannot read this Python", "course_folders_hidden (no mount namespace",
                 "--cap-add SYS_ADMIN", "--allow-weaker-sandbox to grade with: session, "):
        assert part in lines[0]
    assert not (tmp_path / "results").exists()

    allowed = grade(tmp_path, submission, "--allow-weaker-sandbox", prefix=WITHOUT_SYS_ADMIN, env={"NO_LANDLOCK": "1"})
    assert allowed.returncode == 0, allowed.stderr
    warnings = [line for line in allowed.stderr.splitlines() if line.startswith("warning: ")]
    assert len(warnings) == 1 and "as uid 0 it can read every file" in warnings[0], allowed.stderr
    results = results_of(tmp_path)
    assert results["score"] == results["extra_data"]["max_score"] == 37
    extra = results["extra_data"]
    assert extra["sandbox_weaker_allowed"] is True
    assert extra["sandbox_missing"] == ["course_folders_hidden", "landlock", "unprivileged_uid"]
    assert extra["sandbox"]["capabilities_dropped"] == "on" and extra["sandbox"]["no_new_processes"].startswith("on")
    assert extra["sandbox"]["files_read_only"].startswith("on")  # uid 0 owns the grader's files: none is written
    assert extra["sandbox"]["namespaces"].startswith("off")
    assert "alice" in (tmp_path / "results" / "grades.csv").read_text()


def test_docker_default_capabilities_with_landlock_grade_normally(tmp_path, submission):
    """Simulates Docker's default capabilities (no CAP_SYS_ADMIN: no namespaces, no uid of its own where Python is
    unreadable) on a kernel with Landlock: Landlock alone meets the requirement, so the run grades with no warning."""
    _needs_root_and_setpriv()
    if landlock_abi() < 1:
        pytest.skip("this kernel has no Landlock")
    run = grade(tmp_path, submission, prefix=DOCKER_DEFAULT)
    assert run.returncode == 0 and "warning" not in run.stderr, run.stderr
    results = results_of(tmp_path)
    assert results["score"] == 37
    extra = results["extra_data"]
    assert extra["sandbox"]["landlock"].startswith("on") and extra["sandbox"]["namespaces"].startswith("off")
    assert extra["sandbox_missing"] == [] and extra["sandbox_weaker_allowed"] is False


def test_non_root_grader_without_landlock_refuses(open_folder):
    """Simulates a rootless grader (a JupyterHub pod, uid 65534) on a kernel without Landlock: its worker would run
    as the grader's user and read whatever it can, the hidden suites included, so the run is refused."""
    _needs_root_and_setpriv()
    if not python_readable_by_others():
        pytest.skip("uid 65534 cannot run this Python (it lives under a folder only root may enter, /root here)")
    tmp_path = open_folder  # uid 65534 must reach it: pytest's tmp_path lies in a folder only root may enter
    tmp_path.chmod(0o777)
    submission = tmp_path / "submitted" / "alice" / "a1_attention"
    submission.mkdir(parents=True)
    shutil.copy(PACKAGE_ROOT / "solutions" / "a1_attention" / "attention.ipynb", submission)
    run = grade(tmp_path, submission, prefix=["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"],
                env={"NO_LANDLOCK": "1", "TMPDIR": str(tmp_path)})
    assert run.returncode == 3, run.stderr
    assert "unprivileged_uid (the grader is not root" in run.stderr and results_of(tmp_path) is None


def test_a_worker_that_loses_its_layers_mid_run_costs_no_zero_and_exits_3(tmp_path, submission):
    """Simulates a root grader with namespaces but no Landlock (a kernel without it), whose block of worker uids
    is exhausted after the preflight (other workers holding every uid): the preflight's worker had a uid of its own
    and the course folders covered, so grading starts; the submission's worker reports root without Landlock in its
    hello. No results file, no grades.csv row, one "not graded: environment" line, exit 3."""
    _needs_root_and_setpriv()
    run = grade(tmp_path, submission, env={"NO_LANDLOCK": "1", "EXHAUST_UIDS_AFTER": "1"})
    # As root with namespaces the preflight's worker has a uid and covered folders: a refusal here is a bug (it was
    # one: spare workers forked before the preflight took the only uid).
    assert "cannot sandbox student code here" not in run.stderr, run.stderr
    assert run.returncode == 3, run.stderr
    assert "not graded: environment (missing landlock (" in run.stderr and "Landlock is not available" in run.stderr
    assert "unprivileged_uid (no block of worker uids was free" in run.stderr
    assert results_of(tmp_path) is None
    csv = tmp_path / "results" / "grades.csv"
    assert not csv.exists() or "alice" not in csv.read_text()
    # With no results file, `--resume` grades it again (tests/test_resume.py); not rerun here, to save a grader start.


def test_the_requirement_in_one_place():
    """``missing_layers`` from a hello: Landlock alone suffices; else a uid of its own and the course folders
    covered; never root without Landlock; a non-root grader without Landlock is missing the uid."""
    off = "off: test"
    assert missing_layers({"landlock": "on (ABI 7)", "unprivileged_uid": off}) == {}
    assert missing_layers({"landlock": off, "unprivileged_uid": "on (uid 60578)", "course_folders_hidden": "on"}) == {}
    assert set(missing_layers({"landlock": off, "unprivileged_uid": "on (uid 60578)",
                               "course_folders_hidden": off})) == {"landlock", "course_folders_hidden"}
    assert set(missing_layers({"landlock": off, "unprivileged_uid": off, "course_folders_hidden": "on"})) == {
        "landlock", "unprivileged_uid"}
    assert set(missing_layers({})) == {"landlock", "unprivileged_uid", "course_folders_hidden"}


def test_without_a_mount_namespace_closed_modes_keep_the_course_folders_from_a_workers_uid(open_folder, monkeypatch):
    """Simulates a course folder in a container without CAP_SYS_ADMIN: the hidden folders count as out of reach of a
    worker's uid only when other users can neither enter them (a folder they may enter but not list still opens
    test_softmax.py by name) nor read the hidden files."""
    tmp_path = open_folder
    (tmp_path / "solutions").mkdir()
    (tmp_path / "autograder" / "suites").mkdir(parents=True)
    (tmp_path / "gradebook.db").write_text("")
    for path, mode in ((tmp_path, 0o755), (tmp_path / "solutions", 0o700), (tmp_path / "autograder", 0o755),
                       (tmp_path / "autograder" / "suites", 0o711), (tmp_path / "gradebook.db", 0o600)):
        path.chmod(mode)
    monkeypatch.setattr(sandbox, "PACKAGE_ROOT", tmp_path)
    with pytest.raises(OSError, match=r"other users may read autograder/suites$"):
        sandbox._course_folders_closed("off: no mount namespace")
    (tmp_path / "autograder").chmod(0o750)
    assert sandbox._course_folders_closed("off: no mount namespace") == (
        "not readable by other users: solutions, autograder/suites, gradebook.db")


FORGED_REFUSAL = """
import autograder.wire as wire
_send = wire.send
def send(sock, header, buffers=()):
    if header.get("ok") is True and "cells" in header:  # the load reply, after this cell ran
        header = {"ok": False, "error": {"type": "SandboxError", "message": "the worker would run as root"}}
    return _send(sock, header, buffers)
wire.send = send
"""


def test_a_refusal_forged_by_student_code_is_no_environment_failure(server):
    """Simulates a submission that, on this machine's full sandbox, rewrites its worker's load reply into the
    runtime's sandbox refusal to dodge a 0: only the message a worker sends before any student code runs decides
    that the environment failed, so this one is the student's failure (the submission is graded, and scores 0)."""
    from autograder.session import Session, WorkerLost

    session = Session(server, [{"index": 0, "grade_id": None, "source": FORGED_REFUSAL}], seed=0, device="cpu",
                      trace=[], time_limit=30)
    try:
        with pytest.raises(WorkerLost, match="sent after the notebook's code ran, claims a sandbox refusal"):
            session.call("anything")
        assert session.environment_failure is None and missing_layers(session.sandbox_layers) == {}
    finally:
        session.close()


def test_a_budget_spent_by_the_student_is_no_environment_failure(server):
    """Simulates a submission that spends its time budget (tests that hang, each stopped at the test's time limit,
    leave a chosen remainder: 150 s is 15 time limits of 10 s) so that a fresh worker is forked with milliseconds
    left, where no spare is ready (the pytest engine keeps none; under ``--jobs`` another thread may have taken it).
    The worker's hello, sent before any student code runs, was read against the student's remaining budget: it
    timed out, and the submission became "not graded: environment" (no results, no CSV row, exit 3, a free regrade)
    instead of being graded. The hello is the machine's to send, so only its own timeout applies."""
    import time

    from autograder.session import Session, WorkerLost

    # A load that outlasts any budget left, so the outcome does not hang on how fast a load is.
    session = Session(server, [{"index": 0, "grade_id": None, "source": "import time\ntime.sleep(30)"}], seed=0,
                      device="cpu", trace=[], time_limit=30)
    try:
        session.budget_ends = time.monotonic() + 0.002  # the student left 2 ms of the budget
        with pytest.raises(WorkerLost, match="time budget"):
            session.call("anything")
        assert session.environment_failure is None, session.environment_failure
    finally:
        session.close()
