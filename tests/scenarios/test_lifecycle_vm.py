"""Scenarios a, c, d on the real kernel: run, metrics, SIGTERM; warm restart after SIGKILL; busy unload."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from vm.machine import Vm, VmResult

pytestmark = [pytest.mark.vm, pytest.mark.slow]
REPO = Path(__file__).resolve().parents[2]
RECIPE = REPO / "tests/recipes/testgpu.toml"
GUESTS = Path(__file__).resolve().parent / "guests"
FIRMWARE = ["/var/lib/firmware/testgpu/testgpu_guc_1.0.bin", "/var/lib/firmware/testgpu/testgpu_huc_1.0.bin"]
DRIVER = {"testgpu", "testgpu_compat", "testgpu_vsec"}


@pytest.fixture(scope="module")
def boot(vm: Vm, driver_tree: Path, compiled: None) -> tuple[VmResult, dict[str, Any]]:
    result = vm.run(vm.python(str(GUESTS / "lifecycle.py"), str(driver_tree), str(RECIPE)), timeout=900)
    records = result.records()
    assert result.returncode == 0 and records.get("done"), result.describe()
    return result, records


def _metric(text: str, name: str) -> float | None:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.rsplit(" ", 1)[1])
    return None


def test_a_run_loads_from_the_tree_with_firmware_through_the_path(
    boot: tuple[VmResult, dict[str, Any]], driver_tree: Path
) -> None:
    _, got = boot
    manifest = json.loads((driver_tree / "manifest.json").read_text())
    assert got["before"]["modules"] == {} and got["before"]["firmware_path"] == ""
    loaded = got["a.loaded"]
    assert set(loaded["modules"]) >= DRIVER
    assert loaded["srcversion"] == next(m["srcversion"] for m in manifest["modules"] if m["name"] == "testgpu")
    assert "backported" in loaded["version"]
    assert loaded["firmware_path"] == "/var/lib/firmware"
    assert loaded["firmware_files"] == FIRMWARE
    # The kernel really loaded both blobs from /var/lib/firmware through the path, with the recipe's parameter.
    assert loaded["fw_status"] == "0" and loaded["enable_guc"] == "3"
    assert loaded["fw_loaded"] == "testgpu/testgpu_guc_1.0.bin,testgpu/testgpu_huc_1.0.bin"
    log = "\n".join(got["a.kernel_log"])
    assert "testgpu: GuC firmware testgpu/testgpu_guc_1.0.bin loaded (512 bytes)" in log
    assert "Unknown symbol" not in log and "fetch failed" not in log
    metrics = got["a.metrics"]
    assert _metric(metrics, "intel_gpu_driver_ready") == 1.0
    assert _metric(metrics, 'intel_gpu_driver_state{state="ready"}') == 1.0
    assert _metric(metrics, "intel_gpu_driver_host_changes") == 5.0  # path, 2 files, staged modules, modprobe


def test_a_sigterm_unloads_removes_firmware_restores_the_path_exit_0(boot: tuple[VmResult, dict[str, Any]]) -> None:
    _, got = boot
    code, _seconds = got["a.stop"]
    assert code == 0, got["a.log"][-5:]
    after = got["a.after"]
    assert not DRIVER & set(after["modules"]), got["a.log"]
    assert after["firmware_files"] == [] and after["firmware_path"] == "" and after["journal"] is None
    events = [e["event"] for e in got["a.log"]]
    assert events.index("firmware_path_set") < events.index("module_loaded") < events.index("ready")
    assert events.index("module_unloaded") < events.index("firmware_removed") < events.index("firmware_path_restored")
    assert events[-1] == "stopped"


def test_d_a_restart_after_sigkill_changes_nothing_and_is_ready_at_once(boot: tuple[VmResult, dict[str, Any]]) -> None:
    _, got = boot
    assert got["d.kill"][0] == -9
    assert got["d.same_state"] is True, "modules, srcversion, firmware and journal unchanged"
    assert got["d.same_stamps"] is True, "no firmware file or journal rewritten"
    assert not [line for line in got["d.new_kernel_log"] if "testgpu" in line], "nothing reloaded"
    assert _metric(got["d.metrics"], "intel_gpu_driver_host_changes") == 0.0
    assert got["d.stop"][0] == 0
    assert not DRIVER & set(got["d.after"]["modules"]) and got["d.after"]["firmware_files"] == []


def test_c_a_held_device_blocks_the_unload_names_the_holder_and_exits_4(boot: tuple[VmResult, dict[str, Any]]) -> None:
    _, got = boot
    pid = got["c.holder_pid"]
    metrics = got["c.blocked_metrics"]
    assert _metric(metrics, "intel_gpu_driver_unload_blocked") == 1.0
    assert _metric(metrics, "intel_gpu_driver_unload_holders") == 1.0
    holder = [line for line in metrics.splitlines() if line.startswith("intel_gpu_driver_unload_holder{")]
    assert any(f'pid="{pid}"' in line and "holder" in line for line in holder), holder
    assert got["c.exit"] == 4
    blocked = [e for e in got["c.log"] if e["event"] == "unload_blocked"]
    assert blocked and any(f"PID {pid} (sh -c exec 3<" in h for h in blocked[0]["holders"]), blocked[0]
    assert set(got["c.held_state"]["modules"]) >= DRIVER, "never forced"
    assert got["c.held_state"]["firmware_files"] == FIRMWARE, "firmware stays while the driver is in use"
    assert got["c.unload"]["rc"] == 0, got["c.unload"]
    after = got["c.after"]
    assert not DRIVER & set(after["modules"]) and after["firmware_files"] == [] and after["firmware_path"] == ""
