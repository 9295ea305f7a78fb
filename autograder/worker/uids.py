"""Unprivileged uids for workers, unique across every grader running on this machine.

A root grader gives each live worker a uid of its own, and at reap kills every process of
that uid. Two graders (two worker servers in one process, or two instructors' runs at once)
must therefore never hand out the same uid: each server claims a block of uids with an
exclusive ``flock`` on a lock file, which the kernel releases when the holder exits, even
by SIGKILL. A block whose last holder died may still have processes running: they are
killed when the block is claimed.
"""

from __future__ import annotations

import fcntl
import os
import signal

# 60578-61089: the range systemd leaves unused (below its DynamicUser range, 61184-65519), so no
# service shares a uid with a worker; 8 graders at once, 64 live workers each.
FIRST_UID, BLOCK_SIZE, N_BLOCKS = 60578, 64, 8
LOCK_FOLDERS = ("/run/transformer-course-uids", "/tmp/transformer-course-uids")  # /run: only root writes there


class UidBlock:
    """``BLOCK_SIZE`` uids held by this process until ``release``; ``take``/``give_back`` per worker."""

    def __init__(self):
        self.lock_fd, self.uids = _claim()
        self.in_use: set[int] = set()
        if self.uids:
            _kill_processes_of(set(self.uids))

    def take(self) -> int | None:
        free = [uid for uid in self.uids if uid not in self.in_use]
        if not free:
            return None
        self.in_use.add(free[0])
        return free[0]

    def give_back(self, uid: int | None) -> None:
        self.in_use.discard(uid)

    def release(self) -> None:
        if self.lock_fd is not None:
            os.close(self.lock_fd)  # closing the file releases the flock
            self.lock_fd = None
        self.uids = range(0)


def _claim() -> tuple[int | None, range]:
    folder = _lock_folder()
    if folder is None:
        return None, range(0)
    for block in range(N_BLOCKS):
        fd = os.open(os.path.join(folder, f"block-{block}.lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            continue
        start = FIRST_UID + block * BLOCK_SIZE
        return fd, range(start, start + BLOCK_SIZE)
    return None, range(0)


def _lock_folder() -> str | None:
    for folder in LOCK_FOLDERS:
        try:
            os.makedirs(folder, mode=0o700, exist_ok=True)
            if os.lstat(folder).st_uid == os.geteuid():  # not a folder another user planted in /tmp
                return folder
        except OSError:
            continue
    return None


def _kill_processes_of(uids: set[int]) -> None:
    """Kill what a dead grader's workers may have left running under these uids."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            owner = os.stat(f"/proc/{entry}").st_uid
            if owner in uids:
                os.kill(int(entry), signal.SIGKILL)
        except OSError:
            continue
