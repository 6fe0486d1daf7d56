"""HostPaths: the one place that knows where host files live, relative to a host root."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path, PurePosixPath

# Where the DaemonSet mounts the host; the CLI defaults to "/" for a process running on the node.
CONTAINER_HOST_ROOT = "/host"


def module_key(name: str) -> str:
    """A module's name as the kernel spells it (lsmod, /sys/module): "mei-gsc" and "mei_gsc" are one module."""
    return name.replace("-", "_")


@dataclass(frozen=True)
class HostPaths:
    """Host locations under ``root``: "/" on the node, "/host" in the container, a tmp dir in tests.

    Nothing else in the agent spells a host path; ask this object instead.
    """

    root: Path
    state_dir_name: str = "var/lib/intel-gpu-driver"
    firmware_dir_name: str = "var/lib/firmware"

    def host(self, path: str) -> Path:
        """A host path (absolute, as seen on the node) mapped under the root."""
        return self.root / path.lstrip("/")

    # --- procfs -------------------------------------------------------------------------------
    @property
    def proc(self) -> Path:
        return self.root / "proc"

    @property
    def proc_kernel_release(self) -> Path:
        """The host kernel's release: procfs is the host's even where uname would be the container's."""
        return self.proc / "sys/kernel/osrelease"

    @property
    def proc_version(self) -> Path:
        return self.proc / "version"

    @property
    def proc_version_signature(self) -> Path:
        """Ubuntu's "Ubuntu 5.15.0-135.146-generic 5.15.178"; absent elsewhere."""
        return self.proc / "version_signature"

    @property
    def proc_modules(self) -> Path:
        return self.proc / "modules"

    @property
    def proc_cmdline(self) -> Path:
        return self.proc / "cmdline"

    @property
    def proc_self_cgroup(self) -> Path:
        """This process's cgroups (meaningful with root "/": a container's own, not the host's)."""
        return self.proc / "self/cgroup"

    @property
    def proc_meminfo(self) -> Path:
        return self.proc / "meminfo"

    # --- sysfs --------------------------------------------------------------------------------
    @property
    def sys(self) -> Path:
        return self.root / "sys"

    @property
    def cgroup_fs(self) -> Path:
        """Where the cgroup filesystems are mounted (v2 itself, or one folder per v1 controller)."""
        return self.sys / "fs/cgroup"

    @property
    def pci_devices(self) -> Path:
        return self.sys / "bus/pci/devices"

    @property
    def sys_module(self) -> Path:
        return self.sys / "module"

    def module_dir(self, name: str) -> Path:
        """/sys/module/<name>; module names use underscores in sysfs."""
        return self.sys_module / module_key(name)

    @property
    def firmware_class_path(self) -> Path:
        """The kernel's extra firmware search path (may be a bind-mounted single file in a pod)."""
        return self.sys_module / "firmware_class/parameters/path"

    @property
    def lockdown(self) -> Path:
        return self.sys / "kernel/security/lockdown"

    @property
    def efivars(self) -> Path:
        return self.sys / "firmware/efi/efivars"

    @property
    def sig_enforce(self) -> Path:
        return self.sys_module / "module/parameters/sig_enforce"

    # --- /etc, /lib, /var, /dev ---------------------------------------------------------------
    @property
    def os_release(self) -> Path:
        """The host's os-release: /etc/os-release, falling back to /usr/lib/os-release."""
        etc = self.root / "etc/os-release"
        return etc if etc.exists() else self.root / "usr/lib/os-release"

    @property
    def lib_modules(self) -> Path:
        return self.root / "lib/modules"

    def kernel_modules_dir(self, kernel: str) -> Path:
        return self.lib_modules / kernel

    def kernel_headers_dir(self, kernel: str) -> Path:
        """/lib/modules/<kver>/build: the headers kbuild needs."""
        return self.kernel_modules_dir(kernel) / "build"

    @property
    def lib_firmware(self) -> Path:
        return self.root / "lib/firmware"

    @property
    def lib_firmware_updates(self) -> Path:
        """Searched by default before /lib/firmware: needs no firmware path change."""
        return self.lib_firmware / "updates"

    @property
    def firmware_dir(self) -> Path:
        """Where the agent places firmware when it may set the firmware path (/var/lib/firmware)."""
        return self.root / self.firmware_dir_name

    def as_host_path(self, path: Path) -> str:
        """The node's own spelling of a path under the root (what the kernel must be told)."""
        relative = path.relative_to(self.root).as_posix()
        return "/" if relative == "." else "/" + relative

    def from_host_path(self, node_path: str) -> Path:
        """A node path (as journaled: "/var/lib/firmware/i915/x.bin") under this root, symlinks followed.

        Links resolve as on the node (an absolute target is the node's, ".." stops at the node's "/"),
        so the result always lies under the root. A path that is not absolute or that climbs with ".."
        is refused with ``ValueError``: nothing the agent records needs one.
        """
        pure = PurePosixPath(node_path)
        if not pure.is_absolute() or any(part in ("..", ".") for part in node_path.split("/")):
            raise ValueError(f"{node_path!r} is not an absolute path without '..' on the node")
        pending = list(pure.parts[1:])
        resolved: list[str] = []
        links = 0
        while pending:
            part = pending.pop(0)
            if part in ("", "."):
                continue
            if part == "..":
                if resolved:
                    resolved.pop()
                continue
            candidate = self.root.joinpath(*resolved, part)
            if candidate.is_symlink():
                links += 1
                if links > 40:
                    raise ValueError(f"{node_path!r}: too many levels of symbolic links on the node")
                target = PurePosixPath(candidate.readlink().as_posix())
                if target.is_absolute():
                    resolved = []
                pending = [*target.parts[1:], *pending] if target.is_absolute() else [*target.parts, *pending]
                continue
            resolved.append(part)
        return self.root.joinpath(*resolved)

    @property
    def state_dir(self) -> Path:
        """The agent's own folder on the host: journal, build cache, downloads."""
        return self.root / self.state_dir_name

    @property
    def dev_dri(self) -> Path:
        return self.root / "dev/dri"

    @property
    def dev(self) -> Path:
        return self.root / "dev"

    @property
    def dev_kmsg(self) -> Path:
        """The kernel log as records with sequence numbers (read from a mark: "since the load")."""
        return self.dev / "kmsg"

    @property
    def boot_id(self) -> Path:
        """Changes on every boot: kernel state recorded in the journal is void after a reboot."""
        return self.proc / "sys/kernel/random/boot_id"

    @property
    def firmware_backup_dir(self) -> Path:
        """Where a host firmware file we had to overwrite is kept until undo restores it."""
        return self.state_dir / "backup/firmware"

    @property
    def staged_trees_dir(self) -> Path:
        """Where driver trees are copied, checked and indexed before the node loads from them."""
        return self.state_dir / "trees"

    @property
    def build_cache_dir(self) -> Path:
        """Driver trees built on the node, per recipe and kernel: a restart never recompiles."""
        return self.state_dir / "cache"

    @property
    def run_udev(self) -> Path:
        return self.root / "run/udev"

    def resolve(self, path: Path) -> Path:
        """Follow symlinks inside the host root: an absolute link target means the host's, not ours.

        /lib/modules/<kver>/build points at /usr/src/linux-headers-<kver> on the node; under /host
        that must become /host/usr/src/..., which Path.resolve() would get wrong.
        """
        current = path
        for _ in range(40):
            if not current.is_symlink():
                return current
            target = Path(current.readlink())
            current = self.root / str(target).lstrip("/") if target.is_absolute() else current.parent / target
        return current
