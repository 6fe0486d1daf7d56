"""Scenarios b, e, f, g, h, i on the real kernel: swap, crash recovery, refusals, build on the node."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from vm.machine import Vm, VmResult

pytestmark = [pytest.mark.vm, pytest.mark.slow]
REPO = Path(__file__).resolve().parents[2]
RECIPE = REPO / "tests/recipes/testgpu.toml"
GUESTS = Path(__file__).resolve().parent / "guests"
DRIVER = {"testgpu", "testgpu_compat", "testgpu_vsec"}
CLEAN = {"firmware_path": "", "firmware_files": [], "journal": None}


def _boot(vm: Vm, script: str, *args: str, cmdline: tuple[str, ...] = (), timeout: float = 900) -> dict[str, Any]:
    result: VmResult = vm.run(vm.python(str(GUESTS / script), *args), cmdline_extra=cmdline, timeout=timeout)
    records = result.records()
    assert result.returncode == 0 and records.get("done"), result.describe()
    return records


def _clean(state: dict[str, Any]) -> bool:
    return not DRIVER & set(state["modules"]) and all(state[k] == v for k, v in CLEAN.items())


@pytest.fixture(scope="module")
def swap_crash(vm: Vm, driver_tree: Path, compiled: None) -> dict[str, Any]:
    return _boot(vm, "swap_crash.py", str(driver_tree), str(RECIPE))


def test_b_the_in_tree_i915_is_swapped_out_and_loaded_again(swap_crash: dict[str, Any]) -> None:
    got = swap_crash
    assert got["b.modprobe_i915"]["rc"] == 0, got["b.modprobe_i915"]
    assert "i915" in got["b.before"]["modules"]
    assert "i915" not in got["b.loaded"]["modules"] and set(got["b.loaded"]["modules"]) >= DRIVER
    assert got["b.stop"][0] == 0
    assert "i915" in got["b.after"]["modules"], "the in-tree i915 that was loaded before is loaded again"
    assert _clean(got["b.after"])
    events = [e["event"] for e in got["b.log"]]
    assert events.index("in_tree_module_removed") < events.index("module_loaded")
    assert events.index("module_unloaded") < events.index("in_tree_module_restored")


def test_e_a_run_killed_mid_apply_is_finished_by_the_next_run(swap_crash: dict[str, Any]) -> None:
    got = swap_crash
    assert got["e.crash_exit"] == -9
    crashed = got["e.crashed"]
    assert set(crashed["modules"]) >= DRIVER and crashed["journal"]["changes"][-1]["status"] == "intent"
    recovered = got["e.recovered"]
    assert set(recovered["modules"]) >= DRIVER and recovered["fw_status"] == "0"
    assert recovered["journal"]["phase"] == "applied"
    assert all(c["status"] == "done" for c in recovered["journal"]["changes"])
    assert not [e for e in got["e.recovered_log"] if e["event"] == "module_loaded"], "not loaded twice"
    assert got["e.stop"][0] == 0 and _clean(got["e.after_run"])


def test_e_unload_removes_everything_a_killed_load_left(swap_crash: dict[str, Any]) -> None:
    got = swap_crash
    assert got["e.load_crash"]["rc"] == -9
    crashed = got["e.crashed2"]
    assert crashed["firmware_path"] == "/var/lib/firmware" and len(crashed["firmware_files"]) == 1
    assert got["e.unload"]["rc"] == 0, got["e.unload"]
    assert _clean(got["e.after_unload"])


def test_f_a_firmware_file_missing_from_the_tree_is_refused_before_any_change(swap_crash: dict[str, Any]) -> None:
    got = swap_crash
    assert got["f.load"]["rc"] == 2
    assert "lacks firmware testgpu/testgpu_huc_1.0.bin" in got["f.load"]["stderr"]
    assert "nothing was changed" in got["f.load"]["stderr"]
    assert _clean(got["f.after"])


def test_g_an_unsupported_node_is_untouched_and_run_stays_up_not_ready(
    vm: Vm, driver_tree: Path, compiled: None
) -> None:
    got = _boot(vm, "refusals.py", str(driver_tree), str(RECIPE), "unsupported")
    assert got["load"]["rc"] == 3 and "does not support this node" in got["load"]["stderr"]
    assert got["before"] == got["after_load"] == got["after_run"]
    assert got["alive"] is True
    assert got["readyz"][0] == 503 and "no Intel data-center GPU" in got["readyz"][1]
    assert 'intel_gpu_driver_state{state="unsupported"} 1.0' in got["metrics"]
    assert got["stop"][0] == 0


def test_h_enforced_module_signatures_are_named_and_the_host_is_unchanged(
    vm: Vm, driver_tree: Path, compiled: None
) -> None:
    got = _boot(vm, "refusals.py", str(driver_tree), str(RECIPE), "signing", cmdline=("module.sig_enforce=1",))
    assert got["load"]["rc"] == 3, got["load"]
    assert "only loads signed modules" in got["load"]["stderr"] and "module.sig_enforce=1" in got["load"]["stderr"]
    assert got["before"] == got["after_load"]
    assert not [line for line in got["kernel_log"] if "testgpu" in line], "nothing was even tried"


def test_i_without_a_tree_run_builds_into_the_cache_and_a_restart_reuses_it(vm: Vm, compiled: None) -> None:
    got = _boot(vm, "build_on_node.py", str(RECIPE), timeout=1800)
    first = [e["event"] for e in got["first_log"]]
    assert "driver_tree_building" in first and "build_started" in first
    assert set(got["loaded"]["modules"]) >= DRIVER and got["loaded"]["fw_status"] == "0"
    assert got["stop1"][0] == 0
    second = [e["event"] for e in got["second_log"]]
    assert "driver_tree_cached" in second and "build_started" not in second
    assert got["stop2"][0] == 0 and _clean(got["after"])
    assert len(got["cache"]) == 1
