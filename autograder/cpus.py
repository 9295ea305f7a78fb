"""How many CPUs this process may really use: the default of ``grade --jobs``.

``os.cpu_count()`` is the host's count. A container or a JupyterHub pod usually gets fewer, in two ways
that Linux reports separately: an affinity mask (``taskset``, ``docker --cpuset-cpus``) and a CFS quota
(``docker --cpus``, a Kubernetes CPU limit), read from cgroup v2's ``cpu.max`` or cgroup v1's
``cpu.cfs_quota_us`` / ``cpu.cfs_period_us``. The smaller of the two, rounded up, is what a batch can keep busy.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

CGROUP = Path("/sys/fs/cgroup")


def usable_cpus(cgroup: Path = CGROUP) -> int:
    """CPUs this process may use: its affinity mask, capped by its cgroup's CPU quota (at least 1)."""
    try:
        count = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        count = os.cpu_count() or 1
    quota = cgroup_quota(cgroup)
    if quota is not None:
        count = min(count, math.ceil(quota))
    return max(1, count)


def cgroup_quota(cgroup: Path = CGROUP) -> float | None:
    """The cgroup's CPU quota in CPUs (``1.5`` for ``docker --cpus 1.5``), or None when there is no limit."""
    try:  # cgroup v2: "max 100000" or "150000 100000"
        quota, period = (cgroup / "cpu.max").read_text().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:  # cgroup v1: a quota of -1 means no limit
        quota_us = int((cgroup / "cpu" / "cpu.cfs_quota_us").read_text())
        period_us = int((cgroup / "cpu" / "cpu.cfs_period_us").read_text())
        return None if quota_us <= 0 or period_us <= 0 else quota_us / period_us
    except (OSError, ValueError):
        return None
