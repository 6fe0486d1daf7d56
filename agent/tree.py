"""The driver tree a build produces and a load consumes, and its manifest.json.

Layout (the KMM image layout, so the same tree serves KMM and the agent):
    <tree>/opt/lib/modules/<kernel>/updates/**.ko[.xz|.zst]  + modules.dep etc. from depmod -b
    <tree>/firmware/<name>                                  e.g. firmware/i915/dg2_guc_70.40.1.bin
    <tree>/manifest.json
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from agent.errors import UsageError
from agent.host.files import atomic_write
from agent.host.paths import module_key
from agent.names import firmware_request_problem, module_name_problem, name_problem, relative_path_problem

MANIFEST = "manifest.json"
MANIFEST_SCHEMA = 1
MODULES_DIR = "opt/lib/modules"
FIRMWARE_DIR = "firmware"

T = TypeVar("T")


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


_REQUIRED: Any = object()
_STRINGS = "tuple[str, ...]"
_CHECKS: dict[str, Callable[[object], bool]] = {
    "str": lambda v: isinstance(v, str),
    "bool": lambda v: isinstance(v, bool),
    # JSON's true is not a size.
    "int": lambda v: isinstance(v, int) and not isinstance(v, bool),
    _STRINGS: lambda v: isinstance(v, list) and all(isinstance(i, str) for i in v),
    "list": lambda v: isinstance(v, list),
}
_KIND_NAMES = {
    "str": "a string",
    "bool": "true/false",
    "int": "an integer",
    _STRINGS: "a list of strings",
    "list": "a list",
}
_SHA256 = re.compile(r"[0-9a-f]{64}")
_MODULE_FILE = re.compile(r".+\.ko(\.xz|\.zst|\.gz)?")


def _json_kind(value: object) -> str:
    kinds = {dict: "an object", list: "a list", str: "a string", bool: "true/false", int: "a number"}
    kinds |= {float: "a number", type(None): "null"}
    return kinds.get(type(value), type(value).__name__)


class _Fields:
    """One JSON object of a manifest being read: typed getters whose errors name the entry."""

    def __init__(self, source: str, entry: str, data: object) -> None:
        self.source = source
        self.entry = entry
        if not isinstance(data, dict):
            raise self.fail("", f"expected a JSON object, got {_json_kind(data)}")
        self.data: dict[str, Any] = data

    def key(self, name: str) -> str:
        return f"{self.entry}.{name}" if self.entry and name else self.entry or name

    def fail(self, name: str, problem: str) -> UsageError:
        where = self.key(name)
        return UsageError(f"{self.source}: {where}: {problem}" if where else f"{self.source}: {problem}")

    def get(self, name: str, kind: str, default: Any = _REQUIRED) -> Any:
        """The value of ``name`` checked against ``kind`` (a field's annotation: str, bool, int, tuple[str, ...])."""
        if name not in self.data:
            if default is _REQUIRED:
                raise self.fail(name, "missing")
            return default
        value = self.data[name]
        check = _CHECKS.get(kind)
        if check is None:
            raise self.fail(name, f"this agent cannot read a field of type {kind}")
        if not check(value):
            raise self.fail(name, f"expected {_KIND_NAMES[kind]}, got {_json_kind(value)} {value!r:.80}")
        return tuple(value) if kind == _STRINGS else value

    def record(self, cls: type[T]) -> T:
        """A frozen dataclass made of this object: every field typed, no key left unread."""
        known = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        unknown = sorted(set(self.data) - known)
        if unknown:
            raise self.fail(unknown[0], "unknown key")
        values = {}
        for f in dataclasses.fields(cls):  # type: ignore[arg-type]
            default = f.default if f.default is not dataclasses.MISSING else _REQUIRED
            values[f.name] = self.get(f.name, str(f.type), default)
        return cls(**values)

    def checked(self, name: str, value: str, rule: Callable[[str], str | None]) -> str:
        """``value`` when it follows ``rule`` (a name rule of agent/names.py), else the rule's problem."""
        problem = rule(value)
        if problem:
            raise self.fail(name, problem)
        return value

    def named(self, name: str, rule: Callable[[str], str | None]) -> str:
        """A required string that follows ``rule``."""
        return self.checked(name, self.get(name, "str"), rule)


def manifest_from_dict(data: object, *, source: str) -> Manifest:
    """Parse a manifest strictly: types, names and path shapes; a bad entry is a ``UsageError`` naming it.

    Trees come from registry images and caches: untrusted. Every name that becomes a path or a
    command argument follows the name rules (agent/names.py); module files must lie under
    ``opt/lib/modules/<kernel>/``, firmware files under ``firmware/`` by the name a module requests.
    """
    top = _Fields(source, "", data)
    schema = top.get("schema", "int", None)
    if schema != MANIFEST_SCHEMA:
        raise top.fail("schema", f"manifest schema {schema!r} is not {MANIFEST_SCHEMA}")
    kernel = top.named("kernel", name_problem)
    modules = tuple(
        _module(_Fields(source, f"modules[{i}]", m), kernel) for i, m in enumerate(top.get("modules", "list"))
    )
    firmware = tuple(_firmware(_Fields(source, f"firmware[{i}]", f)) for i, f in enumerate(top.get("firmware", "list")))
    _unique(top, "modules", [m.name for m in modules], [m.path for m in modules])
    _unique(top, "firmware", [f.name for f in firmware])
    inputs = _Fields(source, "inputs", top.data.get("inputs", {}))
    for key in inputs.data:
        inputs.get(key, "str")
    return Manifest(
        recipe=top.named("recipe", name_problem),
        driver_tag=top.named("driver_tag", name_problem),
        kernel=kernel,
        inputs_digest=top.get("inputs_digest", "str"),
        modules=modules,
        firmware=firmware,
        signed=top.get("signed", "bool", False),
        agent_version=top.get("agent_version", "str", ""),
        built_at=top.get("built_at", "str", ""),
        inputs=dict(inputs.data),
        compat_fixes=tuple(
            _Fields(source, f"compat_fixes[{i}]", f).record(AppliedFix)
            for i, f in enumerate(top.get("compat_fixes", "list", []))
        ),
    )


def _unique(top: _Fields, name: str, *columns: list[str]) -> None:
    for column in columns:
        seen: set[str] = set()
        for i, value in enumerate(column):
            if value in seen:
                raise top.fail(f"{name}[{i}]", f"{value!r} is listed twice")
            seen.add(value)


def _module(fields: _Fields, kernel: str) -> BuiltModule:
    module = fields.record(BuiltModule)
    fields.checked("name", module.name, module_name_problem)
    if not _SHA256.fullmatch(module.sha256):
        raise fields.fail("sha256", f"not a sha256 (64 lower-case hex digits): {module.sha256!r:.80}")
    folder = f"{MODULES_DIR}/{kernel}/"
    fields.checked("path", module.path, relative_path_problem)
    if not (module.path.startswith(folder) and _MODULE_FILE.fullmatch(module.path)):
        raise fields.fail("path", f"must be a .ko file under {folder}: {module.path!r}")
    for i, dep in enumerate(module.depends):
        fields.checked(f"depends[{i}]", dep, module_name_problem)
    for i, name in enumerate(module.firmware):
        fields.checked(f"firmware[{i}]", name, firmware_request_problem)
    return module


def _firmware(fields: _Fields) -> BuiltFirmware:
    firmware = fields.record(BuiltFirmware)
    fields.checked("name", firmware.name, relative_path_problem)
    if firmware.path != f"{FIRMWARE_DIR}/{firmware.name}":
        raise fields.fail(
            "path", f"must be {FIRMWARE_DIR}/{firmware.name} (its name under {FIRMWARE_DIR}/): {firmware.path!r}"
        )
    if not _SHA256.fullmatch(firmware.sha256):
        raise fields.fail("sha256", f"not a sha256 (64 lower-case hex digits): {firmware.sha256!r:.80}")
    if firmware.bytes < 0:
        raise fields.fail("bytes", f"must not be negative, got {firmware.bytes}")
    return firmware


def check_tree_files(root: Path, manifest: Manifest) -> None:
    """Refuse a tree whose files could make the load use something else than what the manifest hashes.

    Each listed file, symlinks followed, must stay inside its folder of the tree (a crafted tree could
    link a firmware file to the host's /etc), and the modules folder may hold no module file the
    manifest does not list (modprobe would load what depmod finds, not what was hashed). Missing
    files are left to the integrity check of the load, which says to rebuild.
    """
    source = f"driver tree {root}"
    base = root.resolve()
    modules_dir = base / MODULES_DIR / manifest.kernel
    for i, module in enumerate(manifest.modules):
        if not _inside((root / module.path).resolve(), modules_dir):
            raise UsageError(
                f"{source}: modules[{i}].path: {module.path} resolves outside {modules_dir}: refusing the tree"
            )
    for i, fw in enumerate(manifest.firmware):
        if not _inside((root / fw.path).resolve(), base / FIRMWARE_DIR):
            raise UsageError(
                f"{source}: firmware[{i}].path: {fw.path} resolves outside {base / FIRMWARE_DIR}: refusing the tree"
            )
    listed = {m.path for m in manifest.modules}
    # Links to folders are not followed: the KMM image links <kernel>/host to the host's own modules.
    for dirpath, _dirs, files in os.walk(root / MODULES_DIR / manifest.kernel):
        for name in sorted(files):
            relative = (Path(dirpath) / name).relative_to(root).as_posix()
            if _MODULE_FILE.fullmatch(name) and relative not in listed:
                raise UsageError(
                    f"{source}: {relative} is a module file not in the manifest: refusing the tree",
                    hint="a tree holds exactly the modules its manifest lists; rebuild it with `intel-gpu-agent build`",
                )


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def load_tree(root: Path) -> DriverTree:
    """Open a driver tree, checking its manifest and files; anything malformed or unsafe is a ``UsageError``."""
    path = root / MANIFEST
    try:
        data = json.loads(path.read_bytes())
    except OSError as e:
        raise UsageError(
            f"{root} is not a driver tree: cannot read {path} ({e.strerror or e}); "
            "make one with `intel-gpu-agent build`"
        ) from e
    except (ValueError, RecursionError) as e:
        # ValueError: not JSON, or not UTF-8 (UnicodeDecodeError); RecursionError: nested too deep.
        raise UsageError(f"driver tree {root}: {MANIFEST} is not JSON ({e})") from e
    manifest = manifest_from_dict(data, source=f"driver tree {root}")
    check_tree_files(root, manifest)
    return DriverTree(root=root, manifest=manifest)


def write_manifest(root: Path, manifest: Manifest) -> None:
    """Write manifest.json atomically (written last: a tree without it is unfinished)."""
    atomic_write(root / MANIFEST, manifest.to_json().encode())
