"""Loaded kernel modules (procfs + sysfs) and which i915 is loaded: none, in-tree or the backport."""

from __future__ import annotations

import re
from collections.abc import Callable, Collection
from dataclasses import dataclass

from agent.host.files import read_optional
from agent.host.paths import HostPaths, module_key

_BACKPORT_TAG = re.compile(r"using backports (\S+)")
# What `detect` reports of the loaded modules (and so reads version and srcversion of).
RELEVANT_PREFIXES = ("i915", "intel_vsec", "mei", "drm", "iaf", "pmt")


@dataclass(frozen=True)
class LoadedModule:
    """One loaded module: refcount, the modules holding it, version, srcversion and taint flags from sysfs.

    ``taint`` holds "O" for a module built out of tree (the backport), which the kernel's own modules
    never carry: it tells ours from theirs where a module has no srcversion (no MODULE_VERSION).
    """

    name: str
    size: int
    refcount: int
    holders: tuple[str, ...]
    state: str
    version: str
    srcversion: str
    taint: str = ""


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


def loaded_modules(
    host: HostPaths, detail: Collection[str] | Callable[[str], bool] | None = None
) -> dict[str, LoadedModule]:
    """Every module in /proc/modules (size, refcount, holders, state), with version and srcversion read from
    /sys/module for the modules ``detail`` names or accepts (all when None; the others have them empty).

    /proc/modules already carries the refcount and the holding modules; sysfs costs two reads a module, which
    adds up on a GPU node with a hundred modules loaded and a lifecycle that looks several times per apply.
    """
    text = read_optional(host.proc_modules)
    if text is None:
        return {}
    wanted = detail if detail is None or callable(detail) else frozenset(map(module_key, detail)).__contains__
    modules = {}
    for name, (size, refcount, users, state) in parse_proc_modules(text).items():
        if wanted is None or wanted(name):
            modules[name] = module_info(host, name, size=size, refcount=refcount, users=users, state=state)
        else:
            modules[name] = LoadedModule(name, size, refcount, tuple(sorted(users)), state, "", "")
    return modules


def relevant(name: str, driver_module: str = "i915") -> bool:
    """The modules a GPU node's report shows: the driver, i915 and what they depend on or are used with."""
    return name == module_key(driver_module) or name.startswith(RELEVANT_PREFIXES)


def module_info(
    host: HostPaths,
    name: str,
    *,
    size: int = 0,
    refcount: int = 0,
    users: tuple[str, ...] = (),
    state: str = "Live",
) -> LoadedModule:
    """One module's version and srcversion from /sys/module/<m>; refcount and holders as /proc/modules says."""
    directory = host.module_dir(name)
    return LoadedModule(
        name=name,
        size=size,
        refcount=refcount,
        holders=tuple(sorted(users)),
        state=state,
        version=(read_optional(directory / "version") or "").strip(),
        srcversion=(read_optional(directory / "srcversion") or "").strip(),
        taint=(read_optional(directory / "taint") or "").strip(),
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
