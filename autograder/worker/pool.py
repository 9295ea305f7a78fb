"""Grader-side handles on the worker server and on its workers.

This module imports no torch, so the grader can start the server first and import torch
while the server does the same.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from autograder.worker.sandbox import (
    HIDDEN_FILES,
    HIDDEN_FOLDERS,
    PACKAGE_ROOT,
    describe_missing,
    layers_on,
    missing_layers,
    uid_per_worker_possible,
)
from autograder.worker.uids import UidBlock

SERVER_START_TIMEOUT = 120.0  # importing torch on a cold, busy machine can take a while
FOLDER_PREFIX = "grader-"
OWNER_LOCK = ".owner.lock"  # flock-ed by the grader for as long as it uses the folder


def worker_environment(tmp: str) -> dict[str, str]:
    """A scrubbed environment: nothing of the grader's (tokens, paths to hidden files) leaks."""
    return {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": tmp,
        "TMPDIR": tmp,
        "LANG": "C.UTF-8",
        "PYTHONPATH": str(PACKAGE_ROOT),
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONHASHSEED": "0",
        "MPLBACKEND": "Agg",
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "OPENBLAS_NUM_THREADS": "1",
        "MALLOC_ARENA_MAX": "2",  # glibc reserves 64 MiB of address space per thread's arena otherwise
        "USER": "worker", "LOGNAME": "worker",  # getpass.getuser() for a uid /etc/passwd does not know
        **{k: v for k, v in os.environ.items() if k.startswith("OPENBLAS_CORETYPE") or k == "OPENBLAS_L2_SIZE"},
    }


class WorkerServer:
    """The process that forks workers (see ``autograder.worker.zygote``).

    If it dies (student code found a way to kill it), the next ``spawn`` starts a new one.
    """

    def __init__(self, optimizers: bool = True, allow_weaker: bool = False, spares: int = 0):
        """``optimizers=False`` starts faster when no assignment graded builds an optimizer (a5 does).
        ``allow_weaker``: the instructor lets workers that lack layers a grade requires (``sandbox.missing_layers``)
        run student code anyway, with the strongest layers this machine gives (``grade --allow-weaker-sandbox``).
        ``spares`` workers are kept forked and inside their sandbox ahead of need, by a thread of their own: a fork,
        the sandbox and the reap of the worker before cost about 40 ms each time a submission's next exercise wants a
        fresh worker, which the grading thread then does not wait for."""
        self.optimizers = optimizers
        self.allow_weaker = allow_weaker
        from autograder.worker.zygote import not_dumpable

        not_dumpable()  # as root: a worker left as uid 0 (the weaker sandbox) cannot write this process's memory
        remove_stale_folders(Path(tempfile.gettempdir()))
        self.tmp = tempfile.mkdtemp(prefix=FOLDER_PREFIX)
        os.chmod(self.tmp, 0o711)  # a worker with a uid of its own must reach its private folder inside
        self._owner = claim_folder(Path(self.tmp))
        self.lock = threading.Lock()
        # As root, each live worker gets a uid of its own from a block no other grader uses, so it
        # can neither signal nor read the grader, and everything it leaves behind dies with that uid.
        self.uids = UidBlock() if uid_per_worker_possible() else None
        self.restarts = 0
        self._start()
        self._spares: list[Worker] = []
        self._want_spares = spares
        self._spares_changed = threading.Condition()
        self._closing = False
        self._spares_started = False  # on the first spawn, so the preflight's worker is forked before any spare

    def _start(self) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        self.control = ours
        self.log = open(os.path.join(self.tmp, "server.log"), "ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "autograder.worker.zygote", str(theirs.fileno()),
             *([] if self.optimizers else ["--no-optimizers"]),
             *(["--allow-weaker-sandbox"] if self.allow_weaker else [])],
            pass_fds=[theirs.fileno()],
            env=worker_environment(self.tmp),
            cwd=self.tmp,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=self.log,
            start_new_session=True,
        )
        theirs.close()
        self._ready = False

    def wait_ready(self) -> None:
        if self._ready:
            return
        self.control.settimeout(SERVER_START_TIMEOUT)
        try:
            greeting = self.control.recv(5)
        except (socket.timeout, OSError):
            greeting = b""
        if greeting != b"ready":
            self.process.kill()
            log = Path(self.tmp, "server.log").read_bytes().decode(errors="replace")[-2000:]
            raise RuntimeError(f"the worker server did not start:\n{log}")
        self._ready = True

    def spawn(self) -> "Worker":
        """A fresh worker: a spare when one is ready, else one forked now."""
        with self._spares_changed:
            spare = self._spares.pop(0) if self._spares else None
            self._spares_changed.notify_all()
        worker = spare if spare is not None else self.spawn_now()
        with self._spares_changed:  # one keeper, however many threads spawn first
            start, self._spares_started = self._want_spares and not self._spares_started, True
        if start:
            threading.Thread(target=self._keep_spares, daemon=True, name="spare-workers").start()
        return worker

    def _keep_spares(self) -> None:
        """Fork a worker and read its sandbox report whenever fewer than ``spares`` are ready. A spare the server
        could not make is simply not there: ``spawn`` then forks as it would without spares."""
        while True:
            with self._spares_changed:
                self._spares_changed.wait_for(lambda: self._closing or len(self._spares) < self._want_spares)
                if self._closing:
                    return
            try:
                worker = self.spawn_now()
            except Exception:  # noqa: BLE001  (see above; the next spawn reports what is wrong)
                time.sleep(0.5)
                continue
            try:
                worker.hello(SERVER_START_TIMEOUT)  # killed if it fails
            except Exception:  # noqa: BLE001  (it died entering its sandbox: a grading thread's own spawn says why)
                time.sleep(0.5)
                continue
            with self._spares_changed:
                if self._closing:
                    worker.kill()
                    return
                self._spares.append(worker)

    def spawn_now(self) -> "Worker":
        with self.lock:
            try:
                return self._spawn()
            except (OSError, RuntimeError):
                if self.process.poll() is None and self._ready:
                    raise
                self._stop()  # it died: start a fresh one and try once more
                self.restarts += 1
                self._start()
                return self._spawn()

    def _spawn(self) -> "Worker":
        self.wait_ready()
        uid = self.uids.take() if self.uids else None
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            request = b"spawn" if uid is None else f"spawn:{uid}".encode()
            socket.send_fds(self.control, [request], [theirs.fileno()])
            (pid,) = struct.unpack("<q", self._reply())
        except BaseException:
            ours.close()
            if self.uids:
                self.uids.give_back(uid)
            raise
        finally:
            theirs.close()
        return Worker(pid, ours, uid, self)

    def reap(self, pid: int, uid: int | None) -> None:
        """Kill a worker and everything it left behind (see the server's ``_reap``), then free its uid."""
        with self.lock:
            try:
                self.control.sendall(f"reap:{pid}" .encode() + (f":{uid}".encode() if uid is not None else b""))
                self._reply()
            except (OSError, RuntimeError):
                pass  # the server is gone, and with it the subreaper that held the orphans
            if self.uids:
                self.uids.give_back(uid)

    def _reply(self) -> bytes:
        self.control.settimeout(30)
        raw = b""
        while len(raw) < 8:
            chunk = self.control.recv(8 - len(raw))
            if not chunk:
                raise RuntimeError("the worker server exited")
            raw += chunk
        return raw

    def _stop(self) -> None:
        try:
            self.control.close()
        finally:
            self.process.kill()  # it holds no state; its workers are already gone
            self.process.wait()
            self.log.close()

    def close(self) -> None:
        with self._spares_changed:
            self._closing = True
            spares, self._spares = self._spares, []
            self._spares_changed.notify_all()
        for spare in spares:
            spare.kill()
        self._stop()
        shutil.rmtree(self.tmp, ignore_errors=True)
        self._owner.close()
        if self.uids:
            self.uids.release()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def claim_folder(folder: Path):
    """Hold an exclusive flock on ``folder/.owner.lock`` (the open file, returned, keeps it) until this process
    closes it or dies. The lock file is locked under another name and then renamed, so another grader's
    :func:`remove_stale_folders` never finds it unlocked."""
    fd, name = tempfile.mkstemp(prefix=".owner-", dir=folder)
    owner = os.fdopen(fd, "w")
    fcntl.flock(owner, fcntl.LOCK_EX | fcntl.LOCK_NB)
    os.rename(name, folder / OWNER_LOCK)
    return owner


def remove_stale_folders(root: Path) -> list[Path]:
    """Delete the ``grader-*`` folders in ``root`` whose grader died (killed, so its ``close`` never ran): those
    whose owner lock nobody holds. A folder without the lock file (being made, or an older grader's) is kept."""
    removed = []
    for folder in root.glob(FOLDER_PREFIX + "*"):
        try:
            with open(folder / OWNER_LOCK) as lock:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                shutil.rmtree(folder, ignore_errors=True)
                removed.append(folder)
        except OSError:  # no lock file, not ours to read, or locked: its grader is alive
            continue
    return removed


class Worker:
    """One forked worker: a session leader with, when the grader is root, a uid of its own.

    ``kill`` kills its process group and, with a uid, every process of that uid, so a
    double-forked orphan that left the session and ignores SIGTERM goes too.
    """

    def __init__(self, pid: int, sock: socket.socket, uid: int | None = None, server: "WorkerServer | None" = None):
        self.pid = pid
        self.sock = sock
        self.uid = uid
        self.server = server
        self.alive = True
        self.sandbox: dict[str, str] | None = None  # the layers, from the message sent before any student code ran
        self.unsafe: str | None = None  # the worker's own refusal to load student code, from the same message

    def request(self, header: dict, buffers: Sequence[bytes] = (), timeout: float = 10.0):
        from autograder import wire

        deadline = time.monotonic() + timeout
        with self._killed_on_failure():
            if self.sandbox is None:
                self._read_hello(deadline)
            wire.send(self.sock, header, buffers)
            return wire.recv(self.sock, deadline)

    @contextlib.contextmanager
    def _killed_on_failure(self):
        """A failed exchange costs the worker its life; a socket error is re-raised as ``wire.PeerClosed``."""
        from autograder import wire

        try:
            yield
        except wire.WireError:
            self.kill()
            raise
        except OSError as exc:
            self.kill()
            raise wire.PeerClosed(str(exc)) from None

    def _read_hello(self, deadline: float) -> None:
        """The first message a worker sends, right after entering its sandbox and before it reads the notebook."""
        from autograder import wire

        hello, _ = wire.recv(self.sock, deadline)
        layers = hello.get("sandbox")
        if hello.get("op") != "hello" or not isinstance(layers, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in layers.items()):
            raise wire.WireError("the worker did not report its sandbox first")
        self.sandbox = {k[:64]: v[:300] for k, v in list(layers.items())[:64]}
        unsafe = hello.get("unsafe")
        self.unsafe = unsafe[:500] if isinstance(unsafe, str) else None if unsafe is None else "unreadable"

    def hello(self, timeout: float) -> dict[str, str]:
        """The layers this worker entered, read (once) before anything is sent to it."""
        if self.sandbox is None:
            with self._killed_on_failure():
                self._read_hello(time.monotonic() + timeout)
        assert self.sandbox is not None
        return self.sandbox

    def environment_problem(self, allow_weaker: bool) -> str | None:
        """Why this worker must not run student code, from its hello (read before any student code ran): the
        layers a grade requires are missing and weaker grading was not allowed, or the worker refused by itself.
        None: it may."""
        assert self.sandbox is not None
        missing = missing_layers(self.sandbox)
        if missing and not allow_weaker:
            return "missing " + describe_missing(missing)
        return self.unsafe

    def kill(self) -> None:
        if not self.alive:
            return
        self.alive = False
        for target in (lambda: os.killpg(self.pid, signal.SIGKILL), lambda: os.kill(self.pid, signal.SIGKILL)):
            try:
                target()
            except (ProcessLookupError, PermissionError):
                pass
        if self.server is not None:
            self.server.reap(self.pid, self.uid)
        self.sock.close()

    def close(self) -> None:
        if self.alive:
            try:
                from autograder import wire

                wire.send(self.sock, {"op": "exit"})
            except OSError:
                pass
            self.kill()


HELLO_TIMEOUT = 60.0  # a worker reports its sandbox within milliseconds of its fork; the server may still be starting


def remedy() -> str:
    """What to do, naming the hidden folders and files of this course folder (``sandbox.HIDDEN_FOLDERS`` and
    ``HIDDEN_FILES``) that the chmod must close."""
    hidden = " ".join(n for n in (*HIDDEN_FOLDERS, *HIDDEN_FILES) if (PACKAGE_ROOT / n).exists())
    return ("run the grader on Linux 5.13+ with Landlock enabled, or as root with a Python other users can read and "
            "either CAP_SYS_ADMIN (Docker: --cap-add SYS_ADMIN) or the course's hidden folders closed to other users "
            f"(chmod -R o-rwx {hidden})")


class SandboxUnavailable(RuntimeError):
    """This machine cannot sandbox student code as a grade requires (``sandbox.missing_layers``)."""


def preflight(server: WorkerServer) -> tuple[dict[str, str], str | None]:
    """Before any submission is graded: spawn one worker, read the layers it reports before any student code could
    run (none is ever sent to it), kill it. Returns (its layers, a warning line when weaker grading goes ahead);
    raises ``SandboxUnavailable`` with one line for the instructor when grading must not go ahead."""
    from autograder import wire

    try:
        worker = server.spawn()
    except (OSError, RuntimeError) as exc:
        raise SandboxUnavailable(f"cannot sandbox student code here: no worker could be started ({exc})") from None
    try:
        layers = worker.hello(HELLO_TIMEOUT)
    except wire.WireError as exc:
        raise SandboxUnavailable("cannot sandbox student code here: the probe worker stopped while entering its "
                                f"sandbox ({exc}; see the README's Security model)") from None
    finally:
        worker.kill()
    missing = missing_layers(layers)
    problem = worker.environment_problem(server.allow_weaker)
    if problem:
        how = (f"; or pass --allow-weaker-sandbox to grade with: {layers_on(layers)}" if missing and not
               server.allow_weaker else "")
        raise SandboxUnavailable(f"cannot sandbox student code here: {problem}; {remedy()}{how}")
    if missing:
        risk = "; it can read the course's hidden folders (the suites and solutions)"
        if "unprivileged_uid" in missing and "landlock" in missing:
            risk = ("; as the grader's user it can read and write whatever that user can, the grader's code included"
                    if "not root" in missing["unprivileged_uid"] else
                    "; as uid 0 it can read every file, the hidden suites and solutions included (writing none)")
        return layers, (f"grading with a weaker sandbox (--allow-weaker-sandbox): missing {describe_missing(missing)};"
                        f" student code runs with: {layers_on(layers)}{risk}")
    return layers, None
