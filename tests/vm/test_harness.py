"""The VM harness itself, in one boot: the guest's root, channels, exit code and kernel command line."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from vm.kernel import Kernel
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
echo "console-only marker"
exit 7
"""


@pytest.fixture(scope="module")
def boot(vm: Vm, testgpu_modules: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> tuple[VmResult, Path]:
    folder = tmp_path_factory.mktemp("harness")
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
    result = vm.run(["sh", str(script)], cmdline_extra=["module.sig_enforce=1"], writable=[share], timeout=120)
    return result, share


def values(result: VmResult) -> dict[str, str]:
    return dict(line.split("=", 1) for line in result.results.splitlines() if "=" in line)


def test_exit_code_and_channels_are_separate(boot: tuple[VmResult, Path]) -> None:
    result, _ = boot
    assert result.returncode == 7, result.describe()
    assert "console-only marker" in result.console
    assert "console-only marker" not in result.results
    assert "uname=" not in result.console


def test_guest_runs_the_installed_kernel_with_extra_arguments(boot: tuple[VmResult, Path], vm_kernel: Kernel) -> None:
    got = values(boot[0])
    assert got["uname"] == vm_kernel.release
    assert "module.sig_enforce=1" in got["cmdline"].split()


def test_guest_root_is_the_host_root_with_a_writable_overlay(boot: tuple[VmResult, Path]) -> None:
    got = values(boot[0])
    assert got["host_file"] == "visible from the guest"
    assert got["venv_python"] == "yes"
    assert got["agent_help_rc"] == "0"  # the agent runs from the checkout with the virtualenv's packages
    assert got["overlay_write"] == "ok"
    assert not Path("/etc/testvm-overlay-write").exists()
    assert got["firmware_path_param"] == "writable"
    assert got["run_fs"] == "tmpfs"


def test_writable_share_reaches_the_host(boot: tuple[VmResult, Path]) -> None:
    result, share = boot
    assert values(result)["share_write"] == "ok"
    assert (share / "written-by-guest").read_text() == "from-guest\n"


def test_sig_enforce_rejects_the_unsigned_test_driver(boot: tuple[VmResult, Path]) -> None:
    result, share = boot
    assert values(result)["insmod_rc"] != "0"
    assert "Key was rejected by service" in (share / "insmod.err").read_text()
