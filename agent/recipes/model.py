"""The recipe's data model: what one driver release is, how it builds, loads and what it supports."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Archive:
    """A pinned input: a URL, a tarball or a folder (relative locations resolve against the recipe)."""

    url: str
    sha256: str
    top_folder: str = ""
    subdir: str = ""

    @property
    def is_remote(self) -> bool:
        return self.url.startswith(("https://", "http://"))


@dataclass(frozen=True)
class FirmwareFile:
    """A firmware blob the driver requests, by the name the module asks the kernel for."""

    name: str
    sha256: str
    bytes: int
    platforms: tuple[str, ...] = ()


@dataclass(frozen=True)
class ModuleFile:
    """A kernel module the build must produce, and where the build leaves it."""

    name: str
    path: str
    optional: bool = False


@dataclass(frozen=True)
class ValidatedKernel:
    """One kernel a release was validated on (from the release's own `versions` file)."""

    os: str
    os_version: str
    variant: str
    kernel: str

    @property
    def series(self) -> str:
        """major.minor, e.g. "5.15"."""
        return ".".join(self.kernel.split("-")[0].split(".")[:2])

    def describe(self) -> str:
        where = " ".join(p for p in (self.os.capitalize(), self.os_version, self.variant) if p)
        return f"{self.kernel} ({where})"


@dataclass(frozen=True)
class Recipe:
    """One driver release: sources, firmware, build steps, modules and the kernels it supports."""

    path: Path
    name: str
    title: str
    stream: str
    driver_tag: str
    released: str
    source: Archive
    firmware: Archive
    firmware_tag: str
    firmware_files: tuple[FirmwareFile, ...]
    build_env: tuple[tuple[str, str], ...]
    build_steps: tuple[tuple[str, ...], ...]
    main_module: str
    version_marker: str
    load_order: tuple[str, ...]
    replaces: tuple[str, ...]
    after: tuple[str, ...]
    parameters: tuple[tuple[str, tuple[tuple[str, str], ...]], ...]
    module_files: tuple[ModuleFile, ...]
    platforms: tuple[str, ...]
    device_ids: frozenset[str]
    ubuntu_flavours: tuple[str, ...]
    kernels: tuple[ValidatedKernel, ...] = field(default=())

    def module_parameters(self, module: str) -> dict[str, str]:
        """Module options the recipe sets for ``module`` (empty when none)."""
        for name, params in self.parameters:
            if name == module:
                return dict(params)
        return {}

    def resolve(self, location: str) -> str:
        """A source/firmware location: URLs as they are, relative paths against the recipe's folder."""
        if location.startswith(("https://", "http://", "/")):
            return location
        return str((self.path.parent / location).resolve())
