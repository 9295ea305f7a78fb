"""The worker server: a process that has already imported torch and forks a worker on request.

Importing torch costs about a second; ``fork`` of a process that has done it costs
about ten milliseconds. The grader starts this server once, then asks it for a fresh
worker per submission and exercise, or after a worker crashed or timed out.

Protocol on the control socket (inherited as file descriptor ``argv[1]``): the grader
sends ``b"spawn"`` with one end of a socketpair attached (SCM_RIGHTS); the server forks,
the child becomes a worker talking on that socket, and the server replies with the
child's pid as 8 bytes. EOF on the control socket ends the server.
"""

from __future__ import annotations

import os
import signal
import socket
import struct
import sys


def preload() -> None:
    """Import what every worker needs, so forked workers start warm."""
    os.environ.setdefault("MPLBACKEND", "Agg")
    import math  # noqa: F401
    import numpy  # noqa: F401
    import torch
    import torch.fx.experimental.symbolic_shapes  # noqa: F401  (the first backward imports it: ~0.7 s)
    import torch.nn.functional  # noqa: F401

    try:
        import matplotlib.pyplot  # noqa: F401  (notebooks import it; plots are discarded)
    except ImportError:
        pass
    torch.set_num_threads(1)

    from autograder.worker import runtime  # noqa: F401


def serve(control: socket.socket) -> None:
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # workers are reaped automatically
    while True:
        try:
            msg, fds, _, _ = socket.recv_fds(control, 64, 1)
        except OSError:
            return
        if not msg:
            return
        if msg != b"spawn" or len(fds) != 1:
            for fd in fds:
                os.close(fd)
            continue
        pid = os.fork()
        if pid == 0:
            control.close()
            _become_worker(fds[0])
        os.close(fds[0])
        control.sendall(struct.pack("<q", pid))


def _become_worker(fd: int) -> None:
    try:
        from autograder.worker import sandbox
        from autograder.worker.runtime import run_worker

        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        sock = socket.socket(fileno=fd)
        sandbox.enter()
        run_worker(sock)
    finally:
        os._exit(0)


def main() -> None:
    control = socket.socket(fileno=int(sys.argv[1]))
    preload()
    control.sendall(b"ready")
    serve(control)


if __name__ == "__main__":
    main()
