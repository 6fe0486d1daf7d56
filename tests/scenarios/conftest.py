"""Fixtures for the real-kernel scenarios: the VM of tests/vm and a driver tree built by the agent itself."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from vm.conftest import tool, vm, vm_612, vm_kernel, vm_kernel_612  # noqa: F401 - the VM harness's fixtures, shared
from vm.kernel import Kernel

REPO = Path(__file__).resolve().parents[2]
RECIPE = REPO / "tests/recipes/testgpu.toml"
GUESTS = Path(__file__).resolve().parent / "guests"


@pytest.fixture(scope="session")
def compiled() -> None:
    """Byte-compile the agent once on the host: the guest sees the checkout read-only and cannot cache."""
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(REPO / "agent"), str(REPO / "tests")], check=True)


@pytest.fixture(scope="session")
def driver_tree(
    vm_kernel: Kernel,  # noqa: F811 - the harness's fixture
    tool: Callable[[str], str],  # noqa: F811
) -> Path:
    """The test driver built for the VM's kernel by `intel-gpu-agent build` (the real builder)."""
    for name in ("make", "gcc", "depmod", "modinfo"):
        tool(name)
    # Not under pytest's tmp: concurrent pytest sessions prune each other's basetemp folders.
    out = REPO / ".cache/scenarios" / vm_kernel.release / "tree"
    out.parent.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        [sys.executable, "-m", "agent", "--log-format", "json", "build", "--recipe", str(RECIPE),
         "--kernel", vm_kernel.release, "--out", str(out), "--cache-dir", str(out.parent / "cache")],
        cwd=REPO, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    return out
