"""Firmware for the tree: where the recipe's files come from (one by one, a tarball or a folder) and placing them.

The firmware repository keeps its blobs flat (``firmware/dg2_guc_70.40.1.bin``); the modules request
``i915/dg2_guc_70.40.1.bin``. Each recipe file says both (``name`` and ``file``), so the mapping is
the recipe's, not a guess. A node that builds for itself fetches exactly those files from the
repository's raw URLs at the release tag (about 3 MB) instead of its 200 MB tarball.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol
from urllib.parse import urlsplit

from agent.build.sources import LOOPBACK, InputSpec, input_spec, redact_url
from agent.errors import BuildError, DownloadError, IntegrityError, UsageError
from agent.host.files import CHUNK
from agent.logs import get_logger
from agent.tree import BuiltFirmware

if TYPE_CHECKING:
    from agent.build.download import Fetcher
    from agent.recipes.model import FirmwareFile, Recipe

log = get_logger(__name__)

FILES = "files"  # an InputSpec kind: the recipe's files fetched one by one from a URL template


class FirmwareSource(Protocol):
    """Somewhere firmware files can be found by their path in the firmware source."""

    @property
    def where(self) -> str:
        """The source, for messages."""

    def find(self, file: str, sha256: str) -> Path | None:
        """The local file for ``file`` (its path under the source's root), or None when the source lacks it."""


@dataclass(frozen=True)
class FolderFirmware:
    """An unpacked tarball or a local folder in the repository's layout (its subdir already applied)."""

    root: Path

    @property
    def where(self) -> str:
        return str(self.root)

    def find(self, file: str, sha256: str) -> Path | None:
        path = self.root / file
        return path if path.is_file() else None


class DownloadedFirmware:
    """The recipe's files fetched one at a time from ``template`` ({file} filled in), each pinned by its sha256."""

    def __init__(self, fetcher: Fetcher, template: str) -> None:
        self._fetcher = fetcher
        self._template = template
        self._fetched: dict[str, Path] = {}

    @property
    def where(self) -> str:
        return redact_url(self._template)

    def url(self, file: str) -> str:
        return self._template.replace("{file}", file)

    def prefetch(self, files: Sequence[FirmwareFile]) -> None:
        """Fetch every file now (before a long compile), each checked against its pin; cached by sha256."""
        for spec in files:
            self._fetched[spec.source_file] = self._fetch(spec.name, spec.source_file, spec.sha256)

    def find(self, file: str, sha256: str) -> Path | None:
        if file not in self._fetched:
            self._fetched[file] = self._fetch(file, file, sha256)
        return self._fetched[file]

    def _fetch(self, name: str, file: str, sha256: str) -> Path:
        url = self.url(file)
        try:
            return self._fetcher.fetch(url, sha256)
        except (IntegrityError, DownloadError, UsageError) as e:
            # The fetcher's error names the URL and both hashes; say which firmware file it was.
            raise type(e)(f"firmware {name}: {e.message}", hint=e.hint) from e


def pins_digest(files: Sequence[FirmwareFile]) -> str:
    """The identity of a set of pinned files (what the inputs digest records for per-file firmware)."""
    text = "".join(f"{f.source_file} {f.sha256} {f.bytes}\n" for f in sorted(files, key=lambda f: f.source_file))
    return hashlib.sha256(text.encode()).hexdigest()


def firmware_spec(
    recipe: Recipe,
    *,
    override: str | None = None,
    override_sha256: str | None = None,
    files_url: str | None = None,
) -> InputSpec:
    """The firmware input: --firmware (URL, TARBALL or DIR) first; else the recipe's files one by one from
    ``files_url`` (--firmware-files-url) or the recipe's own; a recipe without either uses its tarball."""
    template = files_url or recipe.firmware.files_url
    if override or not template or not recipe.firmware_files:
        return input_spec(recipe, recipe.firmware, what="firmware", override=override, override_sha256=override_sha256)
    check_files_url(template)
    location = template.replace("{tag}", recipe.firmware_tag)
    return InputSpec("firmware", FILES, location, pins_digest(recipe.firmware_files))


def check_files_url(template: str) -> None:
    """https, or plain http from a loopback mirror (each file is still pinned); {file} must be in it."""
    parts = urlsplit(template)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise UsageError(f"--firmware-files-url {template!r} is not an http(s) URL")
    if parts.scheme == "http" and parts.hostname not in LOOPBACK:
        raise UsageError(f"--firmware-files-url {template}: plain http is only allowed from a loopback mirror")
    if "{file}" not in template:
        raise UsageError(
            f"--firmware-files-url {template} has no {{file}}",
            hint="e.g. https://raw.githubusercontent.com/intel-gpu/intel-gpu-firmware/{tag}/firmware/{file}",
        )


@dataclass(frozen=True)
class Placement:
    """What happened to each firmware name the modules request."""

    placed: tuple[BuiltFirmware, ...]
    not_needed: tuple[tuple[str, str], ...] = ()  # (name, the recipe's reason)
    other_platforms: tuple[str, ...] = ()

    def notes(self) -> tuple[str, ...]:
        """One line per requested file left out on purpose (shown by `build`)."""
        return tuple(f"firmware {name} not placed: {reason}" for name, reason in self.not_needed)


def place_firmware(
    recipe: Recipe,
    requested: Sequence[str],
    source: Callable[[], FirmwareSource],
    dest: Path,
) -> Placement:
    """Copy the recipe's firmware into ``dest/<name>``, each file checked against the recipe's sha256 and size.

    The recipe names what its platforms need: each of its files must be in the source (else the module
    fails to load with -ENOENT), also one the built modules do not list (a build without display code
    does not request the DMC, which the GPU still uses once display is on). Requested names it marks not
    needed are reported with its reason; other requested names are for GPUs the recipe does not drive
    (i915 requests firmware for every GPU it knows) and are left out. A recipe that pins no firmware
    makes every requested name mandatory, found by name.
    """
    pinned = {f.name: f for f in recipe.firmware_files}
    unneeded = {u.name: u.reason for u in recipe.firmware_not_needed}
    asked = set(requested)
    if not pinned and not asked:
        return Placement(placed=())
    found_in = source()
    placed: list[BuiltFirmware] = []
    missing: list[str] = []
    not_needed = [(name, unneeded[name]) for name in sorted(asked) if name not in pinned and name in unneeded]
    other = sorted(name for name in asked if pinned and name not in pinned and name not in unneeded)
    for name in sorted(pinned) if pinned else sorted(asked):
        spec = pinned.get(name)
        file = spec.source_file if spec is not None else name
        path = found_in.find(file, spec.sha256 if spec is not None else "")
        if path is None:
            missing.append(name if file == name else f"{name} (as {file})")
            continue
        target = dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        digest, size = _copy_hashing(path, target)
        if spec is not None and (digest != spec.sha256 or size != spec.bytes):
            raise BuildError(
                f"firmware {name} ({file} in {found_in.where}) has sha256 {digest} ({size} bytes), the recipe "
                f"pins {spec.sha256} ({spec.bytes} bytes)",
                hint=f"use the firmware release {recipe.firmware_tag} the recipe names (--firmware)",
            )
        placed.append(
            BuiltFirmware(name=name, path=target.relative_to(dest.parent).as_posix(), sha256=digest, bytes=size)
        )
    if not_needed:
        log.info("firmware_not_needed", names=[n for n, _ in not_needed], reasons=[r for _, r in not_needed])
    if other:
        log.info("firmware_not_in_recipe", names=other, reason="for GPUs this release's recipe does not drive")
    unrequested = sorted(set(pinned) - asked)
    if unrequested and asked:
        log.info("firmware_not_requested", names=unrequested, reason="the recipe's platforms need it; placed")
    if missing:
        raise BuildError(
            f"the firmware source {found_in.where} lacks firmware the driver needs: {', '.join(missing)}; "
            "loading would fail with -ENOENT (error -2)",
            hint=f"use the firmware release {recipe.firmware_tag} with these files (--firmware URL|TARBALL|DIR)",
        )
    return Placement(placed=tuple(placed), not_needed=tuple(not_needed), other_platforms=tuple(other))


def _copy_hashing(source: Path, target: Path) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    with source.open("rb") as src, target.open("wb") as dst:
        while chunk := src.read(CHUNK):
            dst.write(chunk)
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size
