"""Limits a freshly forked worker puts on itself before it runs any student code.

Layers, in the order applied:

1. its own session, so one ``killpg`` takes the worker and what it spawned;
2. when root, new mount, network and IPC namespaces (``/`` made private first, so no mount reaches
   the host): the network has only a loopback that is down; SysV IPC objects and POSIX message
   queues are the worker's own and die with it; a fresh ``/proc`` (``hidepid=invisible``) shows
   only the processes the worker may trace: its own (a uid of its own, or Landlock's domain, hides
   the grader, the worker server and other workers); the private folder (3) is a
   size-capped, non-executable tmpfs, so nothing the worker writes reaches the disk; the
   course's hidden folders and the system's secrets are covered by empty mounts (a second wall
   behind Landlock); and where a folder others may not enter hides Python (``/root``, mode
   700, holding a pyenv), it is replaced by an open one holding only Python, bound back in place;
3. a private, empty working directory (also ``HOME`` and ``TMPDIR``);
4. standard streams detached from the grader;
5. resource limits (CPU time, data size, file size, open files, processes) and one torch thread;
6. when the grader runs as root: an unprivileged uid of its own, with no capability, so it can
   neither signal nor read the grader, and the grader can kill every process of that uid
   afterwards; when that fails, root without any capability, and when even that fails the
   worker exits before running anything;
7. Landlock: read access only to the Python installation and system folders, write access only
   to its private directory and a few named devices (``/dev/null``, ``/dev/urandom``, a GPU's),
   no TCP, no signals or abstract sockets outside its own sandbox. The course repository
   (hidden suites, solutions, gradebook) is outside what it may read;
8. seccomp: threads may be created, processes and sockets may not (no fork bomb, no orphan,
   no unix socket by path, no UDP), nor file handles, io_uring, SysV IPC or POSIX message queues
   (refused even where the IPC namespace is missing); a call through another
   architecture's table (``int 0x80``, x32) kills the worker.

Each layer that could not be applied is recorded, not fatal: ``LAYERS`` goes to the grader in the
worker's first message, before any student code runs (``zygote._become_worker``), and from there into
``results.json``; nothing the worker says later about its sandbox is read. What a grade requires of the
layers is defined once, in ``missing_layers``: the grader refuses a worker that lacks it (``grade`` exits
with status 3) unless the instructor allowed weaker grading (``ALLOW_WEAKER``); then a root worker without
Landlock also gets a second seccomp filter that makes every file read-only (``_read_only_files``).
"""

from __future__ import annotations

import ctypes
import functools
import os
import resource
import struct
import sys
import tempfile
from pathlib import Path

GiB = 1024**3
PACKAGE_ROOT = Path(__file__).resolve().parents[2]

LIMITS = {
    "RLIMIT_CPU": 300,            # seconds of CPU for one worker; the grader's wall-clock limit is tighter
    "RLIMIT_DATA": 6 * GiB,       # heap and anonymous mappings: a runaway allocation fails, not the machine
    "RLIMIT_FSIZE": 64 * 2**20,   # no file bigger than 64 MiB
    "RLIMIT_NOFILE": 256,
    "RLIMIT_NPROC": 64,           # counted per uid: binding once the worker has a uid of its own
    "RLIMIT_CORE": 0,
}

LAYERS: dict[str, str] = {}
UNSAFE: str | None = None  # set when student code must not run here at all (the runtime refuses to load it)
# Set by the worker server from its command line (``zygote --allow-weaker-sandbox``), before it forks any worker:
# the instructor's permission to grade without the layers ``missing_layers`` requires. A worker inherits it and
# only reads it; student code runs in a forked worker, so it can never set it for the server or another worker.
ALLOW_WEAKER = False
SERVER_TMP = tempfile.gettempdir()  # the server's folder, holding every worker's private folder
_libc = ctypes.CDLL(None, use_errno=True)


def enter(uid: int | None = None) -> dict[str, str]:
    _layer("session", os.setsid)
    root = os.geteuid() == 0
    namespaces = root and _layer("namespaces", _enter_namespaces) is not None
    private = _layer("private_tmpdir", lambda: _private_dir(uid))
    if namespaces:
        _layer("disk_quota", lambda: _private_tmpfs(private, uid))
        _layer("course_folders_hidden", _hide_course_folders)
        _layer("devices_minimal", _minimal_dev)
        if not python_readable_by_others():
            _layer("python_unmasked", _unmask_python)
        _layer("proc_private", _private_proc)
    else:
        why = (f"off: no mount namespace ({LAYERS['namespaces'].removeprefix('off: ')})" if root else
               "off: needs a mount namespace, which only a root grader makes")
        LAYERS.setdefault("namespaces", why)
        for name in ("disk_quota", "course_folders_hidden", "devices_minimal", "proc_private"):
            LAYERS[name] = why
        if root:  # a worker with a uid of its own is kept out by the folders' modes instead, where they do
            _layer("course_folders_hidden", lambda: _course_folders_closed(why))
    _layer("stdio_detached", _detach_stdio)
    for name, value in LIMITS.items():
        _layer(name.lower(), lambda name=name, value=value: _limit(name, value))
    _layer("torch_threads_1", _one_thread)
    python_readable = python_readable_by_others() or LAYERS.get("python_unmasked", "").startswith("on")
    if uid is not None and python_readable:
        if _layer("unprivileged_uid", lambda: _drop_privileges(uid)) is None and not _try(_drop_capabilities):
            os._exit(70)  # fail closed: student code never runs as root with capabilities
    elif root:
        if _layer("capabilities_dropped", _drop_capabilities) is None and not _try(_drop_capabilities):
            os._exit(70)
        LAYERS["unprivileged_uid"] = ("off: no block of worker uids was free (other graders hold them all)"
                                      if python_readable else
                                      "off: other users cannot read this Python, and it could not be unmasked")
    else:
        LAYERS["unprivileged_uid"] = "off: the grader is not root, so the worker runs as the grader's user"
    landlocked = _layer("landlock", lambda: _landlock(private)) is not None
    _layer("no_new_processes", _no_new_processes)
    global UNSAFE
    missing = missing_layers(LAYERS)
    if os.geteuid() == 0 and not landlocked and ALLOW_WEAKER:
        # Root without Landlock, allowed by the instructor: uid 0 still owns the grader's files, so nothing is
        # written anywhere (the worker needs no file of its own to grade).
        _layer("files_read_only", _read_only_files)
    if os.geteuid() == 0 and not landlocked and not (
            ALLOW_WEAKER and _no_capabilities() and LAYERS.get("files_read_only", "").startswith("on")):
        # uid 0 owns nearly every file and sysctl, capabilities or not: only Landlock keeps it off them.
        UNSAFE = "the worker would run as root with no Landlock to confine it (" + LAYERS["unprivileged_uid"] + ")"
    elif missing and not ALLOW_WEAKER:
        UNSAFE = "the worker lacks " + describe_missing(missing)  # a second wall: the grader refuses first
    return LAYERS


# --- what a grade requires ----------------------------------------------------------------

def missing_layers(layers: dict[str, str]) -> dict[str, str]:
    """The one definition of what grading requires, from the layers a worker reported before any student
    code ran; returns {layer: its "off: ..." reason} for what is missing (empty: grade).

    Student code must be unable to read the course's hidden files and must not run as root:

    - Landlock on: whatever the uid, the worker reads only Python and the system folders, writes only its
      private folder, and ``enter`` dropped every capability of a root worker (or it exited); or
    - an unprivileged uid of its own AND the course's hidden folders out of its reach: the uid cannot write the
      grader's files or reach its memory, and the hidden folders are covered in its mount namespace (a root grader
      with CAP_SYS_ADMIN) or, without one, closed to other users by their modes (``_course_folders_closed``: in a
      container with Docker's default capabilities, ``chmod -R o-rwx`` on them is enough).

    Never root without Landlock (capabilities dropped or not, uid 0 owns the repository, the grader's code and
    every root process's memory): that case lacks the uid, so it is missing here too. A non-root grader without
    Landlock is also missing: its worker reads whatever the grader's user can, the hidden suites included.
    """
    def on(name: str) -> bool:
        return layers.get(name, "").startswith("on")

    if on("landlock") or (on("unprivileged_uid") and on("course_folders_hidden")):
        return {}
    return {name: layers.get(name, "off: not reported").removeprefix("off: ")
            for name in ("landlock", "unprivileged_uid", "course_folders_hidden") if not on(name)}


def describe_missing(missing: dict[str, str]) -> str:
    """``landlock (Landlock is not available in this kernel), unprivileged_uid (...)``: one line's worth."""
    return ", ".join(f"{name} ({why})" for name, why in missing.items())


def layers_on(layers: dict[str, str]) -> str:
    """The layers that are on, by name: what a weaker grade still gets."""
    return ", ".join(name for name, state in layers.items() if state.startswith("on")) or "none"


def _no_capabilities() -> bool:
    """Whether this process holds no capability at all (effective, permitted and bounding sets empty)."""
    with open("/proc/self/status") as f:
        fields = dict(line.split(":", 1) for line in f.read().splitlines() if ":" in line)
    return all(int(fields[k], 16) == 0 for k in ("CapEff", "CapPrm", "CapBnd"))


def uid_per_worker_possible() -> bool:
    """Whether a root grader can give workers a uid of their own (see layer 6)."""
    return os.geteuid() == 0 and (python_readable_by_others() or python_unmaskable())


@functools.cache
def python_readable_by_others() -> bool:
    """Whether another uid can read this Python (a pyenv under /root, mode 700, cannot)."""
    return not _masked_roots()


@functools.cache
def python_unmaskable() -> bool:
    """Whether the folders that hide Python (``/root``) can be replaced, in the worker's mount
    namespace, by open ones holding only Python: its own folders must be readable by others."""
    return all(os.stat(r).st_mode & 0o005 == 0o005 for roots in _masked_roots().values() for r in roots)


def _python_roots() -> list[str]:
    """The folders Python reads code from, without those inside another."""
    found = sorted({os.path.realpath(r) for r in (sys.prefix, sys.base_prefix, sys.exec_prefix,
                                                  *(p for p in sys.path if p)) if os.path.isdir(r)})
    return [r for r in found if not any(r != o and _within(r, o) for o in found)]


def _masked_roots() -> dict[str, list[str]]:
    """{the topmost folder others may not traverse: the Python roots below it}."""
    masked: dict[str, list[str]] = {}
    for root in _python_roots():
        path = Path(root)
        blocked = [str(f) for f in [*reversed(path.parents)] if not f.stat().st_mode & 0o001]
        if blocked:
            masked.setdefault(blocked[0], []).append(root)
    return masked


def _try(action) -> bool:
    try:
        action()
        return True
    except OSError:
        return False


def _layer(name: str, apply):
    try:
        result = apply()
        LAYERS[name] = f"on ({result})" if isinstance(result, (str, int)) and name != "private_tmpdir" else "on"
        return result
    except Exception as exc:  # a missing layer is a warning, reported to the grader
        LAYERS[name] = f"off: {exc}"
        return None


def _private_dir(uid: int | None) -> str:
    """``$TMPDIR/worker-<pid>``: the server deletes it by that name when it reaps the worker."""
    global SERVER_TMP
    SERVER_TMP = tempfile.gettempdir()
    path = os.path.join(SERVER_TMP, f"worker-{os.getpid()}")
    os.mkdir(path, 0o700)
    if uid is not None:
        os.chown(path, uid, uid)
    os.chdir(path)
    os.environ["HOME"] = os.environ["TMPDIR"] = os.environ["MPLCONFIGDIR"] = path
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = os.path.join(path, "inductor")
    tempfile.tempdir = path
    return path


def _unshare(flags: int) -> None:
    if _libc.unshare(flags) != 0:
        raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))


def _detach_stdio() -> None:
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    os.close(devnull)


def _limit(name: str, value: int) -> None:
    """Soft and hard limit alike: a process may raise its soft limit up to the hard one, never the hard one."""
    kind = getattr(resource, name)
    _, hard = resource.getrlimit(kind)
    if hard != resource.RLIM_INFINITY:
        value = min(value, hard)
    resource.setrlimit(kind, (value, value))


ADDRESS_SPACE = 8 * GiB  # CPU workers only: counts the shared mappings RLIMIT_DATA does not


def limit_address_space() -> None:
    """Called once the device is known: on the CPU, cap all mappings, shared ones included
    (``mmap(-1, n)`` is shared and escapes RLIMIT_DATA). CUDA reserves far more address space
    than it uses, so a GPU worker keeps only RLIMIT_DATA."""
    _limit("RLIMIT_AS", ADDRESS_SPACE)
    LAYERS["rlimit_as"] = "on"


def _one_thread() -> None:
    import torch

    torch.set_num_threads(1)


def _drop_privileges(uid: int) -> str:
    for cap in range(64):
        _libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0)  # no file capability can bring one back either
    os.setgroups([])
    os.setresgid(uid, uid, uid)
    os.setresuid(uid, uid, uid)  # from root to another uid: every capability goes
    if os.getresuid() != (uid, uid, uid):
        raise OSError(f"still uid {os.getresuid()}")
    return f"uid {uid}"


PR_CAPBSET_DROP, CAPABILITY_VERSION_3 = 24, 0x20080522


def _drop_capabilities() -> None:
    """Empty the bounding, permitted, effective and inheritable sets (uid stays 0)."""
    for cap in range(64):
        _libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0)  # EINVAL past the last capability: harmless
    _capset(0)


def _capset(mask: int) -> None:
    """Effective = permitted = ``mask`` (capabilities 0-31), inheritable empty."""
    header = struct.pack("<Ii", CAPABILITY_VERSION_3, 0)
    data = struct.pack("<6I", mask, mask, 0, 0, 0, 0)  # two {effective, permitted, inheritable} triples
    if _libc.capset(header, data) != 0:
        raise OSError(ctypes.get_errno(), "capset failed")


# --- mount namespace: a size-capped private folder, the course's folders covered ----------

CLONE_NEWNS, CLONE_NEWNET, CLONE_NEWIPC = 0x00020000, 0x40000000, 0x08000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_BIND, MS_REC, MS_PRIVATE = 1, 2, 4, 8, 1 << 12, 1 << 14, 1 << 18
TMPFS_SIZE, TMPFS_FILES = "128m", 4096  # per worker; files are also capped one by one (RLIMIT_FSIZE)
HIDDEN_FOLDERS = ("solutions", "tests", "examples", "autograder/suites", ".git", "results",
                  "submitted", "autograded", "feedback", "release", "source",
                  "autograder/known_bugs",  # built on the reference: each exercise's solution with one bug
                  "assignments")  # later releases' read-only cells solve earlier assignments (a5's give a1-a4)
HIDDEN_FILES = ("gradebook.db", "gradebook.db-journal", ".nbgrader.log",
                "autograder/reference.py")  # float64 solutions of every exercise; the grader reads it, no worker
SECRETS = ("/etc/shadow", "/etc/gshadow", "/etc/sudoers", "/etc/ssh")  # unreadable to a uid, not to root


def _enter_namespaces() -> str:
    """New mount, network and IPC namespaces; every mount made after this stays in the worker's."""
    _unshare(CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWIPC)
    _mount(None, "/", None, MS_REC | MS_PRIVATE)  # before any mount: none may propagate to the host
    return "mount, network, ipc"


PROC_ADMIN_GID = 60577  # no process has it: just below the workers' uids (see uids.py), in systemd's unused range


def _private_proc() -> str:
    """A procfs of the worker's own over /proc, with ``hidepid=invisible``: a process the worker may not
    trace has no folder there, so its command line (another student's path) and environment are out of
    reach. With a uid of its own that leaves the worker's processes; as root without capabilities, Landlock
    (layer 7) forbids tracing anything outside its domain, which hides the rest the same way. Since Linux
    5.8 each procfs mount has options of its own, so the host's /proc is untouched."""
    if tuple(int(n) for n in os.uname().release.split(".")[:2] if n.isdigit()) < (5, 8):
        raise OSError("Linux 5.8 or later is needed for a procfs with options of its own")
    # gid= names the group that sees every process; left out it is 0, which a root worker (the fallback) is in.
    _mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, f"hidepid=invisible,gid={PROC_ADMIN_GID}")
    return "hidepid=invisible"


def _mount(source: str | None, target: str, fstype: str | None, flags: int, options: str | None = None) -> None:
    def enc(v: str | None) -> bytes | None:
        return v.encode() if v is not None else None

    if _libc.mount(enc(source), enc(target), enc(fstype), ctypes.c_ulong(flags), enc(options)) != 0:
        raise OSError(ctypes.get_errno(), f"mount {target}: {os.strerror(ctypes.get_errno())}")


def _private_tmpfs(private: str, uid: int | None) -> str:
    """The private folder becomes a tmpfs of its own: at most TMPFS_SIZE and TMPFS_FILES files,
    nothing executable, gone with the worker's mount namespace."""
    owner = f",uid={uid},gid={uid}" if uid is not None else ""
    _mount("tmpfs", private, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC,
           f"size={TMPFS_SIZE},nr_inodes={TMPFS_FILES},mode=0700{owner}")
    os.chdir(private)  # the cwd was the folder underneath the mount
    return f"tmpfs {TMPFS_SIZE}, {TMPFS_FILES} files"


def _hide_course_folders() -> str:
    """Cover the course's hidden folders with empty read-only mounts, its files and the system's
    secrets with /dev/null: a second wall behind Landlock, and the only one where it is missing."""
    hidden = []
    for name in HIDDEN_FOLDERS:
        if (PACKAGE_ROOT / name).is_dir():
            _cover_folder(str(PACKAGE_ROOT / name))
            hidden.append(name)
    for name in HIDDEN_FILES:
        if (PACKAGE_ROOT / name).is_file():
            _mount("/dev/null", str(PACKAGE_ROOT / name), None, MS_BIND)
            hidden.append(name)
    for secret in SECRETS:
        if os.path.isdir(secret):
            _cover_folder(secret)
        elif os.path.isfile(secret):
            _mount("/dev/null", secret, None, MS_BIND)
    return ", ".join(hidden) or "none here"


def _course_folders_closed(why: str) -> str:
    """Without a mount namespace: whether other users (a worker's uid of its own) are kept out of every hidden
    folder and file by its mode or a parent's, e.g. after ``chmod -R o-rwx solutions tests autograder/suites
    autograder/known_bugs autograder/reference.py assignments``."""
    present = [PACKAGE_ROOT / n for n in (*HIDDEN_FOLDERS, *HIDDEN_FILES) if (PACKAGE_ROOT / n).exists()]
    open_to_others = [str(p.relative_to(PACKAGE_ROOT)) for p in present if not _closed_to_others(p)]
    if open_to_others:
        raise OSError(f"{why.removeprefix('off: ')}, and other users may read {', '.join(open_to_others)}")
    return "not readable by other users: " + ", ".join(str(p.relative_to(PACKAGE_ROOT)) for p in present)


def _closed_to_others(path: Path) -> bool:
    """A folder on the way (the folder itself included) that others may not enter, or a file they may not read.
    (A folder they may enter but not list still opens its files by name: test_softmax.py is easy to guess.)
    Access control lists are not read: a folder that uses them to let others in is not seen here."""
    on_the_way = [*reversed(path.parents)] + ([path] if path.is_dir() else [])
    return any(not f.stat().st_mode & 0o001 for f in on_the_way) or (
        not path.is_dir() and not path.stat().st_mode & 0o004)


def _minimal_dev() -> str:
    """A /dev holding only the harmless devices and a GPU's: no disk, loop device or console can
    be opened, whatever Landlock and the uid do (root without capabilities still owns them)."""
    devices = _device_files()
    handles = {d: os.open(d, os.O_PATH | os.O_CLOEXEC) for d in devices}
    try:
        _mount("tmpfs", "/dev", "tmpfs", MS_NOSUID | MS_NOEXEC, "size=64k,nr_inodes=64,mode=0755")
        for device, fd in handles.items():
            os.makedirs(os.path.dirname(device), mode=0o755, exist_ok=True)  # /dev/nvidia-caps on MIG GPUs
            open(device, "w").close()  # a mount point for the real device node
            _mount(f"/proc/self/fd/{fd}", device, None, MS_BIND)
    finally:
        for fd in handles.values():
            os.close(fd)
    for n, name in enumerate(("stdin", "stdout", "stderr")):
        os.symlink(f"/proc/self/fd/{n}", f"/dev/{name}")
    os.symlink("/proc/self/fd", "/dev/fd")
    return ", ".join(os.path.basename(d) for d in devices)


def _cover_folder(folder: str) -> None:
    _mount("tmpfs", folder, "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, "size=4k,nr_inodes=2")


def _unmask_python() -> str:
    """Where a folder others may not enter hides Python (``/root``, mode 700, holding a pyenv),
    replace that folder by an open tmpfs that holds only Python's folders, bound back in place,
    so a worker with a uid of its own can import from them and sees nothing else there."""
    masked = _masked_roots()
    if not python_unmaskable():
        raise OSError("Python's own folders are not readable by others")
    for blocked, roots in masked.items():
        handles = {root: os.open(root, os.O_PATH | os.O_CLOEXEC) for root in roots}
        try:
            _mount("tmpfs", blocked, "tmpfs", MS_NOSUID | MS_NODEV, "size=64k,nr_inodes=64,mode=0755")
            for root, fd in handles.items():
                _make_open_folders(blocked, root)
                _mount(f"/proc/self/fd/{fd}", root, None, MS_BIND | MS_REC)
        finally:
            for fd in handles.values():
                os.close(fd)
    return ", ".join(masked)


def _make_open_folders(top: str, path: str) -> None:
    """Create ``path`` below ``top`` (a fresh tmpfs), every folder on the way mode 755."""
    for folder in [*reversed(Path(path).parents), Path(path)]:
        if _within(str(folder), top) and str(folder) != top and not folder.exists():
            folder.mkdir()
            folder.chmod(0o755)


# --- seccomp: threads yes, new processes no ----------------------------------------------

AUDIT_ARCH = {"x86_64": 0xC000003E, "aarch64": 0xC00000B7}
EAGAIN, EPERM, ENOSYS = 11, 1, 38
# Refused calls and their errno: those that make a process (fork and vfork on x86_64; clone
# without CLONE_THREAD is tested apart), new sockets of any family (unix sockets by path, UDP
# without a network namespace), file handles (open_by_handle_at reaches files by inode number,
# around every path rule), and clone3, refused as "not implemented" so the C library falls back
# to clone for threads; memfd_create, whose memory no limit counts.
REFUSED = {"x86_64": {57: EAGAIN, 58: EAGAIN, 41: EAGAIN, 53: EAGAIN, 303: EPERM, 304: EPERM, 319: EPERM, 435: ENOSYS},
           "aarch64": {198: EAGAIN, 199: EAGAIN, 264: EPERM, 265: EPERM, 279: EPERM, 435: ENOSYS}}
IO_URING = {425: EPERM, 426: EPERM, 427: EPERM}  # same numbers everywhere: it can open sockets without socket()
# Kernel surface no grading needs: user namespaces (unshare, setns), keyrings, bpf, perf events,
# userfaultfd, ptrace and process_vm_readv/writev.
KERNEL_SURFACE = {"x86_64": dict.fromkeys((272, 308, 248, 249, 250, 321, 298, 323, 101, 310, 311), EPERM),
                  "aarch64": dict.fromkeys((97, 268, 217, 218, 219, 280, 241, 282, 117, 270, 271), EPERM)}
# SysV shared memory, semaphores and message queues, and POSIX message queues: objects that outlive the
# process and, without an IPC namespace, are shared with every process on the machine.
IPC = {"x86_64": dict.fromkeys((29, 30, 31, 67, 64, 65, 66, 220, 68, 69, 70, 71, *range(240, 246)), EPERM),
       "aarch64": dict.fromkeys(range(180, 198), EPERM)}
X32_BIT = 0x40000000  # x86_64's x32 calls: another table, killed like another architecture
CLONE = {"x86_64": 56, "aarch64": 220}
CLONE_THREAD = 0x10000
PR_SET_SECCOMP, SECCOMP_MODE_FILTER = 22, 2


class _Filter(ctypes.Structure):
    _fields_ = [("code", ctypes.c_ushort), ("jt", ctypes.c_ubyte), ("jf", ctypes.c_ubyte), ("k", ctypes.c_uint)]


class _Program(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.POINTER(_Filter))]


def _no_new_processes() -> str:
    """A seccomp filter: fork/vfork/clone of a process fail with EAGAIN (a fork bomb stops at once,
    no orphan can exist), and so does opening any new socket; file handles are refused; clone3 says
    ENOSYS, so the C library creates threads with clone. The worker's own socket to the grader was
    opened before."""
    machine = os.uname().machine
    if machine not in AUDIT_ARCH:
        raise OSError(f"no seccomp filter for {machine}")
    refused = {**REFUSED[machine], **IO_URING, **KERNEL_SURFACE[machine], **IPC[machine]}
    prog = _filter_program(AUDIT_ARCH[machine], refused, CLONE[machine],
                           kill_from=X32_BIT if machine == "x86_64" else None)
    _install(prog)
    _install(_own_process_program(AUDIT_ARCH[machine], OWN_PROCESS_CALLS[machine], os.getpid()))
    return ("threads only; no new sockets, namespaces, file handles, io_uring, SysV IPC, message queues, bpf, ptrace "
            "or other-architecture calls; signals and resource limits for its own process only")


# Calls that act on another process by its pid, and need only the same uid: a worker that shares the grader's uid
# (a grader that is not root, or root without Landlock under --allow-weaker-sandbox) could SIGKILL the grader (a
# class run dies, the submission gets no results and never a 0), or set its RLIMIT_FSIZE/NOFILE to 0 (prlimit64).
# Landlock scopes signals only from ABI 6 and prlimit64 never; the same holds for another student's spare worker
# when all workers share the grader's uid. (pid or 0: kill, prlimit64; own pid: tgkill, rt_sigqueueinfo,
# rt_tgsigqueueinfo; never: tkill, pidfd_send_signal, setpriority, whose target is not its first argument.)
OWN_PROCESS_CALLS = {"x86_64": ((62, 302), (234, 129, 297), (200, 424, 141)),
                     "aarch64": ((129, 261), (131, 138, 240), (130, 424, 140))}


def _own_process_program(arch: int, calls: tuple[tuple[int, ...], ...], pid: int) -> list[tuple[int, int, int, int]]:
    """Classic BPF: the calls of ``calls`` (see OWN_PROCESS_CALLS) fail with EPERM unless their first argument (low
    32 bits: a pid_t) is this process (``pid``; for the first group also 0 or -pid, its own process group, as the
    worker leads a session of its own); anything else is allowed (another architecture is the first filter's)."""
    LD, JEQ, RET = 0x20, 0x15, 0x06
    ALLOW, ERRNO = 0x7FFF0000, 0x00050000
    own_or_zero, own, never = calls
    tests = [*own_or_zero, *own, *never]
    # layout: 3 header, one test per call, ALLOW, block A (own pid, 0 or -pid: 4), block B (own pid: 2), ALLOW,
    # EPERM (classic BPF jumps forward only)
    allow = 3 + len(tests)
    block_a, block_b, allow_2, eperm = allow + 1, allow + 5, allow + 7, allow + 8
    prog = [(LD, 0, 0, 4), (JEQ, 0, allow - 2, arch), (LD, 0, 0, 0)]
    for nr in tests:
        target = block_a if nr in own_or_zero else block_b if nr in own else eperm
        prog.append((JEQ, target - len(prog) - 1, 0, nr))
    prog.append((RET, 0, 0, ALLOW))
    prog.append((LD, 0, 0, 16))  # block A: the low 32 bits of args[0]
    for value in (0, pid):
        prog.append((JEQ, allow_2 - len(prog) - 1, 0, value))
    prog.append((JEQ, allow_2 - len(prog) - 1, eperm - len(prog) - 1, -pid & 0xFFFFFFFF))
    prog.append((LD, 0, 0, 16))  # block B
    prog.append((JEQ, allow_2 - len(prog) - 1, eperm - len(prog) - 1, pid))
    prog += [(RET, 0, 0, ALLOW), (RET, 0, 0, ERRNO | EPERM)]
    assert len(prog) == eperm + 1 and prog[block_a] == prog[block_b] == (LD, 0, 0, 16)
    return prog


def _filter_program(arch: int, refused: dict[int, int], clone: int,
                    kill_from: int | None = None) -> list[tuple[int, int, int, int]]:
    """Classic BPF: a call of another architecture (i386 through ``int 0x80``, say), or numbered
    ``kill_from`` or above, kills the worker; a listed call returns its errno; clone returns
    EAGAIN unless its flags hold CLONE_THREAD; anything else is allowed. Jumps count the
    instructions they skip, so each test jumps to a return statement placed after all of them."""
    LD, JEQ, JGE, JSET, RET = 0x20, 0x15, 0x35, 0x45, 0x06
    ALLOW, KILL, ERRNO = 0x7FFF0000, 0x80000000, 0x00050000
    errnos = sorted(set(refused.values()) | {EAGAIN})
    n_body = 3 + (kill_from is not None) + len(refused) + 3
    ret_at: dict[str | int, int] = {"allow": n_body, "kill": n_body + 1,
                                    **{e: n_body + 2 + i for i, e in enumerate(errnos)}}
    prog = [(LD, 0, 0, 4)]  # seccomp_data.arch
    prog.append((JEQ, 0, ret_at["kill"] - len(prog) - 1, arch))
    prog.append((LD, 0, 0, 0))  # seccomp_data.nr
    if kill_from is not None:
        prog.append((JGE, ret_at["kill"] - len(prog) - 1, 0, kill_from))
    for nr, errno in refused.items():
        prog.append((JEQ, ret_at[errno] - len(prog) - 1, 0, nr))
    prog.append((JEQ, 0, ret_at["allow"] - len(prog) - 1, clone))
    prog.append((LD, 0, 0, 16))  # low 32 bits of args[0] (little endian): the clone flags
    prog.append((JSET, ret_at["allow"] - len(prog) - 1, ret_at[EAGAIN] - len(prog) - 1, CLONE_THREAD))
    prog += [(RET, 0, 0, ALLOW), (RET, 0, 0, KILL)]
    prog += [(RET, 0, 0, ERRNO | errno) for errno in errnos]
    return prog


# What changes a file or folder, on x86_64: creat, truncate, rename(at,at2), unlink(at), rmdir, mkdir(at), link(at),
# symlink(at), chmod, fchmod(at,at2), chown, fchown, lchown, fchownat, mknod(at), the six *xattr that set or remove,
# utime(s), utimensat, futimesat; openat2 says ENOSYS (its flags sit in a struct), so the C library uses openat.
FILE_CHANGES = (85, 76, 82, 264, 316, 87, 263, 84, 83, 258, 86, 265, 88, 266, 90, 91, 268, 452, 92, 93, 94, 260,
                133, 259, 188, 189, 190, 197, 198, 199, 132, 235, 280, 261)
OPEN, OPENAT, OPENAT2 = 2, 257, 437
OPEN_FOR_WRITING = 0o1 | 0o2 | 0o100 | 0o1000 | 0o2000  # O_WRONLY, O_RDWR, O_CREAT, O_TRUNC, O_APPEND
EACCES = 13


def _read_only_files() -> str:
    """A second seccomp filter for a root worker without Landlock (the weaker sandbox): no file is created,
    opened for writing, renamed, deleted or changed, anywhere: uid 0 owns the grader's code, the course and
    /proc/<pid>/mem of every root process. Reading stays possible (the reason this sandbox is weaker)."""
    if os.uname().machine != "x86_64":
        raise OSError("the read-only filter is written for x86_64 only")
    LD, JEQ, JSET, RET = 0x20, 0x15, 0x45, 0x06
    ALLOW, ERRNO = 0x7FFF0000, 0x00050000
    n = 3 + len(FILE_CHANGES) + 3 + 4  # the tests, then ALLOW at n, EACCES at n + 1, ENOSYS at n + 2
    prog = [(LD, 0, 0, 4), (JEQ, 0, n - 2, AUDIT_ARCH["x86_64"]), (LD, 0, 0, 0)]
    for nr in FILE_CHANGES:
        prog.append((JEQ, n + 1 - len(prog) - 1, 0, nr))
    prog.append((JEQ, n + 2 - len(prog) - 1, 0, OPENAT2))
    prog.append((JEQ, 1, 0, OPEN))  # to its flags: args[1]
    prog.append((JEQ, 2, n - len(prog) - 1, OPENAT))  # to its flags: args[2]; anything else: allowed
    prog.append((LD, 0, 0, 24))
    prog.append((JSET, n + 1 - len(prog) - 1, n - len(prog) - 1, OPEN_FOR_WRITING))
    prog.append((LD, 0, 0, 32))
    prog.append((JSET, n + 1 - len(prog) - 1, n - len(prog) - 1, OPEN_FOR_WRITING))
    prog += [(RET, 0, 0, ALLOW), (RET, 0, 0, ERRNO | EACCES), (RET, 0, 0, ERRNO | ENOSYS)]
    assert len(prog) == n + 3
    _install(prog)
    return "no file opened for writing, created, renamed, deleted or changed"


def _install(prog: list[tuple[int, int, int, int]]) -> None:
    filters = (_Filter * len(prog))(*[_Filter(*ins) for ins in prog])
    if _libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(NO_NEW_PRIVS) failed")
    if _libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(_Program(len(prog), filters)), 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "seccomp filter refused")


# --- Landlock (Linux >= 5.13), through raw system calls ----------------------------------

SYS_CREATE_RULESET, SYS_ADD_RULE, SYS_RESTRICT_SELF = 444, 445, 446
PR_SET_NO_NEW_PRIVS = 38
READ = (1 << 0) | (1 << 2) | (1 << 3)          # execute, read file, read dir
READ_FILE = 1 << 2
DEVICES = ("/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom")
WRITE_FILE, IOCTL_DEV = 1 << 1, 1 << 15
# Rights by ABI version: 1 has bits 0-12, 2 adds refer (13), 3 truncate (14), 5 ioctl on devices (15).
FS_RIGHTS = {1: (1 << 13) - 1, 2: (1 << 14) - 1, 3: (1 << 15) - 1, 4: (1 << 15) - 1}
READ_ROOTS = ("/usr", "/lib", "/lib64", "/lib32", "/bin", "/sbin", "/etc", "/opt", "/proc", "/sys")


def landlock_abi() -> int:
    """The kernel's Landlock ABI version; 0 or less when Landlock is missing or disabled."""
    return _libc.syscall(SYS_CREATE_RULESET, None, 0, 1)  # LANDLOCK_CREATE_RULESET_VERSION


def _landlock(private: str | None) -> str:
    abi = landlock_abi()
    if abi < 1:
        raise OSError(ctypes.get_errno(), "Landlock is not available in this kernel")
    fs = FS_RIGHTS.get(abi, (1 << 16) - 1)
    net = 0b11 if abi >= 4 else 0        # bind and connect TCP: handled, and never allowed
    scoped = 0b11 if abi >= 6 else 0     # no abstract unix sockets or signals outside the sandbox
    if abi >= 6:
        attr = struct.pack("<QQQ", fs, net, scoped)
    elif abi >= 4:
        attr = struct.pack("<QQ", fs, net)
    else:
        attr = struct.pack("<Q", fs)
    ruleset = _libc.syscall(SYS_CREATE_RULESET, attr, len(attr), 0)
    if ruleset < 0:
        raise OSError(ctypes.get_errno(), "landlock_create_ruleset failed")
    try:
        for root in _readable_roots():
            _allow(ruleset, root, READ & fs)
        for device in _device_files():  # named devices only: never a disk, a console or a loop device
            _allow(ruleset, device, (READ_FILE | WRITE_FILE | (IOCTL_DEV if abi >= 5 else 0)) & fs)
        if private:
            _allow(ruleset, private, fs)
        if _libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(NO_NEW_PRIVS) failed")
        if _libc.syscall(SYS_RESTRICT_SELF, ruleset, 0) != 0:
            raise OSError(ctypes.get_errno(), "landlock_restrict_self failed")
    finally:
        os.close(ruleset)
    return f"ABI {abi}"


def _device_files() -> list[str]:
    """The harmless devices, and a GPU's (``/dev/nvidia*``) so CUDA works in the worker."""
    gpu = sorted(str(p) for p in [*Path("/dev").glob("nvidia*"), *Path("/dev").glob("nvidia-caps/*")] if not p.is_dir())
    return [d for d in (*DEVICES, *gpu) if os.path.exists(d)]


def _readable_roots() -> list[str]:
    """The Python installation and system folders; never the course repository itself.

    A folder is kept unless it holds the repository (``/``, ``/work``) or lies inside it; a
    virtual environment inside the repository (``.venv``) is the one exception.
    """
    repo = str(PACKAGE_ROOT)
    server_tmp = SERVER_TMP
    candidates = {sys.prefix, sys.base_prefix, sys.exec_prefix, *READ_ROOTS, *(p for p in sys.path if p)}
    return sorted(r for r in candidates if os.path.isdir(r) and not _within(repo, r)
                  and (not _within(r, repo) or _within(r, sys.prefix))
                  and not _within(r, server_tmp) and not _within(server_tmp, r))


def _within(path: str, root: str) -> bool:
    """``path`` is ``root`` or lies below it."""
    path, root = os.path.realpath(path), os.path.realpath(root)
    return path == root or path.startswith(root.rstrip("/") + "/")


def _allow(ruleset: int, path: str, access: int) -> None:
    fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
    try:
        rule = struct.pack("<Qi", access, fd)  # struct landlock_path_beneath_attr is packed
        if _libc.syscall(SYS_ADD_RULE, ruleset, 1, rule, 0) != 0:
            raise OSError(ctypes.get_errno(), f"landlock_add_rule({path}) failed")
    finally:
        os.close(fd)
