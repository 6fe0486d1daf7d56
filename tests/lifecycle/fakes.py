"""A fake kernel for lifecycle unit tests: modprobe/rmmod acting on a FakeHost's /proc and /sys, a fake tree.

Decisions only: the real load, firmware and unload behaviour is proven on a real kernel in tests/scenarios.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fakehost import FakeHost

from agent.discovery.node import NodeFacts, discover
from agent.host.runner import Completed, Runner
from agent.lifecycle.engine import Lifecycle, Target
from agent.lifecycle.faults import FaultInjector
from agent.lifecycle.firmware import Firmware
from agent.lifecycle.journal import Journal
from agent.lifecycle.modules import Modules
from agent.lifecycle.verify import Kmsg, Verifier
from agent.metrics import Metrics
from agent.recipes.loader import load_recipe
from agent.recipes.model import Recipe
from agent.tree import BuiltFirmware, BuiltModule, DriverTree, Manifest, write_manifest

REPO = Path(__file__).resolve().parents[2]
RECIPE = REPO / "tests/recipes/testgpu.toml"
FIRMWARE = REPO / "tests/driver/firmware"
KERNEL = "6.1.0-57-amd64"
GPU = "0000:03:00.0"
DEPS = {"testgpu": ("testgpu_compat", "testgpu_vsec"), "testgpu_compat": (), "testgpu_vsec": ()}
VERSION = f"1.0.0 backported to {KERNEL} using backports testgpu-1.0"


def recipe() -> Recipe:
    return load_recipe(RECIPE)


def srcversion(name: str, flavour: str = "tree") -> str:
    return hashlib.sha256(f"{flavour}:{name}".encode()).hexdigest()[:23].upper()


def make_tree(
    root: Path,
    *,
    kernel: str = KERNEL,
    drop_firmware: str = "",
    signed: bool = False,
    in_tree_deps: Sequence[str] = (),
    no_srcversion: Sequence[str] = (),
    build: str = "tree",
) -> DriverTree:
    """A driver tree shaped like `build`'s output, with the test driver's real firmware blobs.

    ``in_tree_deps``: the kernel's own modules the main module needs (as the real i915 needs drm).
    ``no_srcversion``: modules built without MODULE_VERSION (the real mei-gsc): no srcversion.
    ``build``: another name makes another build of the same driver (other srcversions and digest).
    """
    updates = root / "opt/lib/modules" / kernel / "updates"
    updates.mkdir(parents=True)
    modules = []
    for name, deps in DEPS.items():
        ko = updates / f"{name}.ko"
        ko.write_bytes(f"fake module {name}".encode())
        modules.append(
            BuiltModule(
                name=name,
                path=f"opt/lib/modules/{kernel}/updates/{name}.ko",
                sha256=hashlib.sha256(ko.read_bytes()).hexdigest(),
                srcversion="" if name in no_srcversion else srcversion(name, build),
                vermagic=f"{kernel} SMP mod_unload modversions",
                version=VERSION if name == "testgpu" else "",
                depends=(*deps, *in_tree_deps) if name == "testgpu" else deps,
            )
        )
    (updates.parent / "modules.dep").write_text(
        "".join(f"updates/{n}.ko:{''.join(f' updates/{d}.ko' for d in deps)}\n" for n, deps in DEPS.items())
    )
    firmware = []
    for blob in sorted((FIRMWARE / "testgpu").iterdir()):
        name = f"testgpu/{blob.name}"
        dest = root / "firmware" / name
        dest.parent.mkdir(parents=True, exist_ok=True)
        if name != drop_firmware:
            dest.write_bytes(blob.read_bytes())
        data = blob.read_bytes()
        firmware.append(BuiltFirmware(name, f"firmware/{name}", hashlib.sha256(data).hexdigest(), len(data)))
    manifest = Manifest(
        recipe="testgpu-1.0",
        driver_tag="testgpu-1.0",
        kernel=kernel,
        inputs_digest=hashlib.sha256(build.encode()).hexdigest(),
        modules=tuple(modules),
        firmware=tuple(firmware),
        signed=signed,
    )
    write_manifest(root, manifest)
    return DriverTree(root=root, manifest=manifest)


def debian_node(root: Path, *, gpu: bool = True, in_tree_i915: bool = False) -> FakeHost:
    """Debian 12 (the kernel the test recipe supports), one Flex 170 without a driver, a kernel log."""
    host = FakeHost(root)
    host.kernel(KERNEL, upstream="6.1.192", debian=True)
    host.os_release("debian", "12", "Debian GNU/Linux 12 (bookworm)")
    host.write("proc/sys/kernel/random/boot_id", "11111111-2222-3333-4444-555555555555\n")
    host.write("dev/kmsg", "6,1,100,-;Linux version 6.1.0-57-amd64\n")
    (root / "dev/dri").mkdir(parents=True)
    if gpu:
        host.pci_gpu(GPU, "56c0")
    if in_tree_i915:
        host.module("drm", refcount=1, holders=("i915",), srcversion=srcversion("drm", "in-tree"))
        host.module("i915", srcversion=srcversion("i915", "in-tree"), version="")
    return host


class FakeKernel(Runner):
    """modprobe/rmmod on a FakeHost: loads dependencies first, binds the GPU, logs to /dev/kmsg.

    ``fail``: module name → kernel log line; its modprobe fails and the line is logged.
    ``log_after_load``: a line logged after a successful load (e.g. an "Unknown symbol" warning).
    """

    def __init__(
        self,
        host: FakeHost,
        *,
        fail: Mapping[str, str] | None = None,
        log_after_load: str = "",
        in_tree_deps: Sequence[str] = (),
        no_srcversion: Sequence[str] = (),
    ) -> None:
        super().__init__()
        self.host = host
        self.in_tree_deps = tuple(in_tree_deps)
        self.no_srcversion = frozenset(no_srcversion)
        # Builds (manifest inputs_digest) whose load logs an Unknown symbol: they load, then fail verification.
        self.broken_builds: set[str] = set()
        self.fail = dict(fail or {})
        self.log_after_load = log_after_load
        self.calls: list[list[str]] = []
        self.seq = 1
        self.srcversions: dict[str, str] = {}
        self.on_call: Callable[[list[str]], None] | None = None

    # --- the kernel's view ------------------------------------------------------------------
    def modules(self) -> dict[str, tuple[int, list[str]]]:
        return self.host._modules

    def log(self, message: str) -> None:
        self.seq += 1
        with (self.host.root / "dev/kmsg").open("a") as f:
            f.write(f"3,{self.seq},{self.seq * 100},-;{message}\n")

    def insert(self, name: str, srcver: str, version: str = "", *, taint: str = "") -> None:
        self.host.module(name, srcversion=srcver, version=version, taint=taint)
        self.log(f"{name}: loaded")

    def insert_ours(self, name: str, base: Path) -> None:
        """A module from the tree at ``base`` (a staged tree's opt/): out of tree and unsigned ("OE"), with
        the srcversion its manifest names (the real kernel reads it from the .ko)."""
        manifest = json.loads((base.parent / "manifest.json").read_text())
        srcver = next(m["srcversion"] for m in manifest["modules"] if m["name"] == name)
        self.insert(name, srcver, VERSION if name == "testgpu" else "", taint="OE")

    def remove(self, name: str) -> None:
        mods = self.modules()
        del mods[name]
        for other, (rc, holders) in list(mods.items()):
            if name in holders:
                holders.remove(name)
                mods[other] = (rc - 1, holders)
                directory = self.host.paths.module_dir(other)
                (directory / "refcnt").write_text(f"{rc - 1}\n")
                (directory / "holders" / name).rmdir()
        import shutil

        shutil.rmtree(self.host.paths.module_dir(name))
        self._rewrite()

    def hold(self, name: str, holder: str) -> None:
        mods = self.modules()
        rc, holders = mods[name]
        holders.append(holder)
        mods[name] = (rc + 1, holders)
        directory = self.host.paths.module_dir(name)
        (directory / "refcnt").write_text(f"{rc + 1}\n")
        (directory / "holders" / holder).mkdir()
        self._rewrite()

    def use(self, name: str, delta: int = 1) -> None:
        """An open device handle: refcount only, no holder module."""
        mods = self.modules()
        rc, holders = mods[name]
        mods[name] = (rc + delta, holders)
        (self.host.paths.module_dir(name) / "refcnt").write_text(f"{rc + delta}\n")
        self._rewrite()

    def _rewrite(self) -> None:
        lines = [
            f"{n} 4096 {rc} {','.join(h) + ',' if h else '-'} Live 0x0000000000000000"
            for n, (rc, h) in self.modules().items()
        ]
        self.host.write("proc/modules", "".join(line + "\n" for line in lines))

    def bind_gpu(self, driver: str) -> None:
        device = self.host.root / "sys/devices/pci0000:00" / GPU
        if not device.exists():
            return
        drv = self.host.root / "sys/bus/pci/drivers" / driver
        drv.mkdir(parents=True, exist_ok=True)
        if not (drv / "module").is_symlink():
            (drv / "module").symlink_to(os.path.relpath(self.host.paths.module_dir(driver), drv))
        if not (device / "driver").is_symlink():
            (device / "driver").symlink_to(os.path.relpath(drv, device))
        (device / "drm/card0").mkdir(parents=True, exist_ok=True)
        (device / "drm/renderD128").mkdir(parents=True, exist_ok=True)

    def unbind_gpu(self) -> None:
        device = self.host.root / "sys/devices/pci0000:00" / GPU
        if (device / "driver").is_symlink():
            (device / "driver").unlink()
        for node in ("card0", "renderD128"):
            if (device / "drm" / node).exists():
                (device / "drm" / node).rmdir()

    # --- commands ---------------------------------------------------------------------------
    def run(self, argv: Sequence[str], **kwargs: Any) -> Completed:  # type: ignore[override]
        from agent.errors import CommandError

        args = [str(a) for a in argv]
        self.calls.append(args)
        if self.on_call:
            self.on_call(args)
        if args[0] == "rmmod":  # like kmod's: each module in turn, going on after a failure
            errors = []
            for name in args[1:]:
                rc, holders = self.modules()[name]
                if rc or holders:
                    errors.append(f"rmmod: ERROR: Module {name} is in use")
                    continue
                self.remove(name)
                if name in ("testgpu", "i915"):
                    self.unbind_gpu()
            if errors:
                raise CommandError(args, 1, "\n".join(errors))
            return Completed(args, 0, "", 0.0)
        if args[0] == "depmod":  # depmod -b BASE KERNEL: the index of what was staged there
            base, kernel = Path(args[2]), args[3]
            folder = base / "lib/modules" / kernel
            names = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*.ko"))
            (folder / "modules.dep").write_text("".join(f"{n}:\n" for n in names))
            return Completed(args, 0, "", 0.0)
        if args[0] == "modprobe" and "-S" in args:
            name, base = args[args.index("-S") + 2], Path(args[args.index("-d") + 1])
            if name in self.fail:
                for dep in DEPS[name]:
                    if dep not in self.modules():
                        self.insert_ours(dep, base)
                self.log(self.fail[name])
                raise CommandError(args, 1, f"modprobe: ERROR: could not insert '{name}': Unknown symbol in module")
            missing = [d for d in self.in_tree_deps if name == "testgpu" and d not in self.modules()]
            for dep in DEPS[name]:
                if dep not in self.modules():
                    self.insert_ours(dep, base)
            if missing:  # what the real kernel says when drm is not loaded and modules.dep does not name it
                for dep in missing:
                    self.log(f"{name}: Unknown symbol {dep}_dev_register (err -2)")
                raise CommandError(args, 1, f"modprobe: ERROR: could not insert '{name}': Unknown symbol in module")
            for dep in DEPS[name]:
                self.hold(dep, name)
            self.insert_ours(name, base)
            for dep in self.in_tree_deps if name == "testgpu" else ():
                self.hold(dep, name)
            if self.log_after_load:
                self.log(self.log_after_load)
            if json.loads((base.parent / "manifest.json").read_text())["inputs_digest"] in self.broken_builds:
                self.log(f"{name}: Unknown symbol a_symbol_this_build_needs (err -2)")
            if name == "testgpu":
                self.bind_gpu("testgpu")
            return Completed(args, 0, "", 0.0)
        if args[0] == "modprobe":  # the node's own modules: modprobe -d <host root> [-a] NAME...
            assert args[1:3] == ["-d", str(self.host.root)], f"an in-tree modprobe outside the host root: {args}"
            names = args[4:] if args[3] == "-a" else args[3:4]
            assert len(names) == 1 or args[3] == "-a", f"several modules need -a: {args}"
            for name in names:
                if name == "i915":
                    if "drm" not in self.modules():
                        self.insert("drm", srcversion("drm", "in-tree"))
                    self.insert("i915", srcversion("i915", "in-tree"))
                    self.hold("drm", "i915")
                else:
                    self.insert(name, srcversion(name, "in-tree"))
            return Completed(args, 0, "", 0.0)
        raise AssertionError(f"the fake kernel does not know {args}")


def snapshot(host: FakeHost) -> dict[str, Any]:
    """What a person would check on the node: modules, firmware path and files, GPU binding."""
    files = {}
    for folder in ("var/lib/firmware", "lib/firmware"):
        base = host.root / folder
        if base.exists():
            files.update({str(p.relative_to(host.root)): p.read_bytes() for p in base.rglob("*") if p.is_file()})
    dirs = sorted(
        str(p.relative_to(host.root))
        for folder in ("var/lib/firmware", "lib/firmware")
        if (host.root / folder).exists()
        for p in (host.root / folder).rglob("*")
        if p.is_dir()
    )
    raw = (host.root / "sys/module/firmware_class/parameters/path").read_bytes()
    return {
        "modules": {n: (rc, sorted(h)) for n, (rc, h) in host._modules.items()},
        "firmware_path": raw.rstrip(b"\n").rstrip(b"\x00"),
        "files": files,
        "dirs": dirs,
    }


class Crash(BaseException):
    """Raised where INTEL_GPU_AGENT_FAULT would SIGKILL the process."""


def _raise_crash(point: str) -> None:
    raise Crash(point)


def raising_faults(spec: str | None) -> FaultInjector:
    """The fault hook, raising ``Crash`` instead of killing the test process."""
    return FaultInjector(spec, die=_raise_crash)


@dataclass
class Node:
    """A fake node and everything needed to run the engine on it."""

    host: FakeHost
    kernel: FakeKernel
    target: Target
    tmp: Path
    metrics: Metrics

    def engine(self, fault: str | None = None, *, gpu_deadline: float = 0.5) -> Lifecycle:
        """A fresh engine over the on-disk journal, as after a process restart."""
        paths = self.host.paths
        kmsg = Kmsg(paths.dev_kmsg)
        return Lifecycle(
            host=paths,
            journal=Journal(paths.state_dir / "journal.json", root=paths.root, faults=raising_faults(fault)),
            firmware=Firmware(host=paths),
            modules=Modules(host=paths, runner=self.kernel),
            verifier=Verifier(host=paths, kmsg=kmsg, stop=threading.Event(), gpu_deadline=gpu_deadline, poll=0.01),
            kmsg=kmsg,
            metrics=self.metrics,
        )

    def facts(self) -> NodeFacts:
        return discover(self.host.paths, use_udev=False, driver_module="testgpu")


def make_node(
    tmp_path: Path,
    *,
    in_tree_i915: bool = True,
    gpu: bool = True,
    in_tree_deps: Sequence[str] = (),
    no_srcversion: Sequence[str] = (),
    **kernel: object,
) -> Node:
    """A Debian node; ``in_tree_deps`` makes the driver need the kernel's own modules (drm), which the node has."""
    host = debian_node(tmp_path / "host", gpu=gpu, in_tree_i915=in_tree_i915)
    if in_tree_deps:
        host.write(
            f"lib/modules/{KERNEL}/modules.dep",
            "".join(f"kernel/drivers/gpu/drm/{d}.ko:\n" for d in (*in_tree_deps, "i915/i915")),
        )
    tree = make_tree(tmp_path / "tree", in_tree_deps=in_tree_deps, no_srcversion=no_srcversion)
    fake = FakeKernel(host, in_tree_deps=in_tree_deps, no_srcversion=no_srcversion, **kernel)  # type: ignore[arg-type]
    return Node(host, fake, Target(tree, recipe()), tmp_path, Metrics())
