"""The worker's isolation layers hold against code that tries to get out.

Each probe runs inside a real worker and reports what happened as a string; a layer the
machine cannot provide is skipped with the reason the worker recorded.
"""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

import pytest

from autograder.session import Session, WorkerLost
from autograder.worker.sandbox import PACKAGE_ROOT, uid_per_worker_possible
from autograder.worker.uids import BLOCK_SIZE, FIRST_UID, N_BLOCKS

pytestmark = pytest.mark.engine

PROBES = f'''
import os, signal, socket, time

def read_hidden_suite():
    try:
        with open({str(PACKAGE_ROOT / "autograder" / "suites" / "a1_attention" / "test_softmax.py")!r}) as f:
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

def read_process(pid):
    found = []
    for name in ("environ", "mem", "maps"):
        try:
            with open("/proc/%d/%s" % (pid, name), "rb") as f:
                f.read(64)
            found.append(name)
        except OSError:
            pass
    return "read " + ", ".join(found) if found else "refused"

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

def identity():
    with open("/proc/self/status") as f:
        fields = dict(line.split(":", 1) for line in f.read().splitlines() if ":" in line)
    return dict(uid=int(fields["Uid"].split()[0]), effective=int(fields["CapEff"], 16),
                bounding=int(fields["CapBnd"], 16))

def import_something_new():
    import wave, xml.dom.minidom  # not imported by the server: read from the Python installation now
    return "imported"

def file_handle():
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    nr = 303 if os.uname().machine == "x86_64" else 264  # name_to_handle_at (x86_64, aarch64)
    handle, mount_id = ctypes.create_string_buffer(136), ctypes.c_int()
    ctypes.memmove(handle, (128).to_bytes(4, "little"), 4)  # handle_bytes
    if libc.syscall(nr, -100, b"/etc/hostname", handle, ctypes.byref(mount_id), 0) == 0:
        return "got a handle"
    return "refused: " + os.strerror(ctypes.get_errno())

def fill_the_disk(size_mib, files):
    written = 0
    try:
        for i in range(files):
            with open("filler-%d" % i, "wb") as f:
                f.write(b"x" * (size_mib * 2**20 // files))
            written += 1
    except OSError as exc:
        return "stopped after %d: %s" % (written, os.strerror(exc.errno))
    return "wrote %d" % written

def i386_getpid():
    """getpid through the 32-bit table (int 0x80): machine code in an executable page."""
    import ctypes, mmap
    code = bytes([0xB8, 20, 0, 0, 0, 0xCD, 0x80, 0xC3])  # mov eax, 20 (i386 getpid); int 0x80; ret
    page = mmap.mmap(-1, mmap.PAGESIZE, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
    page.write(code)
    address = ctypes.addressof(ctypes.c_char.from_buffer(page))
    return ctypes.CFUNCTYPE(ctypes.c_int)(address)()

def open_devices(paths):
    opened = []
    for path in paths:
        try:
            os.close(os.open(path, os.O_RDONLY))
            opened.append(path)
        except OSError:
            pass
    return opened

def shared_memory(gib):
    import mmap
    try:
        mmap.mmap(-1, int(gib * 2**30))  # shared and anonymous: RLIMIT_DATA does not count it
        return "mapped"
    except (OSError, MemoryError) as exc:
        return "refused: " + type(exc).__name__

def memory_file():
    try:
        os.memfd_create("outside-every-quota")
        return "created"
    except OSError as exc:
        return "refused: " + os.strerror(exc.errno)

def raise_limits():
    import resource
    raised = []
    for name in ("RLIMIT_AS", "RLIMIT_DATA", "RLIMIT_CPU", "RLIMIT_FSIZE", "RLIMIT_NPROC", "RLIMIT_NOFILE"):
        kind = getattr(resource, name)
        soft, hard = resource.getrlimit(kind)
        try:
            resource.setrlimit(kind, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
            raised.append(name)
        except (ValueError, OSError):
            try:
                if hard > soft:
                    resource.setrlimit(kind, (hard, hard))
                    raised.append(name + " to its hard limit")
            except (ValueError, OSError):
                pass
    return raised

def new_user_namespace():
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(0x10000000 | 0x00020000) == 0:  # CLONE_NEWUSER | CLONE_NEWNS
        return "unshared"
    return "refused: " + os.strerror(ctypes.get_errno())

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
    s = Session(server, [{"index": 1, "grade_id": None, "source": PROBES}],
                seed=0, device="cpu", trace=[], time_limit=20)
    yield s
    s.close()


def layer(session, name):
    session.call("write_inside")  # make sure a worker is loaded
    state = session.sandbox_layers.get(name, "off: not reported")
    if not state.startswith("on"):
        pytest.skip(f"layer {name} is {state}")


def test_worker_cannot_read_the_hidden_suite_or_the_solutions(session):
    layer(session, "landlock")
    assert (PACKAGE_ROOT / "autograder" / "suites" / "a1_attention" / "test_softmax.py").exists()  # a real target
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
    layer(session, "no_new_processes")  # its seccomp filter: signals reach the worker's own process only
    assert session.call("signal_pid", os.getpid()).value.startswith("refused")


def test_worker_cannot_read_the_graders_memory_or_environment(session):
    """/proc/<grader>/environ, mem and maps need ptrace rights: another uid, or Landlock's domain, denies them."""
    session.call("write_inside")
    if not (session.sandbox_layers.get("unprivileged_uid", "").startswith("on")
            or session.sandbox_layers.get("landlock", "").startswith("on")):
        pytest.skip("needs a uid of its own or Landlock")
    assert session.call("read_process", os.getpid()).value == "refused"
    assert session.call("read_process", session.server.process.pid).value == "refused"


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


def test_a_call_through_another_architecture_kills_the_worker(session):
    """int 0x80 reaches the i386 table, where seccomp's numbers mean other calls: it must not pass."""
    layer(session, "no_new_processes")
    if os.uname().machine != "x86_64":
        pytest.skip("i386 calls exist on x86_64 only")
    with pytest.raises(WorkerLost):
        session.call("i386_getpid")


def test_worker_opens_no_disk_or_other_raw_device(session):
    layer(session, "landlock")
    import stat

    devices = [str(p) for p in Path("/dev").iterdir()
               if stat.S_ISBLK(p.stat().st_mode) or p.name.startswith(("vcs", "tty", "mem", "kmsg", "port"))]
    if not devices:
        pytest.skip("no raw devices here")
    assert session.call("open_devices", devices).value == []
    assert session.call("open_devices", ["/dev/null", "/dev/urandom"]).value == ["/dev/null", "/dev/urandom"]


def test_worker_runs_as_a_uid_of_its_own_without_capabilities(session):
    """As root, the worker gets a uid from the grader's block and no capability at all."""
    if not uid_per_worker_possible():
        pytest.skip("the grader is not root, or Python is unreadable to others and Landlock is missing")
    session.call("identity")
    assert session.sandbox_layers["unprivileged_uid"].startswith("on")
    me = session.call("identity").value
    assert FIRST_UID <= me["uid"] < FIRST_UID + BLOCK_SIZE * N_BLOCKS
    assert me["effective"] == 0 and me["bounding"] == 0
    assert session.call("import_something_new").value == "imported"  # Python stays readable (unmasked if need be)


def test_worker_cannot_open_files_by_handle(session):
    layer(session, "no_new_processes")
    assert session.call("file_handle").value == "refused: Operation not permitted"


def test_worker_cannot_fill_the_disk(session):
    """128 MiB and 4096 files per worker, in a tmpfs that dies with it: neither more bytes nor more files fit."""
    if not _machine_allows_mount_namespaces():
        pytest.skip("no mount namespaces here (not root, or a container without CAP_SYS_ADMIN)")
    session.call("identity")
    assert session.sandbox_layers["disk_quota"].startswith("on")
    assert session.call("fill_the_disk", 160, 4).value == "stopped after 3: No space left on device"
    session.drop_worker()
    assert session.call("fill_the_disk", 1, 5000).value.endswith("No space left on device")
    assert not os.path.exists(os.path.join(session.server.tmp, f"worker-{session.worker.pid}", "filler-0"))


def test_worker_cannot_take_memory_around_its_limits(session):
    """Shared mappings and memory files escape RLIMIT_DATA: the address-space limit and seccomp stop them."""
    assert session.call("shared_memory", 9).value == "refused: OSError"
    assert session.call("shared_memory", 0.01).value == "mapped"
    layer(session, "no_new_processes")
    assert session.call("memory_file").value == "refused: Operation not permitted"


def test_worker_cannot_raise_its_resource_limits(session):
    """Soft limits are set equal to hard ones: the worker can lower them, never raise them."""
    session.call("identity")
    assert session.call("raise_limits").value == []


def test_worker_cannot_make_namespaces(session):
    layer(session, "no_new_processes")
    assert session.call("new_user_namespace").value == "refused: Operation not permitted"


def _machine_allows_mount_namespaces() -> bool:
    """Whether a child of this process may unshare a mount namespace: then the layer must be on."""
    import ctypes

    pid = os.fork()
    if pid == 0:
        os._exit(0 if ctypes.CDLL(None).unshare(0x00020000) == 0 else 1)
    return os.waitpid(pid, 0)[1] == 0


FALLBACK = """
import json, os, sys
from autograder.worker import sandbox

def refuse(*args):
    raise OSError("refused by the test")

sandbox._landlock = refuse   # a kernel without Landlock
os.setresuid = refuse        # a container whose user namespace maps no worker uid
out = os.dup(1)
layers = sandbox.enter(uid=60578)
with open("/proc/self/status") as f:
    fields = dict(line.split(":", 1) for line in f.read().splitlines() if ":" in line)
with open("/etc/shadow", "rb") as f:
    shadow = len(f.read())
solutions = os.listdir(sandbox.PACKAGE_ROOT / "solutions")
devices = []
for name in os.listdir("/dev"):
    try:
        os.close(os.open("/dev/" + name, os.O_RDONLY))
        devices.append(name)
    except OSError:
        pass
os.write(out, json.dumps({"layers": layers, "uid": os.getuid(), "effective": int(fields["CapEff"], 16),
                          "solutions": solutions, "shadow": shadow, "devices": sorted(devices),
                          "unsafe": sandbox.UNSAFE}).encode())
"""


def test_when_the_uid_and_landlock_fail_the_worker_keeps_no_capability_and_sees_no_course(tmp_path):
    """Fail closed: a uid drop that fails leaves root without capabilities (never root with them);
    as uid 0 still owns most files, with no Landlock the worker is marked unsafe and runs no student
    code; and the mount namespace still covers the course folders and the system's secrets."""
    if os.geteuid() != 0:
        pytest.skip("needs root")
    import json
    import subprocess
    import sys

    run = subprocess.run([sys.executable, "-c", FALLBACK], capture_output=True, text=True, timeout=60,
                         env={**os.environ, "TMPDIR": str(tmp_path)})
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout)
    assert result["layers"]["landlock"] == "off: refused by the test"
    assert result["layers"]["unprivileged_uid"].startswith("off")
    assert (result["uid"], result["effective"]) == (0, 0)
    assert result["unsafe"].startswith("the worker would run as root with no Landlock")  # the runtime refuses to load
    if _machine_allows_mount_namespaces():
        assert result["solutions"] == [] and result["shadow"] == 0
        assert set(result["devices"]) <= {
            "null", "zero", "full", "random", "urandom", "stdin", "stdout", "stderr", "fd",
        }


def test_two_graders_never_hand_out_the_same_worker_uid():
    """A reap kills every process of the worker's uid, so two worker servers (two graders) sharing
    a uid would kill each other's workers: each holds a block of its own."""
    if not uid_per_worker_possible():
        pytest.skip("workers get no uid of their own here")
    from autograder.worker.uids import UidBlock

    first, second = UidBlock(), UidBlock()
    try:
        assert first.uids and second.uids and not set(first.uids) & set(second.uids)
        taken = first.take()
        assert taken in first.uids and first.take() != taken
    finally:
        first.release()
        second.release()
    again = UidBlock()
    try:
        assert again.uids  # released blocks are free again
    finally:
        again.release()


def test_a_sandbox_refusal_in_a_load_reply_is_the_notebooks_own_doing():
    """A real refusal is read from the worker's hello, before student code runs (tests/test_environment.py); one in
    the load reply was sent after the notebook's code ran, so it is no environment failure."""
    from autograder.session import load_error

    line = load_error("cpu", {"type": "SandboxError", "message": "the worker would run as root with no Landlock"})
    assert line.startswith("the worker's load reply, sent after the notebook's code ran, claims a sandbox refusal")
    assert "(the worker would run as root with no Landlock)" in line


def test_a_worker_sharing_the_graders_uid_cannot_signal_it_or_change_its_limits():
    """Simulates a worker that shares the grader's uid with no Landlock signal scoping: a grader that is not root
    on a kernel with Landlock ABI < 6 (signals) or any ABI (prlimit64, which Landlock never scopes), or root
    without Landlock under --allow-weaker-sandbox. Measured before the fix, in the latter: a softmax calling
    os.kill(<grader>, SIGKILL) ended `grade` with status 137, no results and no CSV row for the class. The
    seccomp filter now refuses kill/tgkill/rt_*sigqueueinfo/prlimit64 aimed at any process but the worker's own,
    and tkill/pidfd_send_signal/setpriority, while the worker still signals itself (Python's own signal handling)."""
    import resource
    import signal
    import threading

    from autograder.worker import sandbox

    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the worker: same uid as this process (the grader)
        os.close(read)
        try:
            nice = os.getpriority(os.PRIO_PROCESS, os.getppid())  # set again: harmless if allowed
            sandbox._no_new_processes()
            outcome = []
            for call in (lambda: os.kill(os.getppid(), 0), lambda: os.kill(-1, 0),
                         lambda: os.killpg(os.getpgid(os.getppid()), 0),
                         lambda: resource.prlimit(os.getppid(), resource.RLIMIT_CORE),
                         lambda: signal.pidfd_send_signal(os.pidfd_open(os.getppid()), 0),
                         lambda: os.setpriority(os.PRIO_PROCESS, os.getppid(), nice)):
                try:
                    call()
                    outcome.append("allowed")
                except PermissionError:
                    outcome.append("refused")
            os.kill(os.getpid(), 0)
            signal.pthread_kill(threading.get_ident(), 0)
            resource.prlimit(os.getpid(), resource.RLIMIT_CORE)
            resource.prlimit(0, resource.RLIMIT_CORE)
            outcome.append("own process fine")
            os.write(write, " ".join(outcome).encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read) as f:
        said = f.read()
    os.waitpid(pid, 0)
    assert said == "refused " * 6 + "own process fine", said
