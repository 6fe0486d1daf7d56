"""The VM harness itself, one boot per kernel series: the guest's root, channels, exit code, command line.

Every check runs on both of Debian 12's kernels (6.1 and the 6.12 backports kernel), which differ in
what they build in (virtio_pci), how they compress modules and what their headers need (pahole).
"""

from __future__ import annotations

import shlex
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from vm.kernel import SERIES, Kernel, kernel_series
from vm.machine import Vm, VmResult

pytestmark = pytest.mark.vm

GUEST_SHELL = """#!/bin/sh
# Runs in the VM: each line of the results port is NAME=VALUE.
say() {{ echo "$1=$2" > "$VM_RESULTS"; }}
say uname "$(uname -r)"
say cmdline "$(cat /proc/cmdline)"
say host_file "$(cat {host_file})"
say venv_python "$(test -x {python} && echo yes)"
say agent_help_rc "$({python} -S -m agent --help > /dev/null; echo $?)"
echo overlay > /etc/testvm-overlay-write && say overlay_write ok
echo from-guest > {share}/written-by-guest && say share_write ok
say firmware_path_param "$(test -w /sys/module/firmware_class/parameters/path && echo writable)"
say run_fs "$(awk '$2 == "/run" {{print $3}}' /proc/mounts)"
insmod {module} 2> {share}/insmod.err; say insmod_rc $?
# Debian's own in-tree i915 (signed: sig_enforce accepts it) with its drm stack, and back out.
modprobe i915 2> {share}/i915-load.err; say i915_load_rc $?
say i915_loaded "$(awk '$1 == "i915" || $1 == "drm" {{print $1}}' /proc/modules | sort | tr '\n' ' ')"
say i915_file "$(modinfo -n i915)"
modprobe -r i915 2> {share}/i915-unload.err; say i915_unload_rc $?
say i915_after "$(awk '$1 == "i915" {{print $1}}' /proc/modules)"
echo "console-only marker"
exit 7
"""


@dataclass(frozen=True)
class Boot:
    """One harness boot: the kernel booted, what the guest reported, the writable share it wrote to."""

    kernel: Kernel
    result: VmResult
    share: Path


@pytest.fixture(scope="module", params=SERIES, ids=[f"linux-{s}" for s in SERIES])
def boot(
    request: pytest.FixtureRequest,
    vm_for: Callable[[str], Vm],
    testgpu_for: Callable[[Kernel], dict[str, Path]],
    tmp_path_factory: pytest.TempPathFactory,
) -> Boot:
    vm = vm_for(request.param)
    testgpu_modules = testgpu_for(vm.kernel)
    folder = tmp_path_factory.mktemp(f"harness-{request.param}")
    (folder / "host-file").write_text("visible from the guest\n")
    share = folder / "share"
    share.mkdir()
    script = vm.script(
        GUEST_SHELL.format(
            host_file=shlex.quote(str(folder / "host-file")),
            python=shlex.quote(vm.python()[0]),
            share=shlex.quote(str(share)),
            module=shlex.quote(str(testgpu_modules["testgpu_compat"])),
        ),
        name="harness.sh",
    )
    # module.sig_enforce=1 makes the kernel behave like a Secure Boot host: unsigned modules are refused.
    result = vm.run(["sh", str(script)], cmdline_extra=["module.sig_enforce=1"], writable=[share], timeout=180)
    return Boot(kernel=vm.kernel, result=result, share=share)


def values(result: VmResult) -> dict[str, str]:
    return dict(line.split("=", 1) for line in result.results.splitlines() if "=" in line)


def test_exit_code_and_channels_are_separate(boot: Boot) -> None:
    result = boot.result
    assert result.returncode == 7, result.describe()
    assert "console-only marker" in result.console
    assert "console-only marker" not in result.results
    assert "uname=" not in result.console


def test_guest_runs_the_kernel_of_its_series_with_extra_arguments(boot: Boot) -> None:
    got = values(boot.result)
    assert got["uname"] == boot.kernel.release
    assert kernel_series(got["uname"]) == boot.kernel.series
    assert "module.sig_enforce=1" in got["cmdline"].split()


def test_guest_root_is_the_host_root_with_a_writable_overlay(boot: Boot) -> None:
    got = values(boot.result)
    assert got["host_file"] == "visible from the guest"
    assert got["venv_python"] == "yes"
    assert got["agent_help_rc"] == "0"  # the agent runs from the checkout with the virtualenv's packages
    assert got["overlay_write"] == "ok"
    assert not Path("/etc/testvm-overlay-write").exists()
    assert got["firmware_path_param"] == "writable"
    assert got["run_fs"] == "tmpfs"


def test_writable_share_reaches_the_host(boot: Boot) -> None:
    assert values(boot.result)["share_write"] == "ok"
    assert (boot.share / "written-by-guest").read_text() == "from-guest\n"


def test_sig_enforce_rejects_the_unsigned_test_driver(boot: Boot) -> None:
    assert values(boot.result)["insmod_rc"] != "0"
    assert "Key was rejected by service" in (boot.share / "insmod.err").read_text()


def test_debians_in_tree_i915_of_that_kernel_loads_and_unloads(boot: Boot) -> None:
    got = values(boot.result)
    assert got["i915_load_rc"] == "0", (boot.share / "i915-load.err").read_text()
    assert got["i915_loaded"].split() == ["drm", "i915"]
    assert got["i915_file"].startswith(f"/lib/modules/{boot.kernel.release}/kernel/drivers/gpu/drm/i915/i915.ko")
    assert got["i915_unload_rc"] == "0", (boot.share / "i915-unload.err").read_text()
    assert got["i915_after"] == ""
