"""Optional enrichment from the udev database through pyudev (absent in most containers)."""

from __future__ import annotations

from dataclasses import dataclass

from agent.host.paths import HostPaths


@dataclass(frozen=True)
class UdevPci:
    """What udev knows of a PCI function."""

    address: str
    pci_id: str
    pci_class: str
    driver: str
    model: str


def udev_available(host: HostPaths) -> bool:
    """pyudev sees the real host only when we run on the host itself and its udev database exists."""
    return str(host.root) == "/" and (host.run_udev / "data").is_dir()


def udev_intel_display_devices() -> list[UdevPci]:
    """Intel display-class PCI functions as udev enumerates them (imports pyudev only when called)."""
    import pyudev

    found = []
    context = pyudev.Context()
    for device in context.list_devices(subsystem="pci"):
        pci_id = (device.properties.get("PCI_ID") or "").lower()
        pci_class = (device.properties.get("PCI_CLASS") or "").lower()
        # Read every property before touching device.driver: libudev re-reads the device then and
        # drops properties that came from the udev database (seen under umockdev).
        driver_property = device.properties.get("DRIVER") or ""
        model = device.properties.get("ID_MODEL_FROM_DATABASE") or ""
        if not pci_id.startswith("8086:") or not pci_class.zfill(6).startswith("03"):
            continue
        found.append(
            UdevPci(
                address=device.sys_name,
                pci_id=pci_id,
                pci_class=pci_class,
                driver=driver_property or device.driver or "",
                model=model,
            )
        )
    return found
