"""The boot images without booting: the vmlinux extraction, module order and the cpio the kernel unpacks."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from vm.initramfs import BOOT_MODULES, build_initramfs, module_name, resolve_modules
from vm.kernel import Kernel, extract_vmlinux
from vm.machine import Vm

pytestmark = pytest.mark.vm


def test_vmlinux_is_the_elf_kernel_of_the_image(vm: Vm) -> None:
    vmlinux, _ = vm.images()
    head = vmlinux.read_bytes()[:20]
    assert head[:4] == b"\x7fELF" and head[4] == 2  # 64-bit
    assert vm.kernel.release.encode() in vmlinux.read_bytes()


def test_extraction_refuses_a_file_that_is_not_a_bzimage(tmp_path: Path) -> None:
    bogus = tmp_path / "vmlinuz"
    bogus.write_bytes(b"\0" * 4096)
    with pytest.raises(RuntimeError, match="not a bzImage"):
        extract_vmlinux(bogus)


def test_modules_come_after_their_dependencies(vm_kernel: Kernel) -> None:
    order = [module_name(str(p)) for p in resolve_modules(vm_kernel, BOOT_MODULES)]
    assert set(BOOT_MODULES) <= set(order)
    assert len(order) == len(set(order))
    for before, after in (("virtio", "virtio_pci"), ("9pnet", "9pnet_virtio"), ("9pnet", "9p"), ("netfs", "9p")):
        assert order.index(before) < order.index(after), order


def test_initramfs_is_a_cpio_the_real_tool_reads(vm_kernel: Kernel, tool: Callable[[str], str], tmp_path: Path) -> None:
    image = build_initramfs(vm_kernel, Path(tool("busybox")), resolve_modules(vm_kernel, ["overlay"]))
    listing = subprocess.run([tool("cpio"), "-itv"], input=image, capture_output=True, check=True).stdout.decode()
    names = {line.split()[-1] if "->" not in line else line.split()[-3] for line in listing.splitlines()}
    assert {"init", "bin/busybox", "bin/sh", "dev/console", "modules/overlay.ko", "modules/order"} <= names
    console = next(line for line in listing.splitlines() if line.endswith("dev/console"))
    assert console.startswith("crw") and "5,   1" in console
