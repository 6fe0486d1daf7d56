"""Collecting a build into a driver tree: the recipe's modules (stripped, maybe signed, inspected), depmod."""

from __future__ import annotations

import gzip
import lzma
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from agent.errors import BuildError
from agent.host.files import sha256_file
from agent.host.runner import Runner
from agent.logs import get_logger
from agent.recipes.model import ModuleFile, Recipe
from agent.tree import BuiltModule

log = get_logger(__name__)

COMPRESSIONS = ("", ".xz", ".zst", ".gz")
# What kbuild itself uses for .ko.xz: the kernel's decompressor wants CRC32 and a 1 MiB dictionary.
XZ_FILTERS = [{"id": lzma.FILTER_LZMA2, "preset": 6, "dict_size": 1 << 20}]


@dataclass
class StagedModule:
    """A module copied into the tree, uncompressed while it is stripped, signed and inspected."""

    spec: ModuleFile
    ko: Path  # the uncompressed file in the tree
    compression: str  # "", ".xz", ".zst" or ".gz": how it is shipped
    info: dict[str, list[str]]


def _base_path(path: str) -> str:
    for suffix in COMPRESSIONS[1:]:
        if path.endswith(".ko" + suffix):
            return path[: -len(suffix)]
    return path


def find_module(spec: ModuleFile, folders: Sequence[Path]) -> tuple[Path, str] | None:
    """Where the build left ``spec`` (any compression), searching ``folders`` in order."""
    base = _base_path(spec.path)
    for folder in folders:
        for suffix in COMPRESSIONS:
            candidate = folder / (base + suffix)
            if candidate.is_file():
                return candidate, suffix
    return None


def stage_modules(
    recipe: Recipe, folders: Sequence[Path], updates: Path, runner: Runner, *, timeout: float = 120.0
) -> list[StagedModule]:
    """Copy the recipe's modules (only those) into ``updates/<path>``, uncompressed."""
    staged: list[StagedModule] = []
    for spec in recipe.module_files:
        found = find_module(spec, folders)
        if found is None:
            if spec.optional:
                log.info("module_not_built", module=spec.name, path=spec.path, optional=True)
                continue
            raise BuildError(
                f"the build of {recipe.name} did not produce {spec.path} (module {spec.name})",
                hint="the recipe's module list and its build steps disagree; see the build log",
            )
        source, suffix = found
        ko = updates / _base_path(spec.path)
        ko.parent.mkdir(parents=True, exist_ok=True)
        if suffix == "":
            shutil.copyfile(source, ko)
        elif suffix == ".xz":
            ko.write_bytes(lzma.decompress(source.read_bytes()))
        elif suffix == ".gz":
            ko.write_bytes(gzip.decompress(source.read_bytes()))
        else:
            runner.run(["zstd", "-d", "-q", "-f", "-o", str(ko), str(source)], timeout=timeout)
        staged.append(StagedModule(spec=spec, ko=ko, compression=suffix, info={}))
    return staged


def strip_debug(modules: Sequence[StagedModule], runner: Runner, *, timeout: float = 120.0) -> None:
    """Drop debug info (a signature must come after this: stripping would break it)."""
    if modules:
        runner.run(["strip", "--strip-debug", *[str(m.ko) for m in modules]], timeout=timeout)


def parse_modinfo(text: str) -> dict[str, dict[str, list[str]]]:
    """`modinfo a.ko b.ko` output → {filename: {field: [values]}}."""
    result: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] | None = None
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if not sep or " " in key.strip():
            continue
        key, value = key.strip(), value.strip()
        if key == "filename":
            current = result.setdefault(value, {})
            continue
        if current is not None:
            current.setdefault(key, []).append(value)
    return result


def inspect(modules: Sequence[StagedModule], runner: Runner, *, timeout: float = 60.0) -> None:
    """Fill each module's modinfo fields (one modinfo call for all of them)."""
    if not modules:
        return
    completed = runner.run(["modinfo", *[str(m.ko) for m in modules]], timeout=timeout, quiet=True)
    infos = parse_modinfo(completed.output)
    for module in modules:
        module.info = infos.get(str(module.ko), {})


def check_vermagic(modules: Sequence[StagedModule], kernel: str) -> None:
    """Every module must be built for the target kernel: modprobe would refuse it otherwise."""
    wrong = []
    for module in modules:
        vermagic = _first(module.info, "vermagic")
        if vermagic.split(" ")[0] != kernel:
            wrong.append(f"{module.spec.name} ({vermagic or 'no vermagic'})")
    if wrong:
        raise BuildError(
            f"modules built for another kernel than {kernel}: {', '.join(wrong)}",
            hint="the recipe's build steps must use the {headers} of the target kernel",
        )


def finish_modules(modules: Sequence[StagedModule], root: Path, runner: Runner, *, signed: bool) -> list[BuiltModule]:
    """Compress back what came compressed, hash the final files and describe them for the manifest."""
    built = []
    for module in modules:
        final = _compress(module.ko, module.compression, runner)
        built.append(
            BuiltModule(
                name=_first(module.info, "name") or module.spec.name,
                path=final.relative_to(root).as_posix(),
                sha256=sha256_file(final),
                srcversion=_first(module.info, "srcversion"),
                vermagic=_first(module.info, "vermagic"),
                version=_first(module.info, "version"),
                depends=tuple(d for d in _first(module.info, "depends").split(",") if d),
                firmware=tuple(module.info.get("firmware", [])),
                signed=signed,
            )
        )
    return built


def _compress(ko: Path, compression: str, runner: Runner) -> Path:
    if compression == "":
        return ko
    final = ko.with_name(ko.name + compression)
    if compression == ".xz":
        final.write_bytes(lzma.compress(ko.read_bytes(), check=lzma.CHECK_CRC32, filters=XZ_FILTERS))
    elif compression == ".gz":
        final.write_bytes(gzip.compress(ko.read_bytes(), mtime=0))
    else:
        runner.run(["zstd", "-q", "-f", "-19", "-o", str(final), str(ko)], timeout=120.0)
    ko.unlink()
    return final


def _first(info: dict[str, list[str]], key: str) -> str:
    values = info.get(key, [])
    return values[0] if values else ""


def depmod(runner: Runner, base: Path, kernel: str) -> None:
    """modules.dep and friends for the tree's own modules (`depmod -b <tree>/opt <kernel>`)."""
    runner.run(["depmod", "-b", str(base), kernel], timeout=120.0)
    if not (base / "lib/modules" / kernel / "modules.dep").is_file():
        raise BuildError(f"depmod -b {base} {kernel} wrote no modules.dep")
