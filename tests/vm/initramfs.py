"""The boot initramfs: busybox, the modules that reach the host root (virtio, 9p, overlay) and /init."""

from __future__ import annotations

import gzip
import hashlib
import lzma
import os
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from vm.kernel import Kernel, KernelError, file_sha256, module_name

INIT_SCRIPT = Path(__file__).resolve().parent / "init.sh"
# What the guest needs before it can mount the host root: the virtio PCI transport, 9p over virtio, overlay.
# Built in on some kernels (6.12 builds virtio_pci in), modules on others: modules.builtin says which.
BOOT_MODULES = ("virtio_pci", "9pnet_virtio", "9p", "overlay")
# The busybox applets /init uses; each becomes a link in /bin.
APPLETS = ("sh", "mount", "insmod", "mkdir", "cat", "cut", "echo", "poweroff", "switch_root")
# Bumped when the image layout changes in a way the inputs' hashes do not show.
LAYOUT_VERSION = "1"


def resolve_modules(kernel: Kernel, wanted: Iterable[str]) -> list[Path]:
    """Module files for ``wanted`` and their dependencies, in an order insmod accepts (deps first).

    Reads modules.dep directly; modules built into the kernel (modules.builtin) need no file.
    """
    builtin = kernel.builtin_modules()
    deps: dict[str, list[str]] = {}
    by_name: dict[str, str] = {}
    for line in (kernel.modules / "modules.dep").read_text().splitlines():
        target, _, rest = line.partition(":")
        deps[target] = rest.split()
        by_name[module_name(target)] = target

    ordered: list[str] = []

    def visit(target: str, chain: tuple[str, ...]) -> None:
        if target in ordered:
            return
        if target in chain:
            raise KernelError(f"module dependency loop: {' -> '.join((*chain, target))}")
        for dep in deps.get(target, []):
            visit(dep, (*chain, target))
        ordered.append(target)

    for name in wanted:
        key = name.replace("-", "_")
        if key in by_name:
            visit(by_name[key], ())
        elif key not in builtin:
            raise KernelError(f"module {name} is neither in {kernel.modules}/modules.dep nor built in")
    return [kernel.modules / target for target in ordered]


def module_bytes(path: Path) -> bytes:
    """A module file's content, uncompressed (busybox insmod takes plain ELF objects)."""
    data = path.read_bytes()
    if path.name.endswith(".ko.xz"):
        return lzma.decompress(data)
    if path.name.endswith(".ko.gz"):
        return gzip.decompress(data)
    if path.name.endswith(".ko.zst"):
        raise KernelError(f"{path}: zstd-compressed modules are not supported by the VM initramfs")
    return data


@dataclass
class Cpio:
    """An in-memory cpio archive in the "newc" format the kernel unpacks an initramfs from."""

    chunks: list[bytes] = field(default_factory=list)
    inode: int = 1

    @staticmethod
    def _pad(data: bytes) -> bytes:
        return data + b"\0" * (-len(data) % 4)

    def add(self, name: str, mode: int, data: bytes = b"", rdev: tuple[int, int] = (0, 0)) -> None:
        """One entry; ``mode`` includes the file type bits. Timestamps are 0 so images are reproducible."""
        encoded = name.encode() + b"\0"
        fields = (self.inode, mode, 0, 0, 1, 0, len(data), 0, 0, rdev[0], rdev[1], len(encoded), 0)
        header = b"070701" + b"".join(b"%08X" % value for value in fields)
        self.chunks.append(self._pad(header + encoded))
        self.chunks.append(self._pad(data))
        self.inode += 1

    def directory(self, name: str) -> None:
        self.add(name, 0o040755)

    def file(self, name: str, data: bytes, executable: bool = False) -> None:
        self.add(name, 0o100755 if executable else 0o100644, data)

    def symlink(self, name: str, target: str) -> None:
        self.add(name, 0o120777, target.encode())

    def char_device(self, name: str, major: int, minor: int) -> None:
        self.add(name, 0o020600, rdev=(major, minor))

    def finish(self) -> bytes:
        self.add("TRAILER!!!", 0)
        return b"".join(self.chunks)


def _is_static(elf: bytes) -> bool:
    """Whether an x86-64 ELF executable has no program interpreter (PT_INTERP)."""
    (phoff,) = struct.unpack_from("<Q", elf, 0x20)
    phentsize, phnum = struct.unpack_from("<HH", elf, 0x36)
    return all(struct.unpack_from("<I", elf, phoff + i * phentsize)[0] != 3 for i in range(phnum))


def build_initramfs(kernel: Kernel, busybox: Path, modules: Sequence[Path]) -> bytes:
    """The initramfs image: busybox, ``modules`` in load order and /init."""
    box = busybox.read_bytes()
    if not box.startswith(b"\x7fELF") or not _is_static(box):
        raise KernelError(f"{busybox} is not a static executable: apt-get install busybox-static")
    archive = Cpio()
    for folder in ("bin", "dev", "proc", "sys", "modules"):
        archive.directory(folder)
    # The kernel opens /dev/console for /init's output before /init mounts devtmpfs.
    archive.char_device("dev/console", 5, 1)
    archive.file("bin/busybox", box, executable=True)
    for applet in APPLETS:
        archive.symlink(f"bin/{applet}", "busybox")
    names = []
    for path in modules:
        name = path.name.split(".ko", 1)[0] + ".ko"
        archive.file(f"modules/{name}", module_bytes(path))
        names.append(name)
    archive.file("modules/order", "".join(f"{n}\n" for n in names).encode())
    archive.file("init", INIT_SCRIPT.read_bytes(), executable=True)
    return archive.finish()


def cached_initramfs(kernel: Kernel, busybox: Path, cache: Path) -> Path:
    """The boot initramfs for ``kernel`` in ``cache``, rebuilt only when one of its inputs changes."""
    modules = resolve_modules(kernel, BOOT_MODULES)
    key = hashlib.sha256(LAYOUT_VERSION.encode())
    for path in (INIT_SCRIPT, busybox, *modules):
        key.update(f"{path}:{file_sha256(path)}\n".encode())
    target = cache / f"initramfs-{kernel.release}-{key.hexdigest()[:16]}.cpio"
    if not target.exists():
        cache.mkdir(parents=True, exist_ok=True)
        temporary = target.with_name(f".{target.name}.{os.getpid()}")
        temporary.write_bytes(build_initramfs(kernel, busybox, modules))
        os.replace(temporary, target)
    return target
