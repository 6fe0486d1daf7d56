"""Make jobs sized from the CPUs and the memory a build may use (cgroup v2 and v1, fake cgroup trees)."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.build.jobs import MEMORY_PER_JOB, Resources, default_jobs, jobs_for, read_resources
from agent.host.paths import HostPaths

GIB = 1 << 30


class Cgroups:
    """A process root under tmp_path: /proc/self/cgroup, /proc/meminfo and /sys/fs/cgroup files."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.paths = HostPaths(root)
        self.meminfo(24 * GIB)

    def write(self, relative: str, text: str) -> None:
        path = self.root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)

    def meminfo(self, total: int) -> None:
        self.write("proc/meminfo", f"MemTotal:       {total // 1024} kB\nMemFree:        1000 kB\n")

    def v2(self, path: str = "/", **files: str) -> None:
        self.write("proc/self/cgroup", f"0::{path}\n")
        self.write("sys/fs/cgroup/cgroup.controllers", "cpuset cpu io memory pids\n")
        (self.root / "sys/fs/cgroup" / path.lstrip("/")).mkdir(parents=True, exist_ok=True)
        for name, value in files.items():
            self.write(f"sys/fs/cgroup/{path.lstrip('/')}/{name.replace('_', '.', 1)}", value + "\n")

    def v1(self, memory: str, cpu: str = "/", **files: str) -> None:
        self.write(
            "proc/self/cgroup",
            f"12:memory:{memory}\n11:cpu,cpuacct:{cpu}\n3:cpuset:/\n1:name=systemd:/\n0::/\n",
        )
        for name, value in files.items():
            controller = "memory" if name.startswith("memory") else "cpu,cpuacct"
            self.write(f"sys/fs/cgroup/{controller}/{name.replace('_', '.', 1)}", value + "\n")
        (self.root / "sys/fs/cgroup/unified").mkdir(parents=True, exist_ok=True)


@pytest.fixture
def node(tmp_path: Path) -> Cgroups:
    return Cgroups(tmp_path)


def test_the_pods_2gib_limit_caps_the_jobs_below_the_cpus(node: Cgroups) -> None:
    """The OOM this fixes: -j8 under 2 GiB; each i915 compile job takes 300-500 MB."""
    node.v2(memory_max=str(2 * GIB), cpu_max="max 100000")
    assert default_jobs(node.paths, cpus=8) == 3
    assert read_resources(node.paths, cpus=8).memory_from == "cgroup v2"


def test_a_cpu_quota_caps_the_jobs(node: Cgroups) -> None:
    node.v2(memory_max="max", cpu_max="150000 100000")
    resources = read_resources(node.paths, cpus=16)
    assert resources.cpu_quota == 1.5
    assert jobs_for(resources) == 2


def test_memory_high_counts_like_memory_max(node: Cgroups) -> None:
    node.v2(memory_max="max", memory_high=str(1 * GIB), cpu_max="max 100000")
    assert default_jobs(node.paths, cpus=8) == 1


def test_the_tightest_limit_along_the_cgroup_path_counts(node: Cgroups) -> None:
    """On a node without a cgroup namespace the pod's limit may sit on a parent of the container's cgroup."""
    node.v2("/kubepods/pod1/ctr", memory_max="max", cpu_max="max 100000")
    node.write("sys/fs/cgroup/kubepods/pod1/memory.max", f"{3 * GIB}\n")
    node.write("sys/fs/cgroup/kubepods/cpu.max", "400000 100000\n")
    resources = read_resources(node.paths, cpus=32)
    assert (resources.memory, resources.cpu_quota) == (3 * GIB, 4.0)
    assert jobs_for(resources) == 4


def test_a_host_path_the_container_cannot_see_falls_back_to_its_own_cgroup_root(node: Cgroups) -> None:
    node.v2("/", memory_max=str(2 * GIB))
    node.write("proc/self/cgroup", "0::/kubepods/pod1/ctr\n")  # no cgroup namespace: the host's path
    assert default_jobs(node.paths, cpus=8) == 3


def test_cgroup_v1_memory_and_cpu(node: Cgroups) -> None:
    node.v1("/", memory_limit_in_bytes=str(2 * GIB), cpu_cfs_quota_us="300000", cpu_cfs_period_us="100000")
    resources = read_resources(node.paths, cpus=8)
    assert (resources.memory, resources.cpu_quota, resources.memory_from) == (2 * GIB, 3.0, "cgroup v1")
    assert jobs_for(resources) == 3


def test_cgroup_v1_without_limits_uses_the_machines_memory(node: Cgroups) -> None:
    """What this project's machines look like: v1, no quota (-1), LONG_MAX memory, 2 CPUs, 24 GiB."""
    node.v1(
        "/process_api/x", memory_limit_in_bytes="9223372036854771712", cpu_cfs_quota_us="-1", cpu_cfs_period_us="100000"
    )
    resources = read_resources(node.paths, cpus=2)
    assert (resources.cpu_quota, resources.memory, resources.memory_from) == (None, 24 * GIB, "machine")
    assert jobs_for(resources) == 2


def test_a_big_machine_with_little_memory_is_capped_by_its_memory(node: Cgroups) -> None:
    node.meminfo(8 * GIB)
    node.v2(memory_max="max", cpu_max="max 100000")
    assert default_jobs(node.paths, cpus=64) == (8 * GIB - (256 << 20)) // MEMORY_PER_JOB


@pytest.mark.parametrize("value", ["", "garbage", "-5", "12 34 56", "max max"])
def test_unreadable_values_are_no_limit(node: Cgroups, value: str) -> None:
    node.v2(memory_max=value, cpu_max=value)
    resources = read_resources(node.paths, cpus=4)
    assert resources.cpu_quota is None and resources.memory_from == "machine"
    assert jobs_for(resources) == 4


def test_nothing_readable_means_the_cpus(tmp_path: Path) -> None:
    resources = read_resources(HostPaths(tmp_path), cpus=3)
    assert resources == Resources(cpus=3, cpu_quota=None, memory=None, memory_from="unknown")
    assert jobs_for(resources) == 3


def test_at_least_one_job(node: Cgroups) -> None:
    node.v2(memory_max=str(128 << 20))
    assert default_jobs(node.paths, cpus=8) == 1


def test_the_builder_takes_its_default_from_here() -> None:
    from agent.build import service

    assert service.default_jobs() == default_jobs()
