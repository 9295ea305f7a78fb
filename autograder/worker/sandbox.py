"""Limits a freshly forked worker puts on itself before it runs any student code.

Layers, in the order applied:

1. its own session, so one ``killpg`` takes the worker and what it spawned;
2. a private, empty working directory (also ``HOME`` and ``TMPDIR``);
3. no network: a new network namespace when root; Landlock denies TCP everywhere;
4. standard streams detached from the grader;
5. resource limits (CPU time, data size, file size, open files, processes) and one torch thread;
6. when the grader runs as root: an unprivileged uid of its own, so it can neither signal nor
   read the grader, and the grader can kill every process of that uid afterwards; if that is
   impossible, root without any capability (Linux never applies RLIMIT_NPROC to uid 0);
7. Landlock: read access only to the Python installation and system folders, write access only
   to its private directory, no signals or abstract sockets outside its own sandbox. The
   course repository (hidden suites, solutions, gradebook) is outside what it may read;
8. seccomp: threads may be created, processes and sockets may not (no fork bomb, no orphan,
   no unix socket by path, no UDP).

Each layer that could not be applied is recorded, not fatal: ``LAYERS`` goes to the grader
and into ``results.json``.
"""

from __future__ import annotations

import ctypes
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
SERVER_TMP = tempfile.gettempdir()  # the server's folder, holding every worker's private folder
_libc = ctypes.CDLL(None, use_errno=True)


def enter(uid: int | None = None) -> dict[str, str]:
    _layer("session", os.setsid)
    private = _layer("private_tmpdir", lambda: _private_dir(uid))
    if os.geteuid() == 0:
        _layer("network_namespace", lambda: _unshare(0x40000000))  # CLONE_NEWNET: only a loopback, down
    _layer("stdio_detached", _detach_stdio)
    for name, value in LIMITS.items():
        _layer(name.lower(), lambda name=name, value=value: _limit(name, value))
    _layer("torch_threads_1", _one_thread)
    if uid is not None:
        _layer("unprivileged_uid", lambda: _drop_privileges(uid))
    elif os.geteuid() == 0:
        _layer("capabilities_dropped", _drop_capabilities)  # root without its powers (RLIMIT_NPROC still
        # never binds uid 0: the seccomp layer is what stops a fork bomb)
    elif os.geteuid() == 0:
        LAYERS["unprivileged_uid"] = ("off: this Python installation is not readable by other users "
                                      f"({sys.base_prefix}); install Python where other users can read it")
    else:
        LAYERS["unprivileged_uid"] = "off: the grader is not root, so the worker runs as the grader's user"
    _layer("landlock", lambda: _landlock(private))
    _layer("no_new_processes", _no_new_processes)
    return LAYERS


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
    kind = getattr(resource, name)
    soft, hard = resource.getrlimit(kind)
    if hard != resource.RLIM_INFINITY:
        value = min(value, hard)
    resource.setrlimit(kind, (value, hard))


def _one_thread() -> None:
    import torch

    torch.set_num_threads(1)


def _drop_privileges(uid: int) -> int:
    os.setgroups([])
    os.setresgid(uid, uid, uid)
    os.setresuid(uid, uid, uid)
    return uid


PR_CAPBSET_DROP, CAPABILITY_VERSION_3 = 24, 0x20080522


def _drop_capabilities() -> None:
    """Empty the bounding, permitted, effective and inheritable sets (uid stays 0)."""
    for cap in range(64):
        _libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0)  # EINVAL past the last capability: harmless
    header = struct.pack("<Ii", CAPABILITY_VERSION_3, 0)
    data = bytes(24)  # two {effective, permitted, inheritable} u32 triples, all zero
    if _libc.capset(header, data) != 0:
        raise OSError(ctypes.get_errno(), "capset failed")


# --- seccomp: threads yes, new processes no ----------------------------------------------

AUDIT_ARCH = {"x86_64": 0xC000003E, "aarch64": 0xC00000B7}
# Syscalls that make a process: fork and vfork (x86_64 only), clone without CLONE_THREAD, clone3;
# and new sockets of any family (unix sockets by path, UDP without a network namespace).
PROCESS_SYSCALLS = {"x86_64": {"fork": 57, "vfork": 58, "socket": 41, "socketpair": 53, "clone": 56},
                    "aarch64": {"socket": 198, "socketpair": 199, "clone": 220}}
CLONE3, CLONE_THREAD, EAGAIN, ENOSYS = 435, 0x10000, 11, 38
PR_SET_SECCOMP, SECCOMP_MODE_FILTER = 22, 2


class _Filter(ctypes.Structure):
    _fields_ = [("code", ctypes.c_ushort), ("jt", ctypes.c_ubyte), ("jf", ctypes.c_ubyte), ("k", ctypes.c_uint)]


class _Program(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.POINTER(_Filter))]


def _no_new_processes() -> str:
    """A seccomp filter: fork/vfork/clone of a process fail with EAGAIN (a fork bomb stops at once,
    no orphan can exist), and so does opening any new socket; clone3 says ENOSYS, so the C library
    creates threads with clone. The worker's own socket to the grader was opened before."""
    machine = os.uname().machine
    if machine not in AUDIT_ARCH:
        raise OSError(f"no seccomp filter for {machine}")
    LD, JEQ, JSET, RET = 0x20, 0x15, 0x45, 0x06
    ALLOW, DENY, NOSYS = 0x7FFF0000, 0x00050000 | EAGAIN, 0x00050000 | ENOSYS
    calls = PROCESS_SYSCALLS[machine]
    # Layout: 0 load arch; 1 other arch -> allow; 2 load nr; then one test per plain-process call,
    # clone3, clone; then load flags, test CLONE_THREAD; then the three return statements.
    plain = [nr for name, nr in calls.items() if name != "clone"]
    n_tests = len(plain) + 2
    load_flags = 3 + n_tests
    ret_allow, ret_deny, ret_nosys = load_flags + 2, load_flags + 3, load_flags + 4
    prog = [(LD, 0, 0, 4), (JEQ, 0, ret_allow - 2, AUDIT_ARCH[machine]), (LD, 0, 0, 0)]
    for nr in plain:
        prog.append((JEQ, ret_deny - len(prog) - 1, 0, nr))
    prog.append((JEQ, ret_nosys - len(prog) - 1, 0, CLONE3))
    prog.append((JEQ, 0, ret_allow - len(prog) - 1, calls["clone"]))
    prog.append((LD, 0, 0, 16))  # low 32 bits of args[0] (little endian): the clone flags
    prog.append((JSET, ret_allow - len(prog) - 1, ret_deny - len(prog) - 1, CLONE_THREAD))
    prog += [(RET, 0, 0, ALLOW), (RET, 0, 0, DENY), (RET, 0, 0, NOSYS)]
    filters = (_Filter * len(prog))(*[_Filter(*ins) for ins in prog])
    program = _Program(len(prog), filters)
    if _libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(NO_NEW_PRIVS) failed")
    if _libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(program), 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "seccomp filter refused")
    return "threads only, no new sockets"


# --- Landlock (Linux >= 5.13), through raw system calls ----------------------------------

SYS_CREATE_RULESET, SYS_ADD_RULE, SYS_RESTRICT_SELF = 444, 445, 446
PR_SET_NO_NEW_PRIVS = 38
READ = (1 << 0) | (1 << 2) | (1 << 3)          # execute, read file, read dir
WRITE_FILE, IOCTL_DEV = 1 << 1, 1 << 15
# Rights by ABI version: 1 has bits 0-12, 2 adds refer (13), 3 truncate (14), 5 ioctl on devices (15).
FS_RIGHTS = {1: (1 << 13) - 1, 2: (1 << 14) - 1, 3: (1 << 15) - 1, 4: (1 << 15) - 1}
READ_ROOTS = ("/usr", "/lib", "/lib64", "/lib32", "/bin", "/sbin", "/etc", "/opt", "/proc", "/sys")


def _landlock(private: str | None) -> str:
    abi = _libc.syscall(SYS_CREATE_RULESET, None, 0, 1)  # LANDLOCK_CREATE_RULESET_VERSION
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
        _allow(ruleset, "/dev", (READ | WRITE_FILE | (IOCTL_DEV if abi >= 5 else 0)) & fs)
        if private:
            _allow(ruleset, private, fs)
        if _libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(NO_NEW_PRIVS) failed")
        if _libc.syscall(SYS_RESTRICT_SELF, ruleset, 0) != 0:
            raise OSError(ctypes.get_errno(), "landlock_restrict_self failed")
    finally:
        os.close(ruleset)
    return f"ABI {abi}"


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
