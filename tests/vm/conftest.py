"""Fixtures for the real-kernel tests: the installed kernel, a cached VM, the test driver built for it.

A missing tool or kernel FAILS these tests (never skips): CI must install everything they need.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import need_tool

from vm.kernel import Kernel, KernelError, find_kernel
from vm.machine import Vm
from vm.testdriver import MODULES, build

VM_TOOLS = ("qemu-system-x86_64", "busybox", "modprobe", "depmod", "modinfo")
BUILD_TOOLS = ("make", "gcc", "modinfo")


@pytest.fixture(scope="session")
def vm_kernel() -> Kernel:
    """The installed kernel the VM boots and the test driver builds for (never the running one)."""
    try:
        kernel = find_kernel()
    except KernelError as e:
        pytest.fail(str(e))
    if not (kernel.headers / "Makefile").exists():
        pytest.fail(f"no headers for {kernel.release} in {kernel.headers}: apt-get install linux-headers-amd64")
    return kernel


@pytest.fixture(scope="session")
def vm(vm_kernel: Kernel) -> Vm:
    """A VM of the installed kernel with its boot images built (and cached across runs)."""
    for tool in VM_TOOLS:
        need_tool(tool)
    machine = Vm(kernel=vm_kernel, busybox=Path(need_tool("busybox")), qemu=need_tool("qemu-system-x86_64"))
    machine.images()
    return machine


@pytest.fixture(scope="session")
def testgpu_modules(vm_kernel: Kernel, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The test driver built for the installed kernel's headers: module name → .ko file."""
    for tool in BUILD_TOOLS:
        need_tool(tool)
    folder = tmp_path_factory.mktemp("testgpu-build")
    done = build(vm_kernel.headers, folder, make=need_tool("make"))
    assert done.returncode == 0, f"the test driver failed to build:\n{done.stdout}\n{done.stderr}"
    return {name: folder / f"{name}.ko" for name in MODULES}
