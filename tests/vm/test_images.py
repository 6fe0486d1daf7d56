"""The boot images without booting: the vmlinux extraction, module order and the cpio the kernel unpacks."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from vm.initramfs import BOOT_MODULES, build_initramfs, resolve_modules
from vm.kernel import SERIES, Kernel, KernelError, extract_vmlinux, module_name
from vm.machine import Vm

pytestmark = pytest.mark.vm


@pytest.mark.parametrize("series", SERIES)
def test_vmlinux_is_the_elf_kernel_of_the_image(series: str, vm_for: Callable[[str], Vm]) -> None:
    vm = vm_for(series)
    vmlinux, _ = vm.images()
    head = vmlinux.read_bytes()[:20]
    assert head[:4] == b"\x7fELF" and head[4] == 2  # 64-bit
    assert vm.kernel.release.encode() in vmlinux.read_bytes()
    assert vm.kernel.series == series


def test_extraction_refuses_a_file_that_is_not_a_bzimage(tmp_path: Path) -> None:
    bogus = tmp_path / "vmlinuz"
    bogus.write_bytes(b"\0" * 4096)
    with pytest.raises(RuntimeError, match="not a bzImage"):
        extract_vmlinux(bogus)


@pytest.mark.parametrize("series", SERIES)
def test_modules_come_after_their_dependencies(series: str, kernel_for: Callable[[str], Kernel]) -> None:
    kernel = kernel_for(series)
    builtin = kernel.builtin_modules()
    order = [module_name(str(p)) for p in resolve_modules(kernel, BOOT_MODULES)]
    # Each boot module is either a file in the image or built into the kernel, never both or neither.
    assert set(BOOT_MODULES) <= set(order) | builtin
    assert not set(order) & builtin, order
    assert len(order) == len(set(order))
    for before, after in (("virtio", "virtio_pci"), ("9pnet", "9pnet_virtio"), ("9pnet", "9p"), ("netfs", "9p")):
        if before in order and after in order:
            assert order.index(before) < order.index(after), order
    assert {"9pnet", "9pnet_virtio", "9p", "overlay"} <= set(order)  # modules on both of Debian's kernels


def test_which_boot_modules_are_built_in_comes_from_the_kernels_own_list(
    kernel_for: Callable[[str], Kernel],
) -> None:
    """6.1 ships virtio_pci as a module, 6.12 builds it in: the harness reads modules.builtin, not a guess."""
    old, new = kernel_for("6.1"), kernel_for("6.12")
    assert "virtio_pci" not in old.builtin_modules()
    assert module_name(str(resolve_modules(old, ["virtio_pci"])[-1])) == "virtio_pci"
    assert "virtio_pci" in new.builtin_modules()
    assert resolve_modules(new, ["virtio_pci"]) == []


def test_a_module_neither_built_in_nor_in_modules_dep_is_refused(vm_kernel: Kernel) -> None:
    with pytest.raises(KernelError, match=r"no_such_module is neither in .*modules\.dep nor built in"):
        resolve_modules(vm_kernel, ["no_such_module"])


@pytest.mark.parametrize("series", SERIES)
def test_initramfs_is_a_cpio_the_real_tool_reads(
    series: str, kernel_for: Callable[[str], Kernel], tool: Callable[[str], str]
) -> None:
    kernel = kernel_for(series)
    image = build_initramfs(kernel, Path(tool("busybox")), resolve_modules(kernel, ["overlay"]))
    listing = subprocess.run([tool("cpio"), "-itv"], input=image, capture_output=True, check=True).stdout.decode()
    names = {line.split()[-1] if "->" not in line else line.split()[-3] for line in listing.splitlines()}
    assert {"init", "bin/busybox", "bin/sh", "dev/console", "modules/overlay.ko", "modules/order"} <= names
    console = next(line for line in listing.splitlines() if line.endswith("dev/console"))
    assert console.startswith("crw") and "5,   1" in console
