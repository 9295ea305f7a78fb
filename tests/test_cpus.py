"""grade --jobs defaults to the CPUs the process may use (autograder/cpus.py), read from fake cgroup trees."""

from __future__ import annotations

import os

import pytest

from autograder.cpus import cgroup_quota, usable_cpus

pytestmark = pytest.mark.engine


def write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


@pytest.mark.parametrize(("files", "quota"), [
    ({"cpu.max": "max 100000\n"}, None),                                  # cgroup v2, no limit
    ({"cpu.max": "150000 100000\n"}, 1.5),                                # docker --cpus 1.5
    ({"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"}, None),   # cgroup v1, no limit
    ({"cpu/cpu.cfs_quota_us": "50000\n", "cpu/cpu.cfs_period_us": "100000\n"}, 0.5),
    ({}, None),                                                           # no cgroup files at all
    ({"cpu.max": "garbage\n"}, None),
])
def test_cgroup_quota_is_read_from_v2_or_v1(tmp_path, files, quota):
    for name, text in files.items():
        write(tmp_path / name, text)
    assert cgroup_quota(tmp_path) == quota


def test_a_quota_caps_the_affinity_mask_rounded_up(tmp_path):
    affinity = len(os.sched_getaffinity(0))
    write(tmp_path / "cpu.max", "50000 100000\n")  # half a CPU still grades one submission at a time
    assert usable_cpus(tmp_path) == 1
    write(tmp_path / "cpu.max", f"{affinity * 100000 * 4} 100000\n")  # a quota above the mask changes nothing
    assert usable_cpus(tmp_path) == affinity
    write(tmp_path / "cpu.max", "max 100000\n")
    assert usable_cpus(tmp_path) == affinity


def test_the_affinity_mask_counts_not_the_host(tmp_path):
    if len(os.sched_getaffinity(0)) < 2:
        pytest.skip("needs two CPUs to narrow the mask")
    before = os.sched_getaffinity(0)
    try:
        os.sched_setaffinity(0, {min(before)})
        assert usable_cpus(tmp_path) == 1
    finally:
        os.sched_setaffinity(0, before)
