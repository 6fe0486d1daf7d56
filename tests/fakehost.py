"""Builders for fake host trees (procfs, sysfs, /etc) under a tmp dir, for unit tests of discovery.

Each helper writes only what the real kernel would show for that fact, so tests read like a node
description: ``host.kernel(...)``, ``host.pci_gpu("0000:03:00.0", "56c0", driver="i915")``.
"""

from __future__ import annotations

import os
from pathlib import Path

from agent.host.paths import HostPaths

SECURE_BOOT_VAR = "SecureBoot-8be4df61-93ca-11d2-aa0d-e98c2b8c8b8b"


class FakeHost:
    """A host root under ``root``; ``paths`` is the HostPaths the agent would use."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.paths = HostPaths(root)
        self.paths.pci_devices.mkdir(parents=True, exist_ok=True)
        self.paths.sys_module.mkdir(parents=True, exist_ok=True)
        (root / "sys/devices/pci0000:00").mkdir(parents=True, exist_ok=True)
        self._modules: dict[str, tuple[int, list[str]]] = {}
        self.write("proc/modules", "")
        self.firmware_path("")

    def write(self, relative: str, text: str | bytes) -> Path:
        path = self.root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(text, bytes):
            path.write_bytes(text)
        else:
            path.write_text(text)
        return path

    # --- kernel and OS -------------------------------------------------------------------------
    def kernel(
        self, release: str, *, upstream: str = "", ubuntu: bool = False, debian: bool = False, headers: bool = True
    ) -> FakeHost:
        self.write("proc/sys/kernel/osrelease", release + "\n")
        build = f"#1 SMP PREEMPT_DYNAMIC Debian {upstream}-1 (2025-11-08)" if debian else "#1 SMP"
        self.write("proc/version", f"Linux version {release} (builder@host) (gcc 12) {build}\n")
        if ubuntu:
            base, abi, flavour = release.split("-", 2)
            self.write("proc/version_signature", f"Ubuntu {base}-{abi}.{int(abi) + 10}-{flavour} {upstream}\n")
        if headers:
            # As on a real node: build is an absolute link to the headers under /usr/src.
            src = self.root / "usr/src" / f"linux-headers-{release}"
            src.mkdir(parents=True, exist_ok=True)
            (src / "Makefile").write_text("# headers\n")
            link = self.paths.kernel_headers_dir(release)
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(f"/usr/src/linux-headers-{release}")
        return self

    def os_release(self, os_id: str, version: str, pretty: str) -> FakeHost:
        self.write("etc/os-release", f'ID={os_id}\nVERSION_ID="{version}"\nPRETTY_NAME="{pretty}"\n')
        return self

    # --- PCI -----------------------------------------------------------------------------------
    def pci_device(self, address: str, *, vendor: str, device: str, pci_class: str) -> Path:
        real = self.root / "sys/devices/pci0000:00" / address
        real.mkdir(parents=True, exist_ok=True)
        for name, value in (("vendor", vendor), ("device", device), ("class", pci_class), ("numa_node", "0")):
            (real / name).write_text(value + "\n")
        link = self.paths.pci_devices / address
        link.symlink_to(os.path.relpath(real, link.parent))
        return real

    def pci_gpu(
        self,
        address: str,
        device_id: str,
        *,
        driver: str = "",
        vf_of: str = "",
        total_vfs: int = 0,
        card: int | None = None,
        numa: int = 0,
        pci_class: str = "0x038000",
    ) -> Path:
        """An Intel display-class function; ``driver`` binds it, ``vf_of`` makes it an SR-IOV VF."""
        real = self.pci_device(address, vendor="0x8086", device=f"0x{device_id}", pci_class=pci_class)
        (real / "numa_node").write_text(f"{numa}\n")
        if total_vfs:
            (real / "sriov_totalvfs").write_text(f"{total_vfs}\n")
        if vf_of:
            (real / "physfn").symlink_to(f"../{vf_of}")
        if driver:
            drv = self.root / "sys/bus/pci/drivers" / driver
            drv.mkdir(parents=True, exist_ok=True)
            (self.paths.sys_module / driver).mkdir(parents=True, exist_ok=True)
            if not (drv / "module").exists():
                (drv / "module").symlink_to(os.path.relpath(self.paths.sys_module / driver, drv))
            (real / "driver").symlink_to(os.path.relpath(drv, real))
        if card is not None:
            (real / "drm" / f"card{card}").mkdir(parents=True)
            (real / "drm" / f"renderD{128 + card}").mkdir(parents=True)
        return real

    # --- modules -------------------------------------------------------------------------------
    def module(
        self,
        name: str,
        *,
        version: str = "",
        srcversion: str = "",
        refcount: int = 0,
        holders: tuple[str, ...] = (),
        size: int = 4096,
        taint: str = "",
    ) -> FakeHost:
        directory = self.paths.module_dir(name)
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "refcnt").write_text(f"{refcount}\n")
        (directory / "holders").mkdir(exist_ok=True)
        for holder in holders:
            (directory / "holders" / holder).mkdir(exist_ok=True)
        if version:
            (directory / "version").write_text(version + "\n")
        if srcversion:
            (directory / "srcversion").write_text(srcversion + "\n")
        if taint:  # "O": out of tree, "E": unsigned; the kernel's own modules have none
            (directory / "taint").write_text(taint + "\n")
        self._modules[name] = (refcount, list(holders))
        lines = [
            f"{n} {size} {rc} {','.join(h) + ',' if h else '-'} Live 0x0000000000000000"
            for n, (rc, h) in self._modules.items()
        ]
        self.write("proc/modules", "\n".join(lines) + "\n")
        return self

    # --- policy --------------------------------------------------------------------------------
    def firmware_path(self, value: str) -> FakeHost:
        # sysfs appends a newline when read.
        self.write("sys/module/firmware_class/parameters/path", value + "\n")
        return self

    def secure_boot(self, enabled: bool) -> FakeHost:
        self.write(
            f"sys/firmware/efi/efivars/{SECURE_BOOT_VAR}", b"\x06\x00\x00\x00" + (b"\x01" if enabled else b"\x00")
        )
        return self

    def lockdown(self, mode: str) -> FakeHost:
        words = ["none", "integrity", "confidentiality"]
        self.write("sys/kernel/security/lockdown", " ".join(f"[{w}]" if w == mode else w for w in words) + "\n")
        return self

    def sig_enforce(self, on: bool) -> FakeHost:
        self.write("sys/module/module/parameters/sig_enforce", "Y\n" if on else "N\n")
        return self


# --- realistic nodes ---------------------------------------------------------------------------
BACKPORT_VERSION = "backported to 5.15.0-135 from (9379173c06276) using backports I915_23.10.90_PSB_231129.99"


def ubuntu_2204_flex(root: Path) -> FakeHost:
    """Ubuntu 22.04, validated 5.15.0-135-generic, two Flex 170 (one with a VF), in-tree i915 bound."""
    host = FakeHost(root)
    host.kernel("5.15.0-135-generic", upstream="5.15.178", ubuntu=True)
    host.os_release("ubuntu", "22.04", "Ubuntu 22.04.5 LTS")
    host.pci_gpu("0000:4d:00.0", "56c0", driver="i915", total_vfs=31, card=0, numa=0)
    host.pci_gpu("0000:4d:00.1", "56c0", driver="i915", vf_of="0000:4d:00.0", card=2, numa=0)
    host.pci_gpu("0000:ca:00.0", "56c0", driver="i915", total_vfs=31, card=1, numa=1)
    host.pci_device("0000:00:1f.6", vendor="0x8086", device="0x15b9", pci_class="0x020000")  # NIC
    host.pci_device("0000:03:00.0", vendor="0x102b", device="0x0536", pci_class="0x030000")  # BMC VGA
    host.module("drm", refcount=2, holders=("i915",))
    host.module("i915", refcount=3, srcversion="0D0F0E0D0C0B0A0908070605")
    return host


def ubuntu_2404_max(root: Path) -> FakeHost:
    """Ubuntu 24.04 on 6.8.0-56-generic with a Data Center GPU Max 1550 and the backport loaded."""
    host = FakeHost(root)
    host.kernel("6.8.0-56-generic", upstream="6.8.12", ubuntu=True)
    host.os_release("ubuntu", "24.04", "Ubuntu 24.04.2 LTS")
    host.pci_gpu("0000:29:00.0", "0bd5", driver="i915", card=0, numa=0)
    host.module("i915_compat", refcount=5, holders=("i915",))
    host.module("i915", refcount=1, version=BACKPORT_VERSION, srcversion="ABCDEF0123456789ABCDEF0")
    return host


def debian_node(root: Path) -> FakeHost:
    """Debian 12 on its 6.1 kernel with one unbound Flex 140."""
    host = FakeHost(root)
    host.kernel("6.1.0-57-amd64", upstream="6.1.158", debian=True)
    host.os_release("debian", "12", "Debian GNU/Linux 12 (bookworm)")
    host.pci_gpu("0000:03:00.0", "56c1")
    return host


def umockdev_record(address: str, device_id: str, *, pci_class: str = "038000", driver: str = "") -> str:
    """A umockdev device description (P:/E:/A: lines) of one PCI function, for umockdev-run."""
    lines = [
        f"P: /devices/pci0000:00/{address}",
        "E: SUBSYSTEM=pci",
        f"E: PCI_CLASS={pci_class.lstrip('0').upper()}",
        f"E: PCI_ID=8086:{device_id.upper()}",
        f"E: PCI_SLOT_NAME={address}",
    ]
    if driver:
        lines.append(f"E: DRIVER={driver}")
    lines += [
        "A: vendor=0x8086",
        f"A: device=0x{device_id}",
        f"A: class=0x{pci_class}",
        "A: numa_node=-1",
    ]
    return "\n".join(lines) + "\n"
