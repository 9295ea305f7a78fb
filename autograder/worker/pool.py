"""Grader-side handles on the worker server and on its workers.

This module imports no torch, so the grader can start the server first and import torch
while the server does the same.
"""

from __future__ import annotations

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
from pathlib import Path

SERVER_START_TIMEOUT = 120.0  # importing torch on a cold, busy machine can take a while
PACKAGE_ROOT = Path(__file__).resolve().parents[2]


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
        **{k: v for k, v in os.environ.items() if k.startswith("OPENBLAS_CORETYPE") or k == "OPENBLAS_L2_SIZE"},
    }


class WorkerServer:
    """The process that forks workers (see ``autograder.worker.zygote``)."""

    def __init__(self):
        self.tmp = tempfile.mkdtemp(prefix="grader-")
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        self.control = ours
        self.lock = threading.Lock()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "autograder.worker.zygote", str(theirs.fileno())],
            pass_fds=[theirs.fileno()],
            env=worker_environment(self.tmp),
            cwd=self.tmp,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
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
            err = (self.process.stderr.read() or b"").decode(errors="replace")[-2000:]
            raise RuntimeError(f"the worker server did not start:\n{err}")
        self._ready = True

    def spawn(self) -> "Worker":
        with self.lock:
            self.wait_ready()
            ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                socket.send_fds(self.control, [b"spawn"], [theirs.fileno()])
                self.control.settimeout(30)
                raw = b""
                while len(raw) < 8:
                    chunk = self.control.recv(8 - len(raw))
                    if not chunk:
                        raise RuntimeError("the worker server exited")
                    raw += chunk
            finally:
                theirs.close()
        (pid,) = struct.unpack("<q", raw)
        return Worker(pid, ours)

    def close(self) -> None:
        try:
            self.control.close()
        finally:
            self.process.kill()  # it holds no state; its workers are already gone
            self.process.wait()
            if self.process.stderr:
                self.process.stderr.close()
            shutil.rmtree(self.tmp, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class Worker:
    """One forked worker; a session leader, so ``kill`` takes its descendants with it."""

    def __init__(self, pid: int, sock: socket.socket):
        self.pid = pid
        self.sock = sock
        self.alive = True

    def request(self, header: dict, buffers: list[bytes] = (), timeout: float = 10.0):
        from autograder import wire

        deadline = time.monotonic() + timeout
        try:
            wire.send(self.sock, header, buffers)
            return wire.recv(self.sock, deadline)
        except wire.WireError:
            self.kill()
            raise
        except OSError as exc:
            self.kill()
            raise wire.PeerClosed(str(exc)) from None

    def kill(self) -> None:
        if not self.alive:
            return
        self.alive = False
        for target in (lambda: os.killpg(self.pid, signal.SIGKILL), lambda: os.kill(self.pid, signal.SIGKILL)):
            try:
                target()
            except (ProcessLookupError, PermissionError):
                pass
        self.sock.close()

    def close(self) -> None:
        if self.alive:
            try:
                from autograder import wire

                wire.send(self.sock, {"op": "exit"})
            except OSError:
                pass
            self.kill()
