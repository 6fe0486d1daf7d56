"""The driver tree a build produces and a load consumes, and its manifest.json.

Layout (the KMM image layout, so the same tree serves KMM and the agent):
    <tree>/opt/lib/modules/<kernel>/updates/**.ko[.xz|.zst]  + modules.dep etc. from depmod -b
    <tree>/firmware/<name>                                  e.g. firmware/i915/dg2_guc_70.40.1.bin
    <tree>/manifest.json
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from agent.errors import UsageError
from agent.host.files import atomic_write
from agent.host.paths import module_key

MANIFEST = "manifest.json"
MANIFEST_SCHEMA = 1


@dataclass(frozen=True)
class BuiltModule:
    """One module in the tree: where it is (relative to the tree), its identity and what it needs."""

    name: str
    path: str
    sha256: str
    srcversion: str
    vermagic: str
    version: str = ""
    depends: tuple[str, ...] = ()
    firmware: tuple[str, ...] = ()
    signed: bool = False


@dataclass(frozen=True)
class BuiltFirmware:
    """One firmware file in the tree; ``name`` is what the module requests (e.g. i915/x.bin)."""

    name: str
    path: str
    sha256: str
    bytes: int


@dataclass(frozen=True)
class AppliedFix:
    """A compat fix the tree was built with: its patch's pin, the files it changed, why the kernel needed it."""

    name: str
    sha256: str
    files: tuple[str, ...] = ()
    probe: str = ""  # the question asked of the headers
    evidence: str = ""  # the header line that answered it


@dataclass(frozen=True)
class Manifest:
    """What a driver tree holds and what it was built from."""

    recipe: str
    driver_tag: str
    kernel: str
    inputs_digest: str
    modules: tuple[BuiltModule, ...]
    firmware: tuple[BuiltFirmware, ...]
    signed: bool = False
    agent_version: str = ""
    built_at: str = ""
    inputs: dict[str, str] = field(default_factory=dict)
    schema: int = MANIFEST_SCHEMA
    compat_fixes: tuple[AppliedFix, ...] = ()  # optional: trees built before fixes existed have none

    def module(self, name: str) -> BuiltModule | None:
        wanted = module_key(name)
        return next((m for m in self.modules if module_key(m.name) == wanted), None)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True) + "\n"


@dataclass(frozen=True)
class DriverTree:
    """A driver tree on disk and its manifest."""

    root: Path
    manifest: Manifest

    @property
    def modules_base(self) -> Path:
        """The folder to give `depmod -b` / `modprobe -d` (holds lib/modules/<kernel>)."""
        return self.root / "opt"

    @property
    def modules_dir(self) -> Path:
        return self.modules_base / "lib/modules" / self.manifest.kernel

    def firmware_file(self, name: str) -> Path:
        return self.root / "firmware" / name

    def path_of(self, relative: str) -> Path:
        return self.root / relative


def manifest_from_dict(data: dict[str, Any], *, source: str) -> Manifest:
    """Parse a manifest; a missing key or wrong schema is a ``UsageError`` naming the file."""
    try:
        if data.get("schema") != MANIFEST_SCHEMA:
            raise UsageError(f"{source}: manifest schema {data.get('schema')!r} is not {MANIFEST_SCHEMA}")
        return Manifest(
            recipe=data["recipe"],
            driver_tag=data["driver_tag"],
            kernel=data["kernel"],
            inputs_digest=data["inputs_digest"],
            modules=tuple(
                BuiltModule(**{**m, "depends": tuple(m.get("depends", ())), "firmware": tuple(m.get("firmware", ()))})
                for m in data["modules"]
            ),
            firmware=tuple(BuiltFirmware(**f) for f in data["firmware"]),
            signed=bool(data.get("signed", False)),
            agent_version=data.get("agent_version", ""),
            built_at=data.get("built_at", ""),
            inputs=dict(data.get("inputs", {})),
            compat_fixes=tuple(
                AppliedFix(**{**f, "files": tuple(f.get("files", ()))}) for f in data.get("compat_fixes", ())
            ),
        )
    except (KeyError, TypeError) as e:
        raise UsageError(f"{source}: malformed manifest ({e})") from e


def load_tree(root: Path) -> DriverTree:
    """Open a driver tree; a missing or malformed manifest is a ``UsageError``."""
    path = root / MANIFEST
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise UsageError(
            f"{root} is not a driver tree: cannot read {path} ({e.strerror or e}); "
            "make one with `intel-gpu-agent build`"
        ) from e
    except json.JSONDecodeError as e:
        raise UsageError(f"{path}: not JSON ({e})") from e
    return DriverTree(root=root, manifest=manifest_from_dict(data, source=str(path)))


def write_manifest(root: Path, manifest: Manifest) -> None:
    """Write manifest.json atomically (written last: a tree without it is unfinished)."""
    atomic_write(root / MANIFEST, manifest.to_json().encode())
