"""Intel GPUs from sysfs PCI attributes: vendor 0x8086, display class 0x03xxxx."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from agent.discovery.pci_table import model_for
from agent.host.files import read_optional
from agent.host.paths import HostPaths

INTEL = "0x8086"


@dataclass(frozen=True)
class PciGpu:
    """One Intel display-class PCI function."""

    address: str
    device_id: str
    platform: str
    product: str
    family: str
    pci_class: str
    virtual_function: bool
    parent: str
    total_vfs: int
    numa_node: int
    driver: str
    driver_module: str
    cards: tuple[str, ...]
    render_nodes: tuple[str, ...]
    udev_model: str = ""

    @property
    def pci_id(self) -> str:
        return f"8086:{self.device_id}"

    @property
    def function(self) -> str:
        return "vf" if self.virtual_function else "pf"


@dataclass(frozen=True)
class GpuScan:
    """The GPUs found, and what could not be read (partial sysfs mounts in containers)."""

    gpus: tuple[PciGpu, ...]
    problems: tuple[str, ...]


def _attr(device: Path, name: str) -> str | None:
    value = read_optional(device / name)
    return value.strip() if value is not None else None


def _link_name(path: Path) -> str:
    try:
        return Path(path.readlink()).name if path.is_symlink() else ""
    except OSError:
        return ""


def _int(value: str | None, default: int) -> int:
    try:
        return int(value, 0) if value is not None else default
    except ValueError:
        return default


def scan_gpus(host: HostPaths) -> GpuScan:
    """Every Intel display-class PCI function under the host's /sys/bus/pci/devices."""
    gpus: list[PciGpu] = []
    problems: list[str] = []
    root = host.pci_devices
    try:
        entries = sorted(root.iterdir())
    except OSError as e:
        return GpuScan((), (f"cannot list PCI devices in {root}: {e.strerror or e}",))
    for device in entries:
        if device.name.startswith("."):
            continue  # not a PCI function (sysfs has none; a mocked tree may keep helpers there)
        vendor = _attr(device, "vendor")
        pci_class = _attr(device, "class")
        if vendor is None or pci_class is None:
            problems.append(f"cannot read vendor/class of PCI device {device.name}")
            continue
        if vendor.lower() != INTEL or not pci_class.lower().startswith("0x03"):
            continue
        raw_device = _attr(device, "device")
        if raw_device is None:
            problems.append(f"cannot read the device ID of Intel display device {device.name}")
            continue
        device_id = raw_device.lower().removeprefix("0x")
        model = model_for(device_id)
        driver = _link_name(device / "driver")
        gpus.append(
            PciGpu(
                address=device.name,
                device_id=device_id,
                platform=model.platform,
                product=model.product,
                family=model.family,
                pci_class=pci_class.lower(),
                virtual_function=(device / "physfn").exists() or (device / "physfn").is_symlink(),
                parent=_link_name(device / "physfn"),
                total_vfs=_int(_attr(device, "sriov_totalvfs"), 0),
                numa_node=_int(_attr(device, "numa_node"), -1),
                driver=driver,
                driver_module=_link_name(device / "driver" / "module") if driver else "",
                cards=_drm_nodes(device, "card"),
                render_nodes=_drm_nodes(device, "renderD"),
            )
        )
    return GpuScan(tuple(gpus), tuple(problems))


def _drm_nodes(device: Path, prefix: str) -> tuple[str, ...]:
    try:
        return tuple(sorted(p.name for p in (device / "drm").iterdir() if p.name.startswith(prefix)))
    except OSError:
        return ()


def enrich(scan: GpuScan, names: dict[str, str]) -> GpuScan:
    """Add udev's model names (address → name) where the udev database had one."""
    return GpuScan(tuple(replace(g, udev_model=names.get(g.address, "")) for g in scan.gpus), scan.problems)
