"""The worker server: a process that has already imported torch and forks a worker on request.

Importing torch costs about a second; ``fork`` of a process that has done it costs
about ten milliseconds. The grader starts this server once, then asks it for a fresh
worker per submission, per exercise after one that lost points, or after a worker crashed or timed out.

Protocol on the control socket (inherited as file descriptor ``argv[1]``):

- ``b"spawn"`` or ``b"spawn:<uid>"`` with one end of a socketpair attached (SCM_RIGHTS): the
  server forks, the child becomes a worker talking on that socket (running as ``uid`` when
  given), and the server replies with the child's pid as 8 bytes;
- ``b"reap:<pid>"`` or ``b"reap:<pid>:<uid>"``: kill that worker and everything it left behind,
  then reply ``b"reaped\0\0"``. The server is a child subreaper, so a worker's orphans,
  double-forked or not, become the server's children once the worker is gone: every child
  that is not a live worker is killed. With a uid, every process of that uid is killed too.

EOF on the control socket ends the server. ``--allow-weaker-sandbox`` after the descriptor is the instructor's
permission to run student code in workers that lack layers a grade requires (``sandbox.missing_layers``).
"""

from __future__ import annotations

import gc
import importlib
import importlib.abc
import importlib.util
import os
import select
import shutil
import signal
import socket
import struct
import sys
import time
import types


def preload(optimizers: bool = True) -> None:
    """Import what every worker needs, so forked workers start warm; ``optimizers`` adds torch._dynamo,
    which the first optimizer imports (~1.3 s per worker otherwise, ~1 s of the server's start here)."""
    os.environ.setdefault("MPLBACKEND", "Agg")
    import math  # noqa: F401

    import numpy  # noqa: F401
    import torch
    if optimizers:
        import torch._dynamo  # noqa: F401
    import torch.nn.functional  # noqa: F401

    defer_import("matplotlib", "matplotlib.pyplot")  # every notebook imports it; a graded function seldom plots
    torch.set_num_threads(1)

    from autograder.worker import runtime  # noqa: F401


class DeferredModule(types.ModuleType):
    """A module that a worker imports for nothing (``import matplotlib.pyplot as plt`` at the top of every notebook,
    whose plotting cells the grader drops), made real by the first use of a name it does not hold: 0.7 s of the
    server's start-up otherwise, and the whole of it in a cold grade's critical path."""

    def __getattr__(self, name: str):
        _make_real()
        return getattr(importlib.import_module(self.__name__), name)


class _RealOnSubmodule(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Imports another submodule of a deferred package (``import matplotlib.cm``) the ordinary way, stand-ins gone."""

    def __init__(self, packages: tuple[str, ...]):
        self.prefixes = tuple(p + "." for p in packages)

    def find_spec(self, name, path=None, target=None):
        if not name.startswith(self.prefixes):
            return None
        _make_real()
        importlib.import_module(name)  # as a plain import would, its package now real
        return importlib.util.spec_from_loader(name, self)

    def create_module(self, spec):
        return sys.modules[spec.name]  # imported above: handed back as it is

    def exec_module(self, module):
        pass


def defer_import(package: str, *submodules: str) -> None:
    """Stand-ins for ``package`` and its ``submodules`` (each an attribute of its parent, as an import leaves it)."""
    spec = importlib.util.find_spec(package) if package not in sys.modules else None
    if spec is None:
        return  # imported already, or absent (the notebook's import then fails as it would)
    sys.modules[package] = parent = DeferredModule(package)
    parent.__path__ = list(spec.submodule_search_locations or [])  # `from package import sub` reads it
    for name in submodules:
        sys.modules[name] = module = DeferredModule(name)
        setattr(parent, name.rpartition(".")[2], module)
    sys.meta_path.insert(0, _RealOnSubmodule((package,)))


def _make_real() -> None:
    for name in [n for n, m in sys.modules.items() if isinstance(m, DeferredModule)]:
        del sys.modules[name]
    sys.meta_path[:] = [f for f in sys.meta_path if not isinstance(f, _RealOnSubmodule)]


PR_SET_CHILD_SUBREAPER = 36


def serve(control: socket.socket) -> None:
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # workers and adopted orphans are reaped automatically
    _subreaper()
    workers: set[int] = set()
    while True:
        try:
            msg, fds, _, _ = socket.recv_fds(control, 64, 1)
        except OSError:
            return
        if not msg:
            return
        command, *args = msg.decode(errors="replace").split(":")
        numbers = [int(a) for a in args if a.isdigit()]
        if command == "reap" and numbers and not fds:
            workers.discard(numbers[0])
            _reap(numbers[0], numbers[1] if len(numbers) > 1 else None, workers)
            control.sendall(b"reaped\0\0")
            continue
        if command != "spawn" or len(fds) != 1:
            for fd in fds:
                os.close(fd)
            continue
        pid = os.fork()
        if pid == 0:
            control.close()
            _become_worker(fds[0], numbers[0] if numbers else None)
        workers.add(pid)
        os.close(fds[0])
        control.sendall(struct.pack("<q", pid))


PR_SET_DUMPABLE = 4


def not_dumpable() -> None:
    """As root, make this process non-dumpable: a worker left as uid 0 without capabilities (the weaker sandbox)
    could otherwise open ``/proc/<pid>/mem`` of a same-uid process and write into it. Forked workers inherit it,
    so neither can they reach each other's."""
    if os.geteuid() == 0:
        import ctypes

        ctypes.CDLL(None).prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)


def _subreaper() -> None:
    import ctypes

    ctypes.CDLL(None).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)


def _become_worker(fd: int, uid: int | None) -> None:
    try:
        from autograder import wire
        from autograder.worker import sandbox
        from autograder.worker.runtime import run_worker

        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        _subreaper()  # the worker's own orphans stay its children while it lives
        sock = socket.socket(fileno=fd)
        sandbox.enter(uid)
        # The grader reads this first, before the notebook is even sent: student code cannot unsend or
        # rewrite what the sandbox reported about itself (results.json's sandbox layers come from here).
        wire.send(sock, {"op": "hello", "sandbox": dict(sandbox.LAYERS), "unsafe": sandbox.UNSAFE})
        run_worker(sock)
    finally:
        os._exit(0)


def _reap(pid: int, uid: int | None, workers: set[int]) -> None:
    """Kill a worker, its process group, every child of this server that is no live worker
    (the worker's adopted orphans), and, with a uid, every process of that uid."""
    exited = _exit_handle(pid)  # taken before the kill: the pid cannot be reused under it
    for kill in (lambda: os.killpg(pid, signal.SIGKILL), lambda: os.kill(pid, signal.SIGKILL)):
        try:
            kill()
        except OSError:
            pass
    shutil.rmtree(os.path.join(os.environ.get("TMPDIR", "/tmp"), f"worker-{pid}"), ignore_errors=True)
    if exited is not None:  # wait for the exit itself (~15 ms of page-table teardown) instead of polling /proc
        select.select([exited], [], [], 1.0)
        os.close(exited)
    for _ in range(50):  # orphans arrive as the worker's exit completes; a fork bomb keeps forking
        children, of_uid = _scan(uid)
        strays = [child for child in children if child not in workers] + of_uid
        if not strays and pid not in children:
            return
        for child in strays:
            try:
                os.kill(child, signal.SIGKILL)
            except OSError:
                pass
        time.sleep(0.005)


def _exit_handle(pid: int) -> int | None:
    """A pidfd of ``pid``, readable once it has exited (Linux 5.3+); None where there is none."""
    try:
        return os.pidfd_open(pid)
    except (AttributeError, OSError):
        return None


def _scan(uid: int | None) -> tuple[list[int], list[int]]:
    """One pass over /proc: this server's live children, and the processes owned by ``uid``
    (a process that made itself non-dumpable shows as root's, but it is still a descendant,
    so the subreaper has it among the children)."""
    me, children, of_uid = os.getpid(), [], []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if uid is not None and os.stat(f"/proc/{entry}").st_uid == uid:
                of_uid.append(int(entry))
            with open(f"/proc/{entry}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == me and fields[0] != b"Z":
            children.append(int(entry))
    return children, of_uid


def main() -> None:
    # `python -m` put the start folder (the server's temporary folder, which holds every
    # worker's private folder) first on sys.path; workers need none of it.
    if sys.path and os.path.realpath(sys.path[0]) == os.path.realpath(os.getcwd()):
        sys.path.pop(0)
    control = socket.socket(fileno=int(sys.argv[1]))
    from autograder.worker import sandbox

    # The grader's word, on the command line it started this server with; no worker can change it for the server.
    sandbox.ALLOW_WEAKER = "--allow-weaker-sandbox" in sys.argv[2:]
    not_dumpable()
    preload(optimizers="--no-optimizers" not in sys.argv[2:])
    # What the imports made is never freed: out of the collector's sight, a worker's collections do not walk it,
    # and so do not write to (and copy) the pages it shares with this server.
    gc.collect()
    gc.freeze()
    control.sendall(b"ready")
    serve(control)


if __name__ == "__main__":
    main()
