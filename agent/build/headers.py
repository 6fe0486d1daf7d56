"""Kernel headers for the target kernel: where they are, which kernel and OS they describe, their identity."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from agent.errors import UsageError
from agent.host.files import read_optional

if TYPE_CHECKING:
    # Only diagnosis and error messages need these; a no-op rebuild must not pay for importing them.
    from agent.discovery.kernel import KernelInfo
    from agent.discovery.os_release import OsInfo
    from agent.host.paths import HostPaths

# Files whose content pins what a module built against these headers links to.
IDENTITY_FILES = (".config", "Module.symvers", "include/generated/utsrelease.h", "include/generated/autoconf.h")
_UTS_RELEASE = re.compile(r'#define UTS_RELEASE "([^"]+)"')
_UTS_VERSION = re.compile(r'#define UTS_VERSION "([^"]+)"')
# Only the options the build reads: a regex over all 10,000 lines of .config costs a no-op build 20 ms.
CONFIG_KEYS = ("CONFIG_VERSION_SIGNATURE", "CONFIG_SUSE_KERNEL", "CONFIG_MODULE_SIG_HASH", "CONFIG_MODULE_SIG")


class HeadersMissingError(UsageError):
    """No usable kernel headers for the target kernel: names the package that provides them (exit 2)."""


@dataclass(frozen=True)
class KernelHeaders:
    """A kernel's build folder and what it says about the kernel it was made for."""

    kernel: str
    path: Path
    config: dict[str, str]
    uts_version: str
    identity: str
    # The kernel source tree the build folder refers to (Debian's -common package, a `make O=` source),
    # where most headers are: include/linux/pci.h is not in Debian's linux-headers-<kver>-amd64.
    source_dirs: tuple[Path, ...] = ()

    @property
    def version_signature(self) -> str:
        """Ubuntu's "Ubuntu 5.15.0-135.146-generic 5.15.178" (CONFIG_VERSION_SIGNATURE); "" elsewhere."""
        return self.config.get("CONFIG_VERSION_SIGNATURE", "").strip('"')

    @property
    def sign_hash(self) -> str:
        """The hash algorithm the kernel signs modules with (CONFIG_MODULE_SIG_HASH)."""
        return self.config.get("CONFIG_MODULE_SIG_HASH", '"sha256"').strip('"') or "sha256"

    @property
    def sign_file(self) -> Path:
        return self.path / "scripts" / "sign-file"

    def kernel_info(self) -> KernelInfo:
        """The target kernel as the support verdict sees it (upstream version from the headers)."""
        from agent.discovery.kernel import parse_kernel

        return parse_kernel(self.kernel, version=self.uts_version, signature=self.version_signature, headers=True)

    def os_info(self, host: HostPaths) -> OsInfo:
        """The OS the kernel belongs to: the headers say it when they can, else the host's os-release."""
        from agent.discovery.os_release import OsInfo, detect_os

        if self.version_signature.startswith("Ubuntu"):
            return OsInfo(id="ubuntu", version_id="", pretty_name="Ubuntu (from the kernel headers)")
        if "CONFIG_SUSE_KERNEL" in self.config:
            return OsInfo(id="sles", version_id="", pretty_name="SUSE (from the kernel headers)")
        if "Debian" in self.uts_version:
            return OsInfo(id="debian", version_id="", pretty_name="Debian (from the kernel headers)")
        return detect_os(host)


def headers_package(host: HostPaths, kernel: str) -> str:
    """The package that installs headers for ``kernel`` on the host's distribution."""
    from agent.discovery.os_release import detect_os

    os_info = detect_os(host)
    if os_info.id in ("rhel", "centos", "rocky", "almalinux", "fedora") or os_info.is_like("rhel"):
        return f"kernel-devel-{kernel}"
    if os_info.id.startswith(("sles", "opensuse")) or os_info.is_like("suse"):
        flavour = kernel.rsplit("-", 1)[-1] if "-" in kernel else "default"
        return f"kernel-{flavour}-devel"
    return f"linux-headers-{kernel}"


def find_headers(host: HostPaths, kernel: str, override: Path | None = None) -> KernelHeaders:
    """The headers for ``kernel``: ``override`` or the host's /lib/modules/<kernel>/build.

    Missing or incomplete headers raise ``HeadersMissingError`` naming the package to install;
    headers made for another kernel are refused (a build would silently target the wrong one).
    """
    if override is not None:
        where = override
        path = override.resolve()
    else:
        where = host.kernel_headers_dir(kernel)
        path = host.resolve(where)
    # An absolute path the headers name is the node's: under the host root unless --headers was given.
    on_host = override is None
    if not (path / "Makefile").is_file():
        package = headers_package(host, kernel)
        raise HeadersMissingError(
            f"kernel headers for {kernel} are not installed ({where} "
            f"{'has no Makefile' if path.is_dir() else 'does not exist'})",
            hint=f"install {package} (apt-get install {package} on Ubuntu and Debian) or pass --headers DIR",
        )
    generated = path / "include" / "generated"
    uts = read_optional(generated / "utsrelease.h") or ""
    match = _UTS_RELEASE.search(uts)
    if match and match.group(1) != kernel:
        raise UsageError(
            f"the headers at {path} are for kernel {match.group(1)}, not {kernel}",
            hint=f"pass the headers of {kernel} with --headers, or build with --kernel {match.group(1)}",
        )
    version_text = read_optional(generated / "utsversion.h") or read_optional(generated / "compile.h") or ""
    version = _UTS_VERSION.search(version_text)
    config_text = read_optional(path / ".config") or ""
    return KernelHeaders(
        kernel=kernel,
        path=path,
        config=_config_values(config_text),
        uts_version=version.group(1) if version else "",
        identity=_identity(path),
        source_dirs=_source_dirs(host, path, on_host=on_host),
    )


_MAKEFILE_INCLUDE = re.compile(r"^include\s+(/\S+)/Makefile\s*$", re.MULTILINE)


def _source_dirs(host: HostPaths, path: Path, *, on_host: bool) -> tuple[Path, ...]:
    """The source trees the build folder uses, as kbuild finds them: its ``source`` link, or the
    Makefile it includes (Debian: ``include /usr/src/linux-headers-<kver>-common/Makefile``)."""
    if (path / "include" / "linux").is_dir():
        return ()  # a full tree (or Ubuntu's, linked into place): the build folder has the headers itself
    found: list[Path] = []
    link = path / "source"
    if link.is_symlink():
        found.append(host.resolve(link) if on_host else link.resolve())
    makefile = read_optional(path / "Makefile") or ""
    for match in _MAKEFILE_INCLUDE.finditer(makefile[:4096]):
        folder = Path(match.group(1))
        found.append(host.resolve(host.host(str(folder))) if on_host else folder)
    unique = []
    for folder in found:
        if folder not in unique and folder != path and folder.is_dir():
            unique.append(folder)
    return tuple(unique)


def _config_values(text: str) -> dict[str, str]:
    """The values of CONFIG_KEYS set in a .config (absent or "is not set" ones are left out)."""
    values = {}
    for key in CONFIG_KEYS:
        prefix = f"{key}="
        if text.startswith(prefix):
            at = 0
        else:
            found = text.find("\n" + prefix)
            if found < 0:
                continue
            at = found + 1
        end = text.find("\n", at)
        values[key] = text[at + len(prefix) : end if end >= 0 else len(text)]
    return values


def _identity(path: Path) -> str:
    """A digest of the files that decide what the built modules link against."""
    digest = hashlib.sha256(str(path).encode())
    for name in IDENTITY_FILES:
        digest.update(b"\0" + name.encode() + b"\0")
        try:
            digest.update((path / name).read_bytes())
        except OSError:
            digest.update(b"(absent)")
    return digest.hexdigest()
