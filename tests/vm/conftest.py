"""Fixtures for the real-kernel tests: installed kernels by series, cached VMs, the test driver built for them.

Every test boots the default kernel (``vm_kernel``: $VM_KERNEL, else the newest installed 6.1) unless it
asks for another: ``vm_kernel_612`` / ``vm_612`` for the newest installed 6.12, or the factories
``kernel_for(series)`` / ``vm_for(series)`` / ``testgpu_for(kernel)`` for a test parametrised over
``vm.kernel.SERIES``.

``vm`` and ``vm_kernel`` need no other fixture of this file but ``tool``: tests/scenarios imports them
by name, and a fixture they required would not be visible there.

A missing tool or kernel FAILS these tests (never skips): CI must install everything they need.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import cast

import pytest

from vm.kernel import Kernel, KernelError, find_kernel, series_packages
from vm.machine import Vm
from vm.testdriver import MODULES, build

VM_TOOLS = ("qemu-system-x86_64", "busybox", "modprobe", "depmod", "modinfo")
BUILD_TOOLS = ("make", "gcc", "modinfo")
ROOT_CONFTEST = Path(__file__).resolve().parents[1] / "conftest.py"

# One Vm per kernel release for the whole session (their boot images are also cached on disk).
_MACHINES: dict[str, Vm] = {}
# One build of the test driver per kernel release for the whole session.
_TESTGPU: dict[str, dict[str, Path]] = {}


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


def kernel_with_headers(series: str | None = None) -> Kernel:
    """The installed kernel of ``series`` (None: the default kernel) with its headers; fails the test if absent."""
    try:
        kernel = find_kernel(series=series)
    except KernelError as e:
        pytest.fail(str(e))
    if not (kernel.headers / "Makefile").exists():
        pytest.fail(
            f"no headers for {kernel.release} in {kernel.headers}: apt-get install {series_packages(kernel.series)}"
        )
    return kernel


def machine_for(kernel: Kernel, tool: Callable[[str], str]) -> Vm:
    """The session's VM of ``kernel``, its boot images built (and cached across runs)."""
    if kernel.release not in _MACHINES:
        for name in VM_TOOLS:
            tool(name)
        machine = Vm(kernel=kernel, busybox=Path(tool("busybox")), qemu=tool("qemu-system-x86_64"))
        machine.images()
        _MACHINES[kernel.release] = machine
    return _MACHINES[kernel.release]


def testgpu_build(kernel: Kernel, tool: Callable[[str], str], folder: Path) -> dict[str, Path]:
    """The test driver built for ``kernel``'s headers into ``folder`` once a session: module name → .ko file."""
    if kernel.release not in _TESTGPU:
        for name in BUILD_TOOLS:
            tool(name)
        done = build(kernel.headers, folder, make=tool("make"))
        assert done.returncode == 0, f"the test driver did not build for {kernel.release}:\n{done.stdout}{done.stderr}"
        _TESTGPU[kernel.release] = {name: folder / f"{name}.ko" for name in MODULES}
    return _TESTGPU[kernel.release]


@pytest.fixture(scope="session")
def vm_kernel() -> Kernel:
    """The default kernel the VM boots and the test driver builds for: $VM_KERNEL, else the newest 6.1."""
    return kernel_with_headers()


@pytest.fixture(scope="session")
def vm_kernel_612() -> Kernel:
    """The newest installed 6.12 kernel (Debian 12's linux-image-6.12-amd64), with its headers."""
    return kernel_with_headers("6.12")


@pytest.fixture(scope="session")
def kernel_for() -> Callable[[str], Kernel]:
    """Factory: the newest installed kernel of a series ("6.1", "6.12") with its headers."""
    return kernel_with_headers


@pytest.fixture(scope="session")
def vm(vm_kernel: Kernel, tool: Callable[[str], str]) -> Vm:
    """A VM of the default kernel with its boot images built (and cached across runs)."""
    return machine_for(vm_kernel, tool)


@pytest.fixture(scope="session")
def vm_612(vm_kernel_612: Kernel, tool: Callable[[str], str]) -> Vm:
    """A VM of the newest installed 6.12 kernel."""
    return machine_for(vm_kernel_612, tool)


@pytest.fixture(scope="session")
def vm_for(tool: Callable[[str], str]) -> Callable[[str], Vm]:
    """Factory: the VM of the newest installed kernel of a series ("6.1", "6.12")."""

    def make(series: str) -> Vm:
        return machine_for(kernel_with_headers(series), tool)

    return make


@pytest.fixture(scope="session")
def testgpu_for(
    tool: Callable[[str], str], tmp_path_factory: pytest.TempPathFactory
) -> Callable[[Kernel], dict[str, Path]]:
    """Factory: the test driver built for a kernel's headers (module name → .ko file), once a session."""

    def make(kernel: Kernel) -> dict[str, Path]:
        if kernel.release in _TESTGPU:
            return _TESTGPU[kernel.release]
        return testgpu_build(kernel, tool, tmp_path_factory.mktemp(f"testgpu-build-{kernel.series}"))

    return make


@pytest.fixture(scope="session")
def testgpu_modules(vm_kernel: Kernel, testgpu_for: Callable[[Kernel], dict[str, Path]]) -> dict[str, Path]:
    """The test driver built for the default kernel's headers: module name → .ko file."""
    return testgpu_for(vm_kernel)
