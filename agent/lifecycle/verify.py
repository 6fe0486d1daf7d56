"""Verification after a load: our modules are the ones loaded, every GPU has a render node, a clean log."""

from __future__ import annotations

import errno
import os
import re
import threading
import time
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path

from agent.discovery.gpus import PciGpu, scan_gpus
from agent.discovery.modules import loaded_modules
from agent.host.paths import HostPaths, module_key
from agent.recipes.model import Recipe
from agent.tree import DriverTree

# Kernel log lines that mean the driver is not really working, whatever modprobe said.
_PROBLEMS = (
    re.compile(r"Unknown symbol"),
    re.compile(r"firmware.*(fail|error|bad magic|not found)", re.IGNORECASE),
    re.compile(r"Direct firmware load for .* failed"),
    # Only a rejection: "module verification failed: signature and/or required key missing - tainting
    # kernel" is the taint notice every unsigned module gets where signatures are not enforced.
    re.compile(r"Key was rejected|Loading of unsigned module is rejected", re.IGNORECASE),
)


@dataclass(frozen=True)
class Record:
    """One kernel log record: its sequence number and message."""

    seq: int
    message: str


class Kmsg:
    """The kernel log through /dev/kmsg: records carry sequence numbers, so "since the load" is exact."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def records(self) -> list[Record]:
        """Every record still in the kernel's buffer (empty when the log cannot be read)."""
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK)
        except OSError:
            return []
        chunks: list[bytes] = []
        try:
            while True:
                try:
                    chunk = os.read(fd, 8192)
                except OSError as e:
                    if e.errno == errno.EPIPE:  # a record was overwritten while we read: skip it
                        continue
                    if e.errno in (errno.EAGAIN, errno.EINVAL):
                        break
                    raise
                if not chunk:
                    break
                chunks.append(chunk)
        finally:
            os.close(fd)
        return parse_kmsg(b"".join(chunks).decode(errors="replace"))

    def mark(self) -> int:
        """The sequence number of the last record now (-1 when the log is empty or unreadable)."""
        records = self.records()
        return records[-1].seq if records else -1

    def since(self, mark: int) -> list[Record]:
        return [r for r in self.records() if r.seq > mark]


def parse_kmsg(text: str) -> list[Record]:
    """ "prio,seq,usec,flags;message" lines; continuation lines (" KEY=value") are skipped."""
    out = []
    for line in text.splitlines():
        if not line or line.startswith(" "):
            continue
        head, sep, message = line.partition(";")
        fields = head.split(",")
        if not sep or len(fields) < 3 or not fields[1].isdigit():
            continue
        out.append(Record(int(fields[1]), message))
    return out


# "i915: Unknown symbol drm_dev_register (err -2)": the kernel refused to link that module.
_UNKNOWN_SYMBOL = re.compile(r"^(?P<module>[\w-]+): Unknown symbol ")
# Unknown-symbol lines shown verbatim per module; the rest are counted (the real i915 logs ~100).
SYMBOL_LINES_SHOWN = 3


def log_problems(records: Sequence[Record], names: Sequence[str], loaded: Collection[str] = ()) -> list[str]:
    """Messages about the driver (naming one of ``names``) that mean a failed firmware load, an
    unresolved symbol or a rejected module; other drivers' complaints are not ours to judge.

    The kernel prints "Unknown symbol" only while refusing a module, so those lines of a module in
    ``loaded`` come from an earlier attempt (KMM's worker retries until its modprobe works) and no
    longer count. Each module's unknown symbols after the first few are folded into one count.
    """
    out: list[str] = []
    folded: dict[str, int] = {}
    for r in records:
        if not any(n in r.message for n in names) or not any(p.search(r.message) for p in _PROBLEMS):
            continue
        refused = _UNKNOWN_SYMBOL.match(r.message)
        if refused is None:
            out.append(r.message)
            continue
        module = module_key(refused["module"])
        if module in loaded:
            continue
        folded[module] = folded.get(module, 0) + 1
        if folded[module] <= SYMBOL_LINES_SHOWN:
            out.append(r.message)
    out += [
        f"{module}: {count - SYMBOL_LINES_SHOWN} more Unknown symbol lines"
        for module, count in folded.items()
        if count > SYMBOL_LINES_SHOWN
    ]
    return out


def driver_names(recipe: Recipe) -> list[str]:
    """What the driver's kernel messages mention: its module names and its firmware folders."""
    names = {recipe.main_module, *recipe.load_order, *recipe.after, *(m.name for m in recipe.module_files)}
    names |= {module_key(n) for n in names}
    names |= {f.name.split("/")[0] + "/" for f in recipe.firmware_files if "/" in f.name}
    return sorted(names)


@dataclass(frozen=True)
class Verification:
    """What verification found: problems (empty when verified) and facts worth logging."""

    problems: tuple[str, ...]
    gpus: int
    render_nodes: tuple[str, ...]
    # The kernel log's part of ``problems``: why the kernel refused or broke the driver.
    kernel_log: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.problems


class Verifier:
    """Checks the loaded driver against the tree; polls for GPU render nodes until a deadline."""

    def __init__(
        self, *, host: HostPaths, kmsg: Kmsg, stop: threading.Event, gpu_deadline: float = 30.0, poll: float = 0.2
    ) -> None:
        self.host = host
        self.kmsg = kmsg
        self.stop = stop
        self.gpu_deadline = gpu_deadline
        self.poll = poll

    def modules(self, tree: DriverTree | None, recipe: Recipe) -> list[str]:
        """Problems with the loaded modules: main module missing, not ours (srcversion), no version marker."""
        main = module_key(recipe.main_module)
        loaded = loaded_modules(self.host, [main, *(m.name for m in tree.manifest.modules)] if tree else [main])
        problems = []
        module = loaded.get(main)
        if module is None:
            return [f"{main} is not loaded"]
        if recipe.version_marker and recipe.version_marker not in module.version:
            problems.append(
                f"{main} version {module.version or '(none)'!r} lacks {recipe.version_marker!r}: "
                "the in-tree driver is loaded, not the backport"
            )
        if tree is not None:
            for built in tree.manifest.modules:
                name = module_key(built.name)
                if name in loaded and built.srcversion and loaded[name].srcversion != built.srcversion:
                    problems.append(
                        f"{name} has srcversion {loaded[name].srcversion or '?'}, the tree's is {built.srcversion}: "
                        "another build of it is loaded"
                    )
        return problems

    def gpus(self, recipe: Recipe) -> tuple[list[str], list[PciGpu]]:
        """Supported GPUs not bound to the main module with a render node (polled until the deadline)."""
        deadline = time.monotonic() + self.gpu_deadline
        main = module_key(recipe.main_module)
        while True:
            gpus = [g for g in scan_gpus(self.host).gpus if g.device_id in recipe.device_ids]
            missing = [g for g in gpus if module_key(g.driver_module or g.driver) != main or not g.render_nodes]
            if not missing or time.monotonic() >= deadline or self.stop.wait(self.poll):
                problems = [
                    f"GPU {g.pci_id} at {g.address} is "
                    + (
                        f"bound to {g.driver}"
                        if g.driver and module_key(g.driver_module or g.driver) != main
                        else "not bound"
                        if not g.driver
                        else "bound but has no DRM render node"
                    )
                    + f" after {self.gpu_deadline:.0f}s"
                    for g in missing
                ]
                return problems, gpus

    def verify(
        self, tree: DriverTree | None, recipe: Recipe, kmsg_mark: int | None, *, others_load: bool = False
    ) -> Verification:
        """Every check; ``kmsg_mark`` None skips the kernel log (nothing was loaded by us).

        ``others_load``: someone else loads the driver (KMM, monitor mode) and may have tried more than
        once, so the log may hold refusals of modules that are loaded now: those no longer count.
        """
        problems = self.modules(tree, recipe)
        kernel_log: list[str] = []
        if kmsg_mark is not None:
            records = self.kmsg.since(kmsg_mark)
            # Names only (no sysfs reads): what is loaded now.
            loaded = loaded_modules(self.host, ()) if others_load else {}
            kernel_log = log_problems(records, driver_names(recipe), loaded)
            problems += [f"kernel log: {m}" for m in kernel_log]
        gpu_problems: list[str] = []
        gpus: list[PciGpu] = []
        if not problems:
            gpu_problems, gpus = self.gpus(recipe)
        nodes = tuple(n for g in gpus for n in g.render_nodes)
        return Verification(tuple(problems + gpu_problems), len(gpus), nodes, tuple(kernel_log))
