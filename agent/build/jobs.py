"""How many compile jobs a build may run: the CPUs it may use, and the memory its cgroup allows.

`-j` set to every CPU under the pod's 2 GiB memory limit is OOM-killed during a real i915 build:
one compile job of that driver takes 300-500 MB. So the jobs are the smallest of the CPUs this
process may run on (affinity), its CPU quota, and the memory it may use (its cgroup's limit, else
the machine's) divided by what a job needs. The cgroup files are read through ``HostPaths`` of
the process's own root, where a container sees its own cgroup: v2 (cpu.max, memory.max and
memory.high, walking up to the root) and v1 (cpu.cfs_quota_us/cpu.cfs_period_us,
memory.limit_in_bytes).
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from agent.host.files import read_optional
from agent.host.paths import HostPaths
from agent.logs import get_logger

log = get_logger(__name__)

MEMORY_PER_JOB = 512 << 20  # above the 300-500 MB one i915 compile job takes
MEMORY_RESERVED = 256 << 20  # the agent, make and the linker's final steps beside the jobs
UNLIMITED_V1 = 1 << 62  # v1 writes "no limit" as a page-rounded LONG_MAX

N = TypeVar("N", int, float)


@dataclass(frozen=True)
class Resources:
    """What a build may use: CPUs it may run on, its CPU quota (CPUs) and memory (bytes), and whence."""

    cpus: int
    cpu_quota: float | None
    memory: int | None
    memory_from: str  # "cgroup v2", "cgroup v1", "machine" or "unknown"


def jobs_for(resources: Resources) -> int:
    """The make jobs ``resources`` allow: never more than the CPUs or the memory allow, at least one."""
    jobs = resources.cpus
    if resources.cpu_quota is not None:
        jobs = min(jobs, math.ceil(resources.cpu_quota))
    if resources.memory is not None:
        jobs = min(jobs, (resources.memory - MEMORY_RESERVED) // MEMORY_PER_JOB)
    return max(1, jobs)


def default_jobs(own: HostPaths | None = None, *, cpus: int | None = None) -> int:
    """The jobs for a build by this process (``own``: its own root, "/" in a container as on a node)."""
    resources = read_resources(own or HostPaths(Path("/")), cpus=cpus)
    jobs = jobs_for(resources)
    log.debug(
        "build_jobs",
        jobs=jobs,
        cpus=resources.cpus,
        cpu_quota=resources.cpu_quota,
        memory_mib=resources.memory >> 20 if resources.memory is not None else None,
        memory_from=resources.memory_from,
    )
    return jobs


def read_resources(own: HostPaths, *, cpus: int | None = None) -> Resources:
    """The CPUs, CPU quota and memory limit of this process's cgroups (the tightest along the path)."""
    if cpus is None:
        cpus = len(os.sched_getaffinity(0))
    groups = _groups(read_optional(own.proc_self_cgroup) or "")
    cgroup = own.cgroup_fs
    v2 = "" in groups and (cgroup / "cgroup.controllers").is_file()
    quota: float | None = None
    memory: int | None = None
    memory_from = "unknown"
    if "cpu" in groups:
        quota = _v1_quota(_folders(cgroup / _v1_mount(cgroup, "cpu"), groups["cpu"]))
    elif v2:
        quota = _least(_v2_quota(read_optional(f / "cpu.max")) for f in _folders(cgroup, groups[""]))
    if "memory" in groups:
        folders = _folders(cgroup / "memory", groups["memory"])
        memory = _least(_v1_bytes(read_optional(f / "memory.limit_in_bytes")) for f in folders)
        memory_from = "cgroup v1"
    elif v2:
        folders = _folders(cgroup, groups[""])
        memory = _least(_v2_bytes(read_optional(f / name)) for f in folders for name in ("memory.max", "memory.high"))
        memory_from = "cgroup v2"
    if memory is None:
        memory = _mem_total(read_optional(own.proc_meminfo) or "")
        memory_from = "machine" if memory is not None else "unknown"
    return Resources(cpus=max(1, cpus), cpu_quota=quota, memory=memory, memory_from=memory_from)


def _groups(text: str) -> dict[str, str]:
    """/proc/self/cgroup → {controller: path}; the v2 line ("0::/path") is under ""."""
    groups: dict[str, str] = {}
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, path = parts
        for controller in controllers.split(",") if controllers else [""]:
            groups[controller] = path.strip()
    return groups


def _v1_mount(cgroup: Path, controller: str) -> str:
    """The v1 mount holding ``controller`` ("cpu" is often mounted as "cpu,cpuacct")."""
    for candidate in (controller, "cpu,cpuacct", "cpuacct,cpu"):
        if (cgroup / candidate).is_dir():
            return candidate
    return controller


def _folders(mount: Path, path: str) -> list[Path]:
    """The cgroup folder for ``path`` under ``mount`` and its ancestors up to the mount.

    Inside a container the mount's root is the container's own cgroup, and /proc/self/cgroup may
    still name the host's path (no cgroup namespace): then only the mount's root is there.
    """
    relative = Path(path.lstrip("/"))
    folders = [mount / relative, *[mount / parent for parent in relative.parents]]
    existing = [f for f in folders if f.is_dir()]
    return existing or [mount]


def _least(values: Iterable[N | None]) -> N | None:
    """The smallest limit given (each level of the cgroup path may set one); None when none does."""
    found = [v for v in values if v is not None]
    return min(found) if found else None


def _v2_quota(text: str | None) -> float | None:
    """cpu.max: "max 100000" (no quota) or "200000 100000" (2 CPUs)."""
    fields = (text or "").split()
    if len(fields) != 2 or not fields[1].isdigit() or not fields[0].isdigit() or int(fields[1]) == 0:
        return None
    return int(fields[0]) / int(fields[1])


def _v1_quota(folders: list[Path]) -> float | None:
    quotas = []
    for folder in folders:
        quota, period = read_optional(folder / "cpu.cfs_quota_us"), read_optional(folder / "cpu.cfs_period_us")
        try:
            q, p = int((quota or "").strip()), int((period or "").strip())
        except ValueError:
            continue
        if q > 0 and p > 0:
            quotas.append(q / p)
    return min(quotas) if quotas else None


def _v2_bytes(text: str | None) -> int | None:
    value = (text or "").strip()
    return int(value) if value.isdigit() else None  # "max": no limit


def _v1_bytes(text: str | None) -> int | None:
    value = (text or "").strip()
    if not value.isdigit() or int(value) >= UNLIMITED_V1:
        return None
    return int(value)


def _mem_total(meminfo: str) -> int | None:
    for line in meminfo.splitlines():
        name, _, rest = line.partition(":")
        if name == "MemTotal":
            fields = rest.split()
            if fields and fields[0].isdigit():
                return int(fields[0]) * 1024
    return None
