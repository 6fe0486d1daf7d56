"""The recipe's data model: what one driver release is, how it builds, loads and what it supports."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class ReleaseMarker:
    """How a source tree says which release it is: ``line`` is one line of ``file`` (e.g. versions)."""

    file: str
    line: str

    @property
    def key(self) -> str:
        """The part before '=' (BACKPORTS_RELEASE_TAG), to show what another release's file says."""
        return self.line.split("=", 1)[0]


@dataclass(frozen=True)
class Archive:
    """A pinned input: a URL, a tarball or a folder (relative locations resolve against the recipe)."""

    url: str
    sha256: str
    top_folder: str = ""
    subdir: str = ""
    # Firmware only: the repository's raw URL of one file at the release tag, with {tag} and {file}.
    files_url: str = ""
    # Source only: a line of a file in the source tree that names the release (None: not checked).
    release: ReleaseMarker | None = None

    @property
    def is_remote(self) -> bool:
        return self.url.startswith(("https://", "http://"))


@dataclass(frozen=True)
class FirmwareFile:
    """A firmware blob the driver requests, by the name the module asks the kernel for.

    ``file`` is where the blob lies in the firmware source (below its subdir): the firmware
    repository keeps its files flat (dg2_guc_70.40.1.bin) while the module requests i915/dg2_guc_70.40.1.bin.
    """

    name: str
    sha256: str
    bytes: int
    platforms: tuple[str, ...] = ()
    file: str = ""

    @property
    def source_file(self) -> str:
        """The path in the firmware source; the requested name when the recipe gives none."""
        return self.file or self.name


@dataclass(frozen=True)
class UnneededFirmware:
    """A name the modules request that no firmware release ships and the recipe's platforms do not need."""

    name: str
    reason: str


PARAMETER = "parameter"
ABSENT = "absent"
MACRO_CALL = "macro-call"
PROBE_KINDS = (PARAMETER, ABSENT, MACRO_CALL)


@dataclass(frozen=True)
class HeaderProbe:
    """A question about the target kernel's headers; the fix is needed when the answer is yes.

    - ``parameter``: is ``symbol`` (a function) declared in ``headers[0]`` with a parameter named ``parameter``?
    - ``absent``: does none of ``headers`` mention ``symbol`` any more?
    - ``macro-call``: does ``headers[0]`` #define ``symbol`` as an expression that calls a function, which
      the preprocessor cannot evaluate in ``#if``?
    Header paths are relative to the kernel source tree (include/linux/pci.h).
    """

    kind: str
    headers: tuple[str, ...]
    symbol: str
    parameter: str = ""

    def describe(self) -> str:
        """The question, in words (logs, `check`, the manifest)."""
        if self.kind == PARAMETER:
            return f"{self.headers[0]} declares {self.symbol}() with a parameter {self.parameter}"
        if self.kind == ABSENT:
            return f"{self.symbol} is gone from {', '.join(self.headers)}"
        return f"{self.headers[0]} defines {self.symbol} as a run-time expression, not a preprocessor constant"


@dataclass(frozen=True)
class CompatFix:
    """One of the project's own small patches, applied when the target kernel's headers need it."""

    name: str
    patch: str  # relative to the recipe's folder, like other local locations
    sha256: str
    why: str
    probe: HeaderProbe


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
    firmware_not_needed: tuple[UnneededFirmware, ...] = ()
    compat_fixes: tuple[CompatFix, ...] = ()

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
