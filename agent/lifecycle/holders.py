"""Who holds a module: modules that depend on it, processes with its device nodes open, and their pods."""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass

from agent.host.files import read_optional
from agent.host.paths import HostPaths

# kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod<uid>.slice/cri-containerd-<id>.scope
# (systemd driver, "_" in the uid) or kubepods/besteffort/pod<uid>/<id> (cgroupfs driver).
_POD = re.compile(r"pod([0-9a-f]{8}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{12})")
_CONTAINER = re.compile(r"(?:cri-containerd-|crio-|docker-|/)([0-9a-f]{64})(?:\.scope)?$")
DRI = "/dev/dri/"


@dataclass(frozen=True)
class Holder:
    """One thing keeping a module in use: a module, or a process with a device open (and its pod)."""

    kind: str  # "module" | "process"
    name: str  # module name, or the process's command
    pid: int = 0
    device: str = ""
    pod_uid: str = ""
    container: str = ""

    def describe(self) -> str:
        if self.kind == "module":
            return f"module {self.name}"
        where = f" in pod {self.pod_uid}" if self.pod_uid else ""
        return f"PID {self.pid} ({self.name}) has {self.device} open{where}"


def device_prefixes(modules: Sequence[str]) -> tuple[str, ...]:
    """Device nodes a GPU driver's users open: /dev/dri/* and nodes named after the driver's modules."""
    return (DRI, *(f"/dev/{m.replace('-', '_')}" for m in modules))


def module_holders(host: HostPaths, module: str) -> tuple[Holder, ...]:
    """Modules listed in /sys/module/<m>/holders."""
    try:
        names = sorted(p.name for p in (host.module_dir(module) / "holders").iterdir())
    except OSError:
        return ()
    return tuple(Holder("module", n) for n in names)


def process_holders(host: HostPaths, prefixes: Sequence[str]) -> tuple[Holder, ...]:
    """Processes with an open file descriptor on a device node starting with one of ``prefixes``."""
    found: list[Holder] = []
    try:
        pids = sorted(int(p.name) for p in host.proc.iterdir() if p.name.isdigit())
    except OSError:
        return ()
    for pid in pids:
        fd_dir = host.proc / str(pid) / "fd"
        try:
            fds = list(os.scandir(fd_dir))
        except OSError:
            continue  # gone, or not ours to read
        devices = set()
        for fd in fds:
            try:
                target = os.readlink(fd.path)
            except OSError:
                continue
            if any(target == p or target.startswith(p) for p in prefixes):
                devices.add(target)
        if devices:
            found.extend(_process(host, pid, device) for device in sorted(devices))
    return tuple(found)


def _process(host: HostPaths, pid: int, device: str) -> Holder:
    base = host.proc / str(pid)
    cmdline = (read_optional(base / "cmdline") or "").replace("\x00", " ").strip()
    command = cmdline[:120] or (read_optional(base / "comm") or "?").strip()
    pod, container = pod_of(read_optional(base / "cgroup") or "")
    return Holder("process", command, pid=pid, device=device, pod_uid=pod, container=container)


def pod_of(cgroup: str) -> tuple[str, str]:
    """(pod UID, container ID) from a /proc/<pid>/cgroup text; empty strings outside Kubernetes."""
    for line in cgroup.splitlines():
        path = line.split(":", 2)[-1]
        match = _POD.search(path)
        if match:
            container = _CONTAINER.search(path)
            return match.group(1).replace("_", "-"), container.group(1)[:12] if container else ""
    return "", ""


def find_holders(host: HostPaths, module: str, driver_modules: Sequence[str]) -> tuple[Holder, ...]:
    """Everything holding ``module``: its holder modules, then processes with the driver's devices open."""
    return module_holders(host, module) + process_holders(host, device_prefixes(driver_modules))
