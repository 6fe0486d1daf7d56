"""The REAL i915 backport on Debian's real kernels in qemu: LTS on 6.1, rolling on 6.12 (issue 10, item 5).

Each boot runs the agent from this checkout against a tree that `intel-gpu-agent build` made from the
published release and firmware (tests/realdriver.py). The assertions read what the kernel says
(/proc/modules, /sys/module/*/version and srcversion, the kernel log), the files and the firmware path,
and compare them with the tree's manifest.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from realdriver import real_inputs, real_tree
from vm.kernel import Kernel
from vm.machine import Vm

pytestmark = [pytest.mark.vm, pytest.mark.slow]
GUESTS = Path(__file__).resolve().parent / "guests"
LTS, ROLLING = "i915-2350.145", "i915-1099.12"
BACKPORT_TAGS = {LTS: "I915_23.10.90_PSB_231129.99", ROLLING: "I915_25.1.15_PSB_250113.14"}
DRIVER = {"i915", "i915_compat", "intel_vsec"}


def _boot(vm: Vm, tree: Path, recipe: str, phases: str) -> dict[str, Any]:
    result = vm.run(vm.python(str(GUESTS / "real_driver.py"), str(tree), recipe, phases), timeout=2400)
    records = result.records()
    assert result.returncode == 0 and records.get("done"), result.describe()
    return records


@pytest.fixture(scope="module")
def lts_tree(vm_kernel: Kernel) -> Path:
    return real_tree(LTS, vm_kernel.release)


@pytest.fixture(scope="module")
def rolling_tree(vm_kernel_612: Kernel) -> Path:
    return real_tree(ROLLING, vm_kernel_612.release)


@pytest.fixture(scope="module")
def lts_boot(vm: Vm, lts_tree: Path, compiled: None) -> dict[str, Any]:
    return _boot(vm, lts_tree, LTS, "fresh,swap,warm")


@pytest.fixture(scope="module")
def rolling_boot(vm_612: Vm, rolling_tree: Path, compiled: None) -> dict[str, Any]:
    return _boot(vm_612, rolling_tree, ROLLING, "fresh,swap")


def _manifest(tree: Path) -> dict[str, Any]:
    return json.loads((tree / "manifest.json").read_text())  # type: ignore[no-any-return]


def _assert_loaded_from(loaded: dict[str, Any], tree: Path, recipe: str) -> None:
    """The backport from this very tree is what the kernel runs, with the real firmware where the path points."""
    manifest = _manifest(tree)
    assert set(loaded["modules"]) >= DRIVER
    for module in manifest["modules"]:
        name = module["name"].replace("-", "_")
        if name not in loaded["srcversion"]:
            continue
        assert "O" in (loaded["taint"][name] or ""), f"{name} is out of tree: the backport's"
        if module["srcversion"]:  # some (mei-gsc) are built without one
            assert loaded["srcversion"][name] == module["srcversion"], f"{name} is the tree's"
    assert "backported" in loaded["i915_version"] and BACKPORT_TAGS[recipe] in loaded["i915_version"]
    assert loaded["firmware_path"] == "/var/lib/firmware"
    _, shared = real_inputs(recipe)
    expected = {}
    for firmware in manifest["firmware"]:
        blob = shared / "firmware" / firmware["name"].removeprefix("i915/")
        expected[f"/var/lib/firmware/{firmware['name']}"] = hashlib.sha256(blob.read_bytes()).hexdigest()
    assert expected and loaded["firmware"] == expected, "byte-identical with the published firmware files"


def _assert_clean(after: dict[str, Any], before: dict[str, Any]) -> None:
    assert after["modules"] == before["modules"], "every module as it was before"
    assert after["srcversion"] == before["srcversion"]
    assert after["firmware"] == {} and after["firmware_path"] == "" and not after["journal"] and after["staged"] == []


def _events(log: list[dict[str, Any]]) -> list[str]:
    return [e["event"] for e in log]


def _kernel_log_is_clean(lines: list[str]) -> None:
    text = "\n".join(lines)
    assert "BACKPORTED INIT" in text, text
    assert "Unknown symbol" not in text and "firmware" not in text.lower().replace("firmware_class", ""), text


# --- LTS on 6.1 ------------------------------------------------------------------------------------
def test_c_a_fresh_node_loads_the_lts_driver_with_the_kernels_own_drm(lts_boot: dict[str, Any], lts_tree: Path) -> None:
    got = lts_boot
    before, loaded = got["fresh.before"], got["fresh.loaded"]
    assert not {"i915", "drm"} & set(before["modules"]), "a fresh boot: nothing of the GPU stack loaded"
    _assert_loaded_from(loaded, lts_tree, LTS)
    assert "drm" in loaded["modules"]
    assert got["fresh.readyz"][0] == 200
    assert "dependencies_loaded" in _events(got["fresh.log"])
    _kernel_log_is_clean(got["fresh.kernel_log"])
    assert got["fresh.stop"][0] == 0
    _assert_clean(got["fresh.after"], before)
    assert "drm" not in got["fresh.after"]["modules"], "drm, loaded for the driver, is gone again"


def test_a_the_lts_driver_replaces_debians_in_tree_i915_and_gives_it_back(
    lts_boot: dict[str, Any], lts_tree: Path
) -> None:
    got = lts_boot
    assert got["swap.modprobe"][0]["rc"] == 0, got["swap.modprobe"]
    before = got["swap.before"]
    assert "i915" in before["modules"] and "backported" not in (before["i915_version"] or "")
    _assert_loaded_from(got["swap.loaded"], lts_tree, LTS)
    events = _events(got["swap.log"])
    assert events.index("in_tree_module_removed") < events.index("module_loaded")
    assert got["swap.stop"][0] == 0
    _assert_clean(got["swap.after"], before)
    assert got["swap.after"]["i915_version"] == before["i915_version"], "Debian's own i915 again"


def test_d_a_warm_restart_with_the_real_driver_changes_nothing(lts_boot: dict[str, Any]) -> None:
    got = lts_boot
    assert got["warm.kill"][0] == -9
    assert got["warm.second"]["srcversion"] == got["warm.first"]["srcversion"]
    assert got["warm.second"]["firmware"] == got["warm.first"]["firmware"]
    assert got["warm.same_stamps"] is True, "no firmware file or journal rewritten"
    events = _events(got["warm.log"])
    assert "warm_restart" in events
    assert not {"module_loaded", "firmware_placed", "modules_staged", "in_tree_module_removed"} & set(events)
    assert got["warm.stop"][0] == 0


# --- rolling on 6.12 --------------------------------------------------------------------------------
def test_b_the_rolling_driver_on_6_12_swaps_and_unloads_cleanly(
    rolling_boot: dict[str, Any], rolling_tree: Path
) -> None:
    got = rolling_boot
    for phase in ("fresh", "swap"):
        _assert_loaded_from(got[f"{phase}.loaded"], rolling_tree, ROLLING)
        _kernel_log_is_clean(got[f"{phase}.kernel_log"])
        assert got[f"{phase}.stop"][0] == 0
        _assert_clean(got[f"{phase}.after"], got[f"{phase}.before"])
    assert "i915" in got["swap.before"]["modules"]
