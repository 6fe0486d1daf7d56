"""The running kernel, read from the host's procfs: release, upstream version, Ubuntu flavour and ABI."""

from __future__ import annotations

import re
from dataclasses import dataclass

from agent.host.files import read_optional, read_text
from agent.host.paths import HostPaths

# "Ubuntu 5.15.0-135.146-generic 5.15.178"
_SIGNATURE = re.compile(
    r"^(?P<distro>\S+) (?P<base>\d+\.\d+\.\d+)-(?P<abi>\d+)\.(?P<upload>\d+)-(?P<flavour>\S+)"
    r" (?P<upstream>\d+\.\d+\.\d+)"
)
# "5.15.0-135-generic", "6.1.0-57-amd64", "6.8.0-1015-aws", "6.1.131"
_RELEASE = re.compile(r"^(?P<base>\d+\.\d+(?:\.\d+)?)(?:-(?P<abi>\d+))?(?:[-.](?P<flavour>[A-Za-z][\w.+-]*))?")
# Debian puts the real upstream version in /proc/version: "... Debian 6.1.158-1 (2025-11-08)"
# The compiler's version comes first ("gcc-12 (Debian 12.2.0-14+deb12u1) 12.2.0"): the LAST match,
# in the build string ("#1 SMP PREEMPT_DYNAMIC Debian 6.1.192-3"), names the kernel.
_DEBIAN = re.compile(r"Debian (?P<upstream>\d+\.\d+\.\d+)")


@dataclass(frozen=True)
class KernelInfo:
    """Facts about one kernel release."""

    release: str
    upstream: str
    series: str
    sublevel: int
    abi: str
    flavour: str
    distro_signature: str
    headers: bool

    def describe(self) -> str:
        if self.upstream and not self.release.startswith(self.upstream + "-") and self.upstream != self.release:
            return f"{self.release} (upstream {self.upstream})"
        return self.release


def parse_kernel(release: str, *, version: str = "", signature: str = "", headers: bool = False) -> KernelInfo:
    """Build ``KernelInfo`` from the release string and, when present, /proc/version and Ubuntu's signature."""
    release = release.strip()
    match = _RELEASE.match(release)
    base = match.group("base") if match else release
    abi = (match.group("abi") if match else None) or ""
    flavour = (match.group("flavour") if match else None) or ""
    upstream = base
    sig = _SIGNATURE.match(signature.strip())
    if sig:
        upstream = sig.group("upstream")
        abi = sig.group("abi")
        flavour = sig.group("flavour")
    else:
        debian = next(reversed(list(_DEBIAN.finditer(version))), None)
        if debian:
            upstream = debian.group("upstream")
    numbers = upstream.split(".")
    series = ".".join(numbers[:2])
    sublevel = int(numbers[2]) if len(numbers) > 2 and numbers[2].isdigit() else 0
    return KernelInfo(
        release=release,
        upstream=upstream,
        series=series,
        sublevel=sublevel,
        abi=abi,
        flavour=flavour,
        distro_signature=signature.strip(),
        headers=headers,
    )


def detect_kernel(host: HostPaths) -> KernelInfo:
    """The host's running kernel (procfs is the host's even inside a container)."""
    release = read_text(host.proc_kernel_release, what="the kernel release").strip()
    headers = host.resolve(host.kernel_headers_dir(release)).is_dir()
    return parse_kernel(
        release,
        version=read_optional(host.proc_version) or "",
        signature=read_optional(host.proc_version_signature) or "",
        headers=headers,
    )
