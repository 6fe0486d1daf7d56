"""Reading recipe files: strict validation with errors that name the file, the key and the problem."""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TypeVar

from agent.errors import RecipeError, UsageError
from agent.host.paths import module_key
from agent.names import module_name_problem, name_problem, relative_path_problem
from agent.recipes import RELEASES_DIR
from agent.recipes.model import (
    ABSENT,
    PARAMETER,
    PROBE_KINDS,
    Archive,
    CompatFix,
    FirmwareFile,
    HeaderProbe,
    ModuleFile,
    Recipe,
    ReleaseMarker,
    UnneededFirmware,
    ValidatedKernel,
)

SCHEMA = 1
SHA256 = re.compile(r"^[0-9a-f]{64}$")
DEVICE_ID = re.compile(r"^[0-9a-f]{4}$")
MODULE_NAME = re.compile(r"^[A-Za-z0-9_-]+$")
RECIPE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
STREAMS = ("lts", "rolling", "test")
OSES = ("ubuntu", "vanilla", "debian", "rhel", "sles")

T = TypeVar("T")


class _Table:
    """A TOML table being read: tracks the keys used so unknown keys can be reported."""

    def __init__(self, file: Path, prefix: str, data: dict[str, Any]) -> None:
        self.file = file
        self.prefix = prefix
        self.data = data
        self.used: set[str] = set()
        # Every table read below this one: load_recipe reports their unread keys at the end, so a key
        # is accepted exactly when some reader asked for it.
        self.children: list[_Table] = []

    def key(self, name: str) -> str:
        return f"{self.prefix}{name}"

    def fail(self, name: str, problem: str) -> RecipeError:
        return RecipeError(str(self.file), self.key(name), problem)

    def get(self, name: str, kind: type[T], default: T | None = None) -> T:
        self.used.add(name)
        if name not in self.data:
            if default is None:
                raise self.fail(name, "missing")
            return default
        value = self.data[name]
        # bool is an int in Python; a recipe saying `bytes = true` is still wrong.
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise self.fail(name, f"expected {_kind_name(kind)}, got {_kind_name(type(value))} {value!r}")
        return value

    def strings(self, name: str, default: list[str] | None = None) -> tuple[str, ...]:
        values = self.get(name, list, default)
        for i, value in enumerate(values):
            if not isinstance(value, str):
                raise self.fail(f"{name}[{i}]", f"expected a string, got {_kind_name(type(value))} {value!r}")
        return tuple(values)

    def table(self, name: str, default: dict[str, Any] | None = None) -> _Table:
        child = _Table(self.file, f"{self.key(name)}.", self.get(name, dict, default))
        self.children.append(child)
        return child

    def tables(self, name: str, default: list[Any] | None = None) -> list[_Table]:
        items = self.get(name, list, default)
        out = []
        for i, item in enumerate(items):
            if not isinstance(item, dict):
                raise self.fail(f"{name}[{i}]", f"expected a table, got {_kind_name(type(item))}")
            out.append(_Table(self.file, f"{self.key(name)}[{i}].", item))
        self.children.extend(out)
        return out

    def name(self, key: str) -> str:
        """A string that becomes one folder or file name (a tag): never '/', '..' or a leading '.'."""
        value = self.get(key, str)
        problem = name_problem(value)
        if problem:
            raise self.fail(key, problem)
        return value

    def relative_path(self, key: str, default: str | None = None) -> str:
        """A string that is joined to a folder: a relative path of plain names ('' when optional and absent)."""
        value = self.get(key, str, default)
        if value == "" and default == "":
            return value
        problem = relative_path_problem(value)
        if problem:
            raise self.fail(key, problem)
        return value

    def module_names(self, key: str, default: list[str] | None = None) -> tuple[str, ...]:
        """Kernel module names: each becomes /sys/module/<name> and a modprobe argument."""
        values = self.strings(key, default)
        for i, value in enumerate(values):
            problem = module_name_problem(value)
            if problem:
                raise self.fail(f"{key}[{i}]", problem)
        return values

    def sha256(self, name: str, *, allow_empty: bool = False) -> str:
        value = self.get(name, str)
        if allow_empty and value == "":
            return value
        if not SHA256.match(value):
            raise self.fail(name, f"not a sha256 (64 lower-case hex digits): {value!r}")
        return value

    def done(self) -> None:
        unknown = sorted(set(self.data) - self.used)
        if unknown:
            raise self.fail(unknown[0], "unknown key" + (f" (also: {', '.join(unknown[1:])})" if unknown[1:] else ""))

    def done_all(self) -> None:
        """``done`` for this table and every table read below it: no key goes unread unnoticed."""
        self.done()
        for child in self.children:
            child.done_all()


def _kind_name(kind: type) -> str:
    return {str: "a string", int: "an integer", list: "a list", dict: "a table", bool: "true/false"}.get(
        kind, kind.__name__
    )


def load_recipe(path: Path) -> Recipe:
    """Load and validate one recipe file; raise ``RecipeError`` naming the key at fault."""
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise RecipeError(str(path), "(file)", f"cannot read: {e.strerror or e}") from e
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise RecipeError(
            str(path), "(file)", f"not UTF-8 text: byte 0x{raw[e.start]:02x} at offset {e.start} (save it as UTF-8)"
        ) from e
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise RecipeError(str(path), "(syntax)", str(e)) from e
    except RecursionError as e:
        # tomllib parses nested arrays and inline tables recursively.
        raise RecipeError(str(path), "(syntax)", "arrays or tables nested too deep") from e
    top = _Table(path, "", data)
    schema = top.get("schema", int)
    if schema != SCHEMA:
        raise top.fail("schema", f"unsupported schema {schema}, this agent reads schema {SCHEMA}")
    name = top.get("name", str)
    if not RECIPE_NAME.match(name):
        raise top.fail("name", f"only letters, digits, '.', '-' and '_' are allowed: {name!r}")
    stream = top.get("stream", str)
    if stream not in STREAMS:
        raise top.fail("stream", f"must be one of {', '.join(STREAMS)}, got {stream!r}")

    source_table = top.table("source")
    release = _release_marker(source_table)  # before _archive closes the table
    source = replace(_archive(source_table, firmware=False), release=release)
    fw = top.table("firmware")
    firmware_tag = fw.name("tag")
    firmware_files = tuple(_firmware_file(t) for t in fw.tables("files", []))
    firmware = replace(_archive(fw, firmware=True), files_url=_files_url(fw))
    not_needed = _firmware_not_needed(fw, {f.name for f in firmware_files})

    build_env, build_steps = _build(top.table("build"))
    modules = _modules(top.table("modules"))
    support = _support(top.table("support"))
    recipe = Recipe(
        path=path,
        name=name,
        title=top.get("title", str),
        stream=stream,
        driver_tag=top.name("driver_tag"),
        released=top.get("released", str),
        source=source,
        firmware=firmware,
        firmware_tag=firmware_tag,
        firmware_files=firmware_files,
        build_env=build_env,
        build_steps=build_steps,
        **modules,
        **support,
        firmware_not_needed=not_needed,
        compat_fixes=_compat_fixes(top),
    )
    top.done_all()
    return recipe


def _build(build: _Table) -> tuple[tuple[tuple[str, str], ...], tuple[tuple[str, ...], ...]]:
    env = build.table("env", {})
    build_env = tuple((k, env.get(k, str)) for k in sorted(env.data))
    env.done()
    steps = []
    for i, step in enumerate(build.get("steps", list)):
        if not isinstance(step, list) or not step or not all(isinstance(a, str) for a in step):
            raise build.fail(f"steps[{i}]", "each step must be a non-empty list of strings (an argv)")
        steps.append(tuple(step))
    if not steps:
        raise build.fail("steps", "at least one build step is needed")
    build.done()
    return build_env, tuple(steps)


def _modules(modules: _Table) -> dict[str, Any]:
    main = modules.get("main", str)
    files = tuple(_module_file(t) for t in modules.tables("files"))
    names = {module_key(f.name) for f in files}
    load_order = modules.strings("load_order")
    for module in (main, *load_order):
        if module_key(module) not in names:
            key = "main" if module == main else "load_order"
            raise modules.fail(key, f"{module!r} is not in modules.files")
    params = modules.table("parameters", {})
    parameters = []
    for module in sorted(params.data):
        problem = module_name_problem(module)
        if problem:
            raise params.fail(module, problem)
        table = params.table(module)
        parameters.append((module, tuple((k, _param_value(table, k)) for k in sorted(table.data))))
        table.done()
    params.done()
    out = {
        "main_module": main,
        "version_marker": modules.get("version_marker", str, "backported"),
        "load_order": load_order,
        "replaces": modules.module_names("replaces", []),
        "after": modules.module_names("after", []),
        "parameters": tuple(parameters),
        "module_files": files,
    }
    modules.done()
    return out


def _support(support: _Table) -> dict[str, Any]:
    device_ids = support.strings("device_ids")
    for i, device in enumerate(device_ids):
        if not DEVICE_ID.match(device):
            raise support.fail(f"device_ids[{i}]", f"not a 4-digit lower-case hex PCI device ID: {device!r}")
    out = {
        "platforms": support.strings("platforms"),
        "device_ids": frozenset(device_ids),
        "ubuntu_flavours": support.strings("ubuntu_flavours", ["generic"]),
        "kernels": tuple(_kernel(t) for t in support.tables("kernels")),
    }
    support.done()
    return out


def _archive(table: _Table, *, firmware: bool) -> Archive:
    url = table.get("url", str)
    remote = url.startswith(("https://", "http://"))
    if url.startswith("http://"):
        raise table.fail("url", "plain http is not allowed; use https")
    archive = Archive(
        url=url,
        # A local folder (test recipes) has no single checksum; every remote input is pinned.
        sha256=table.sha256("sha256", allow_empty=not remote),
        top_folder=table.relative_path("top_folder", ""),
        subdir=table.relative_path("subdir", "") if firmware else "",
    )
    if not firmware:
        table.done()
    return archive


def _firmware_file(table: _Table) -> FirmwareFile:
    name = table.relative_path("name")
    size = table.get("bytes", int)
    if size <= 0:
        raise table.fail("bytes", f"must be positive, got {size}")
    item = FirmwareFile(
        name=name,
        sha256=table.sha256("sha256"),
        bytes=size,
        platforms=table.strings("platforms", []),
        file=_firmware_source_file(table),
    )
    table.done()
    return item


def _relative(table: _Table, name: str, value: str, what: str) -> str:
    if not value or value.startswith("/") or ".." in value.split("/") or "\\" in value:
        raise table.fail(name, f"must be a relative path {what}: {value!r}")
    return value


def _release_marker(table: _Table) -> ReleaseMarker | None:
    """[source] release = { file = "versions", line = 'BACKPORTS_RELEASE_TAG="..."' } (optional)."""
    if "release" not in table.data:
        table.used.add("release")
        return None
    marker = table.table("release")
    item = ReleaseMarker(
        file=_relative(marker, "file", marker.get("file", str), "inside the source tree"),
        line=marker.get("line", str),
    )
    if not item.line.strip() or "\n" in item.line:
        raise marker.fail("line", f"must be one non-empty line of {item.file}: {item.line!r}")
    marker.done()
    return item


def _files_url(table: _Table) -> str:
    """[firmware] files_url: one file of the firmware repository at the tag ({tag}, {file}), https only."""
    url = table.get("files_url", str, "")
    if not url:
        return ""
    if not url.startswith("https://"):
        raise table.fail("files_url", f"must be an https:// URL: {url!r}")
    unknown = sorted(set(re.findall(r"\{([^}]*)\}", url)) - {"tag", "file"})
    if unknown or "{file}" not in url:
        raise table.fail("files_url", f"must contain {{file}} and may contain {{tag}}, nothing else: {url!r}")
    return url


def _firmware_source_file(table: _Table) -> str:
    """[[firmware.files]] file: where the blob lies in the firmware source (default: its requested name)."""
    value = table.get("file", str, "")
    return _relative(table, "file", value, "inside the firmware source") if value else ""


def _firmware_not_needed(fw: _Table, pinned: set[str]) -> tuple[UnneededFirmware, ...]:
    """[[firmware.not_needed]]: requested names no release ships, with why the platforms do without them."""
    items = []
    for table in fw.tables("not_needed", []):
        name = _relative(table, "name", table.get("name", str), "as the module requests it")
        if name in pinned:
            raise table.fail("name", f"{name} is also in firmware.files: a file is either needed or not")
        reason = table.get("reason", str)
        if not reason.strip():
            raise table.fail("reason", "say why the platforms do not need this file")
        table.done()
        items.append(UnneededFirmware(name=name, reason=reason))
    return tuple(items)


def _compat_fixes(top: _Table) -> tuple[CompatFix, ...]:
    """[[compat_fixes]]: the project's own patches, each with the header probe that says it is needed."""
    fixes: list[CompatFix] = []
    for table in top.tables("compat_fixes", []):
        name = table.get("name", str)
        if not RECIPE_NAME.match(name):
            raise table.fail("name", f"only letters, digits, '.', '-' and '_' are allowed: {name!r}")
        if any(f.name == name for f in fixes):
            raise table.fail("name", f"{name!r} is listed twice")
        patch = table.get("patch", str)
        if not patch.endswith(".patch") or patch.startswith(("/", "https://", "http://")):
            raise table.fail("patch", f"must be a .patch file relative to the recipe's folder: {patch!r}")
        why = table.get("why", str)
        if not why.strip():
            raise table.fail("why", "say what in the kernel changed")
        probe = _probe(table.table("probe"))
        fix = CompatFix(name=name, patch=patch, sha256=table.sha256("sha256"), why=why, probe=probe)
        table.done()
        fixes.append(fix)
    return tuple(fixes)


def _probe(table: _Table) -> HeaderProbe:
    kind = table.get("kind", str)
    if kind not in PROBE_KINDS:
        raise table.fail("kind", f"must be one of {', '.join(PROBE_KINDS)}, got {kind!r}")
    if kind == ABSENT:
        headers = table.strings("headers")
        if not headers:
            raise table.fail("headers", "name at least one header")
        probe = HeaderProbe(kind, headers, _identifier(table, "symbol"))
    else:
        header = table.get("header", str)
        if kind == PARAMETER:
            probe = HeaderProbe(kind, (header,), _identifier(table, "function"), _identifier(table, "parameter"))
        else:
            probe = HeaderProbe(kind, (header,), _identifier(table, "macro"))
    for i, header in enumerate(probe.headers):
        key = "header" if kind != ABSENT else f"headers[{i}]"
        _relative(table, key, header, "inside the kernel source tree")
        if not header.endswith(".h"):
            raise table.fail(key, f"must be a header file (.h): {header!r}")
    table.done()
    return probe


def _identifier(table: _Table, name: str) -> str:
    value = table.get(name, str)
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", value):
        raise table.fail(name, f"must be a C identifier: {value!r}")
    return value


def _module_file(table: _Table) -> ModuleFile:
    name = table.get("name", str)
    if not MODULE_NAME.match(name):
        raise table.fail("name", f"not a module name: {name!r}")
    path = table.relative_path("path")
    if not re.search(r"\.ko(\.xz|\.zst|\.gz)?$", path):
        raise table.fail("path", f"must be a relative path to a .ko (or .ko.xz/.ko.zst) file: {path!r}")
    item = ModuleFile(name=name, path=path, optional=table.get("optional", bool, False))
    table.done()
    return item


def _kernel(table: _Table) -> ValidatedKernel:
    os_name = table.get("os", str)
    if os_name not in OSES:
        raise table.fail("os", f"must be one of {', '.join(OSES)}, got {os_name!r}")
    kernel = table.get("kernel", str)
    if not re.match(r"^\d+\.\d+(\.\d+)?([-.][0-9A-Za-z.]+)*$", kernel):
        raise table.fail("kernel", f"not a kernel version: {kernel!r}")
    item = ValidatedKernel(
        os=os_name,
        os_version=table.get("os_version", str, ""),
        variant=table.get("variant", str, ""),
        kernel=kernel,
    )
    table.done()
    return item


def _param_value(table: _Table, key: str) -> str:
    table.used.add(key)
    value = table.data[key]
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise table.fail(key, f"module parameters are strings or integers, got {value!r}")
    return str(value)


@dataclass(frozen=True)
class RecipeSet:
    """Every recipe found, and the errors of those that failed to load (one does not hide the others)."""

    recipes: tuple[Recipe, ...]
    errors: tuple[RecipeError, ...]

    def by_name(self, name: str) -> Recipe:
        for recipe in self.recipes:
            if recipe.name == name:
                return recipe
        for error in self.errors:
            if Path(error.path).stem == name:
                raise error
        known = ", ".join(r.name for r in self.recipes) or "none"
        raise UsageError(f"no recipe named {name!r} (known: {known})")


def load_recipes(folders: Iterable[Path] = (RELEASES_DIR,)) -> RecipeSet:
    """Load every ``*.toml`` in ``folders``; broken files are reported, not fatal to the others."""
    recipes: list[Recipe] = []
    errors: list[RecipeError] = []
    for folder in folders:
        for path in sorted(folder.glob("*.toml")):
            try:
                recipes.append(load_recipe(path))
            except RecipeError as e:
                errors.append(e)
    return RecipeSet(tuple(recipes), tuple(errors))


def select_recipe(spec: str, folders: Iterable[Path] = (RELEASES_DIR,)) -> Recipe:
    """A recipe by name (among the shipped ones) or by path to a TOML file."""
    if spec.endswith(".toml") or "/" in spec:
        return load_recipe(Path(spec))
    return load_recipes(folders).by_name(spec)
