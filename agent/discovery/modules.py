"""Loaded kernel modules (procfs + sysfs) and which i915 is loaded: none, in-tree or the backport."""

from __future__ import annotations

import re
from dataclasses import dataclass

from agent.host.files import read_optional
from agent.host.paths import HostPaths, module_key

_BACKPORT_TAG = re.compile(r"using backports (\S+)")


@dataclass(frozen=True)
class LoadedModule:
    """One loaded module: refcount, the modules holding it, version and srcversion from sysfs."""

    name: str
    size: int
    refcount: int
    holders: tuple[str, ...]
    state: str
    version: str
    srcversion: str


@dataclass(frozen=True)
class DriverOrigin:
    """Which copy of a driver is loaded: "none", "in-tree" or "backport" (and the backport's tag)."""

    module: str
    origin: str
    version: str = ""
    backport_tag: str = ""
    srcversion: str = ""


def parse_proc_modules(text: str) -> dict[str, tuple[int, int, tuple[str, ...], str]]:
    """name → (size, refcount, users, state) from /proc/modules."""
    out: dict[str, tuple[int, int, tuple[str, ...], str]] = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) < 5:
            continue
        users = tuple(u for u in parts[3].split(",") if u and u != "-")
        try:
            out[parts[0]] = (int(parts[1]), int(parts[2]) if parts[2] != "-" else 0, users, parts[4])
        except ValueError:
            continue
    return out


def loaded_modules(host: HostPaths) -> dict[str, LoadedModule]:
    """Every module in /proc/modules, enriched with holders, version and srcversion from /sys/module."""
    text = read_optional(host.proc_modules)
    if text is None:
        return {}
    modules = {}
    for name, (size, refcount, users, state) in parse_proc_modules(text).items():
        modules[name] = module_info(host, name, size=size, refcount=refcount, users=users, state=state)
    return modules


def module_info(
    host: HostPaths,
    name: str,
    *,
    size: int = 0,
    refcount: int = 0,
    users: tuple[str, ...] = (),
    state: str = "Live",
) -> LoadedModule:
    """Read one module's sysfs facts (holders from /sys/module/<m>/holders when it exists)."""
    directory = host.module_dir(name)
    try:
        holders = tuple(sorted(p.name for p in (directory / "holders").iterdir()))
    except OSError:
        holders = users
    refcnt = read_optional(directory / "refcnt")
    return LoadedModule(
        name=name,
        size=size,
        refcount=int(refcnt) if refcnt and refcnt.strip().isdigit() else refcount,
        holders=holders,
        state=state,
        version=(read_optional(directory / "version") or "").strip(),
        srcversion=(read_optional(directory / "srcversion") or "").strip(),
    )


def driver_origin(modules: dict[str, LoadedModule], name: str = "i915", marker: str = "backported") -> DriverOrigin:
    """Tell the backport from the in-tree driver by its version string (the in-tree one has none)."""
    module = modules.get(module_key(name))
    if module is None:
        return DriverOrigin(module=name, origin="none")
    if marker in module.version:
        tag = _BACKPORT_TAG.search(module.version)
        return DriverOrigin(
            module=name,
            origin="backport",
            version=module.version,
            backport_tag=tag.group(1) if tag else "",
            srcversion=module.srcversion,
        )
    return DriverOrigin(module=name, origin="in-tree", version=module.version, srcversion=module.srcversion)
