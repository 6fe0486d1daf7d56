"""One call that discovers everything about the node: the facts `detect` prints and `check` judges."""

from __future__ import annotations

from dataclasses import dataclass

from agent.discovery.gpus import GpuScan, PciGpu, enrich, scan_gpus
from agent.discovery.kernel import KernelInfo, detect_kernel
from agent.discovery.modules import DriverOrigin, LoadedModule, driver_origin, loaded_modules, relevant
from agent.discovery.os_release import OsInfo, detect_os
from agent.discovery.security import SecurityPolicy, detect_security, read_firmware_path
from agent.discovery.udev import udev_available, udev_intel_display_devices
from agent.host.paths import HostPaths


@dataclass(frozen=True)
class NodeFacts:
    """Everything discovery found, plus what it could not read."""

    kernel: KernelInfo
    os: OsInfo
    gpus: tuple[PciGpu, ...]
    modules: dict[str, LoadedModule]
    i915: DriverOrigin
    firmware_path: str | None
    security: SecurityPolicy
    udev: bool
    problems: tuple[str, ...]


def discover(host: HostPaths, *, use_udev: bool = True, driver_module: str = "i915") -> NodeFacts:
    """Discover the node; only an unreadable kernel release is fatal (``HostReadError``)."""
    kernel = detect_kernel(host)
    os_info = detect_os(host)
    scan: GpuScan = scan_gpus(host)
    problems = list(os_info.problems) + list(scan.problems)
    udev = False
    if use_udev and udev_available(host):
        try:
            names = {d.address: d.model for d in udev_intel_display_devices() if d.model}
            scan = enrich(scan, names)
            udev = True
        except Exception as e:
            problems.append(f"udev enumeration failed, using sysfs only: {e}")
    modules = loaded_modules(host, lambda name: relevant(name, driver_module))
    if not host.proc_modules.exists():
        problems.append(f"cannot read loaded modules from {host.proc_modules}")
    firmware_path = read_firmware_path(host)
    if firmware_path is None:
        problems.append(f"cannot read the firmware search path from {host.firmware_class_path}")
    return NodeFacts(
        kernel=kernel,
        os=os_info,
        gpus=scan.gpus,
        modules=modules,
        i915=driver_origin(modules, driver_module),
        firmware_path=firmware_path,
        security=detect_security(host),
        udev=udev,
        problems=tuple(problems),
    )
