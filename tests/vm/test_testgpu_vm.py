"""The test driver on the real kernel (one VM boot): load with firmware, busy device, missing firmware, in-tree i915."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from vm.kernel import Kernel
from vm.machine import Vm, VmResult
from vm.testdriver import FIRMWARE, FIRMWARE_NAMES

pytestmark = pytest.mark.vm

GUEST = Path(__file__).resolve().parent / "guests" / "testgpu_lifecycle.py"


@pytest.fixture(scope="module")
def lifecycle(vm: Vm, testgpu_modules: dict[str, Path]) -> tuple[VmResult, dict[str, Any]]:
    result = vm.run(vm.python(str(GUEST), str(testgpu_modules["testgpu"].parent), str(FIRMWARE)), timeout=180)
    records = result.records()
    assert result.returncode == 0 and records.get("done"), result.describe()
    return result, records


def test_loads_from_a_private_tree_with_its_firmware(
    lifecycle: tuple[VmResult, dict[str, Any]], vm_kernel: Kernel
) -> None:
    _, got = lifecycle
    assert got["firmware_path"] == "/var/lib/firmware"
    assert got["load"]["rc"] == 0, got["load"]
    assert set(got["loaded.modules"]) == {"testgpu", "testgpu_compat", "testgpu_vsec"}
    assert got["loaded.modules"]["testgpu_compat"]["users"] == ["testgpu"]
    assert got["loaded.compat_holders"] == ["testgpu"]
    assert got["loaded.version"] == f"1.0.0 backported to {vm_kernel.release} using backports testgpu-1.0"
    params = got["loaded.params"]
    assert params["fw_status"] == "0"
    assert params["enable_guc"] == "3"
    assert int(params["fw_size"]) == sum((FIRMWARE / n).stat().st_size for n in FIRMWARE_NAMES)
    assert params["fw_loaded"].split(",") == list(FIRMWARE_NAMES)
    assert got["loaded.device"].startswith("version=1.0.0 backported")
    log = "\n".join(got["loaded.kernel_log"])
    assert "TESTGPU COMPAT BACKPORTED INIT" in log
    assert "testgpu: GuC firmware testgpu/testgpu_guc_1.0.bin loaded (512 bytes)" in log
    assert "fetch failed" not in log and "Direct firmware load" not in log and "Unknown symbol" not in log


def test_an_open_device_keeps_the_module_in_use(lifecycle: tuple[VmResult, dict[str, Any]]) -> None:
    _, got = lifecycle
    assert got["held.refcnt"] == "1"
    assert got["held.rmmod"]["rc"] != 0
    assert "is in use" in got["held.rmmod"]["stderr"]
    assert got["held.still_loaded"] is True
    assert got["released.refcnt"] == "0"
    assert got["unload"]["rc"] == 0, got["unload"]
    assert got["unloaded.modules"] == {}
    assert got["unloaded.device"] is None


def test_a_missing_firmware_file_fails_the_load_with_the_drivers_message(
    lifecycle: tuple[VmResult, dict[str, Any]],
) -> None:
    _, got = lifecycle
    assert got["missing.load"]["rc"] != 0
    assert "testgpu" not in got["missing.modules"]
    log = "\n".join(got["missing.kernel_log"])
    assert "testgpu: HuC firmware testgpu/testgpu_huc_1.0.bin: fetch failed with error -2" in log
    assert "Direct firmware load for testgpu/testgpu_huc_1.0.bin failed with error -2" in log


def test_debians_in_tree_i915_loads_and_unloads(lifecycle: tuple[VmResult, dict[str, Any]]) -> None:
    _, got = lifecycle
    assert got["i915.load"]["rc"] == 0, got["i915.load"]
    assert {"i915", "drm", "drm_kms_helper", "ttm"} <= set(got["i915.modules"])
    assert got["i915.version"] is None  # the in-tree i915 has no version string, unlike the backport
    assert got["i915.unload"]["rc"] == 0, got["i915.unload"]
    assert "i915" not in got["i915.after"] and "ttm" not in got["i915.after"]
    # kmod removes the dependencies in modules.dep order and skips those still in use at their turn:
    # drm_kms_helper and drm stay loaded. An unload that must leave no trace removes in holder order.
    assert "drm" in got["i915.after"]
