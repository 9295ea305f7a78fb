"""Limits a freshly forked worker puts on itself before it runs any student code.

Layers applied here: its own session (so the grader can kill the worker and all it
spawned with one ``killpg``), a private empty working directory, standard streams
detached from the grader, resource limits, and one torch thread. Each layer that
could not be applied is recorded, not fatal: ``LAYERS`` is reported to the grader.
"""

from __future__ import annotations

import os
import resource
import tempfile

GiB = 1024**3

LIMITS = {
    "RLIMIT_CPU": 300,            # seconds of CPU for one worker; the grader's wall-clock limit is tighter
    "RLIMIT_DATA": 6 * GiB,       # heap and anonymous mappings: a runaway allocation fails, not the machine
    "RLIMIT_FSIZE": 64 * 2**20,   # no file bigger than 64 MiB
    "RLIMIT_NOFILE": 256,
    "RLIMIT_CORE": 0,
}

LAYERS: dict[str, str] = {}


def enter() -> dict[str, str]:
    _layer("session", os.setsid)
    _layer("private_tmpdir", _private_dir)
    _layer("stdio_detached", _detach_stdio)
    for name, value in LIMITS.items():
        _layer(name.lower(), lambda name=name, value=value: _limit(name, value))
    _layer("torch_threads_1", _one_thread)
    return LAYERS


def _layer(name: str, apply) -> None:
    try:
        apply()
        LAYERS[name] = "on"
    except Exception as exc:  # a missing layer is a warning, reported to the grader
        LAYERS[name] = f"off: {exc}"


def _private_dir() -> None:
    path = tempfile.mkdtemp(prefix="grader-worker-")
    os.chdir(path)
    os.environ["HOME"] = os.environ["TMPDIR"] = path
    tempfile.tempdir = path


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
