"""Fixtures for the real-kernel tests: the installed kernel, a cached VM, the test driver built for it.

A missing tool or kernel FAILS these tests (never skips): CI must install everything they need.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import cast

import pytest

from vm.kernel import Kernel, KernelError, find_kernel
from vm.machine import Vm
from vm.testdriver import MODULES, build

VM_TOOLS = ("qemu-system-x86_64", "busybox", "modprobe", "depmod", "modinfo")
BUILD_TOOLS = ("make", "gcc", "modinfo")
ROOT_CONFTEST = Path(__file__).resolve().parents[1] / "conftest.py"


@pytest.fixture(scope="session")
def tool(pytestconfig: pytest.Config) -> Callable[[str], str]:
    """``need_tool`` of tests/conftest.py: a tool's path; a missing tool fails the test.

    Not ``from conftest import need_tool``: pytest imports every conftest.py outside a package as the
    module ``conftest``, so that name means whichever was collected last (tests/chart/, tests/lifecycle/).
    The root conftest is found among pytest's plugins instead.
    """
    for plugin in pytestconfig.pluginmanager.get_plugins():
        if Path(getattr(plugin, "__file__", None) or "/").resolve() == ROOT_CONFTEST:
            return cast(Callable[[str], str], plugin.need_tool)
    raise RuntimeError(f"{ROOT_CONFTEST} is not loaded as a pytest plugin")


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
def vm(vm_kernel: Kernel, tool: Callable[[str], str]) -> Vm:
    """A VM of the installed kernel with its boot images built (and cached across runs)."""
    for name in VM_TOOLS:
        tool(name)
    machine = Vm(kernel=vm_kernel, busybox=Path(tool("busybox")), qemu=tool("qemu-system-x86_64"))
    machine.images()
    return machine


@pytest.fixture(scope="session")
def testgpu_modules(
    vm_kernel: Kernel, tool: Callable[[str], str], tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Path]:
    """The test driver built for the installed kernel's headers: module name → .ko file."""
    for name in BUILD_TOOLS:
        tool(name)
    folder = tmp_path_factory.mktemp("testgpu-build")
    done = build(vm_kernel.headers, folder, make=tool("make"))
    assert done.returncode == 0, f"the test driver failed to build:\n{done.stdout}\n{done.stderr}"
    return {name: folder / f"{name}.ko" for name in MODULES}
