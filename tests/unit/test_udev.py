"""The pyudev adapter against a mocked Flex 170 (umockdev), and sysfs discovery under the same mock."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from fakehost import umockdev_record
from tooling import REPO, need_tool

ADAPTER = """
import json
from agent.discovery.udev import udev_intel_display_devices
print(json.dumps([d.__dict__ for d in udev_intel_display_devices()]))
"""


def umockdev(tmp_path: Path, *argv: str) -> str:
    tool = need_tool("umockdev-run")
    device = tmp_path / "gpu.umockdev"
    device.write_text(
        umockdev_record("0000:03:00.0", "56c0", driver="i915")
        + "\n"
        + umockdev_record("0000:04:00.0", "56c1")
        + "\nP: /devices/pci0000:00/0000:00:1f.6\nE: SUBSYSTEM=pci\nE: PCI_CLASS=20000\nE: PCI_ID=8086:15B9\n"
        "A: vendor=0x8086\nA: device=0x15b9\nA: class=0x020000\n"
    )
    result = subprocess.run(
        [tool, "--device", str(device), "--", *argv],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
        cwd=REPO,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_pyudev_adapter_enumerates_the_mocked_gpu(tmp_path: Path) -> None:
    found = json.loads(umockdev(tmp_path, sys.executable, "-c", ADAPTER))
    assert [(d["address"], d["pci_id"], d["driver"]) for d in found] == [
        ("0000:03:00.0", "8086:56c0", "i915"),
        ("0000:04:00.0", "8086:56c1", ""),
    ]


def test_detect_sees_the_mocked_gpu_through_sysfs(tmp_path: Path) -> None:
    out = umockdev(tmp_path, sys.executable, "-m", "agent", "detect", "--json")
    gpus = json.loads(out)["gpus"]
    assert [(g["device_id"], g["product"]) for g in gpus] == [
        ("56c0", "ATS-M [Data Center GPU Flex 170]"),
        ("56c1", "ATS-M [Data Center GPU Flex 140]"),
    ]
