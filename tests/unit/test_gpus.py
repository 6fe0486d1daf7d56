"""GPU discovery from sysfs PCI attributes."""

from __future__ import annotations

from pathlib import Path

from fakehost import FakeHost, ubuntu_2204_flex

from agent.discovery.gpus import scan_gpus


def test_flex_node_pfs_vf_driver_drm_and_numa(tmp_path: Path) -> None:
    scan = scan_gpus(ubuntu_2204_flex(tmp_path).paths)
    assert [g.address for g in scan.gpus] == ["0000:4d:00.0", "0000:4d:00.1", "0000:ca:00.0"]
    pf, vf, second = scan.gpus
    assert pf.product == "ATS-M [Data Center GPU Flex 170]" and pf.platform == "ATS-M (DG2 silicon)"
    assert (pf.function, pf.total_vfs, pf.driver, pf.driver_module) == ("pf", 31, "i915", "i915")
    assert (vf.function, vf.parent) == ("vf", "0000:4d:00.0")
    assert pf.cards == ("card0",) and pf.render_nodes == ("renderD128",)
    assert second.numa_node == 1
    assert scan.problems == ()


def test_non_intel_and_non_display_functions_are_never_gpus(tmp_path: Path) -> None:
    host = FakeHost(tmp_path)
    host.pci_device("0000:00:1f.6", vendor="0x8086", device="0x15b9", pci_class="0x020000")
    host.pci_device("0000:03:00.0", vendor="0x10de", device="0x20b0", pci_class="0x030200")
    assert scan_gpus(host.paths).gpus == ()


def test_unknown_intel_display_device_is_reported_as_unknown(tmp_path: Path) -> None:
    host = FakeHost(tmp_path)
    host.pci_gpu("0000:00:02.0", "46a6", pci_class="0x030000")
    (gpu,) = scan_gpus(host.paths).gpus
    assert gpu.platform == "unknown"


def test_arc_and_dg1(tmp_path: Path) -> None:
    host = FakeHost(tmp_path)
    host.pci_gpu("0000:03:00.0", "56a0", pci_class="0x030000")
    host.pci_gpu("0000:04:00.0", "4905", pci_class="0x038000")
    assert [(g.platform, g.driver) for g in scan_gpus(host.paths).gpus] == [("DG2", ""), ("DG1", "")]


def test_unreadable_attributes_are_problems_not_tracebacks(tmp_path: Path) -> None:
    host = FakeHost(tmp_path)
    real = host.pci_gpu("0000:03:00.0", "56c0")
    (real / "class").unlink()
    scan = scan_gpus(host.paths)
    assert scan.gpus == ()
    assert scan.problems == ("cannot read vendor/class of PCI device 0000:03:00.0",)


def test_missing_pci_folder(tmp_path: Path) -> None:
    host = FakeHost(tmp_path)
    host.paths.pci_devices.rmdir()
    scan = scan_gpus(host.paths)
    assert scan.gpus == () and "cannot list PCI devices" in scan.problems[0]
