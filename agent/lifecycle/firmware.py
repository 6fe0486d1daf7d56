"""Firmware on the host: files placed atomically and checked, the firmware search path, their undo."""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path

from agent.discovery.security import read_firmware_path
from agent.errors import IntegrityError, UsageError
from agent.host.files import atomic_write, sha256_file
from agent.host.paths import HostPaths
from agent.lifecycle.journal import Change, Journal
from agent.logs import get_logger
from agent.recipes.model import Recipe
from agent.tree import DriverTree

log = get_logger(__name__)

FILE = "firmware_file"
PATH = "firmware_path"


@dataclass(frozen=True)
class Placement:
    """Where firmware goes and whether the search path must point there, with the reason."""

    folder: Path
    set_path: bool
    reason: str


def write_path(host: HostPaths, value: str) -> None:
    """Write the path in place (the file may be a bind-mounted sysfs attribute: no rename), no newline.

    An empty value is written as one NUL byte: sysfs ignores a zero-length write, and a newline would
    become part of the path.
    """
    data = value.encode() if value else b"\x00"
    fd = os.open(host.firmware_class_path, os.O_WRONLY | os.O_TRUNC)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


def check_tree_firmware(tree: DriverTree, recipe: Recipe) -> None:
    """Every firmware file the recipe needs is in the tree with its manifest sha256: else refuse."""
    names = {f.name for f in tree.manifest.firmware}
    missing = [f.name for f in recipe.firmware_files if f.name not in names]
    missing += [f.name for f in tree.manifest.firmware if not tree.firmware_file(f.name).is_file()]
    if missing:
        raise UsageError(
            f"driver tree {tree.root} lacks firmware {', '.join(sorted(set(missing)))} that {recipe.name} needs; "
            "nothing was changed on the host: rebuild the tree with `intel-gpu-agent build`"
        )
    for fw in tree.manifest.firmware:
        actual = sha256_file(tree.firmware_file(fw.name))
        if actual != fw.sha256:
            raise IntegrityError(
                f"firmware {fw.name} in {tree.root} has sha256 {actual}, the manifest says {fw.sha256}; "
                "nothing was changed on the host: the tree is damaged, rebuild it"
            )


class Firmware:
    """Places the tree's firmware where the kernel finds it and undoes exactly what it placed."""

    def __init__(self, *, host: HostPaths) -> None:
        self.host = host

    @property
    def our_path(self) -> str:
        return self.host.as_host_path(self.host.firmware_dir)

    def choose(self, journal: Journal) -> Placement:
        """/var/lib/firmware with the path set when the path is empty or ours, else /lib/firmware/updates."""
        current = read_firmware_path(self.host)
        updates = Placement(self.host.lib_firmware_updates, False, "")
        if current is None:
            return Placement(updates.folder, False, f"{self.host.firmware_class_path} is not readable")
        if current == "":
            return Placement(self.host.firmware_dir, True, "the firmware path is empty")
        if current == self.our_path:
            return Placement(self.host.firmware_dir, journal.get(self._path_key) is None, "the path is already ours")
        return Placement(updates.folder, False, f"the firmware path is {current!r}, set by someone else: kept")

    @property
    def _path_key(self) -> str:
        return f"{PATH}:{self.host.as_host_path(self.host.firmware_class_path)}"

    def set_path(self, journal: Journal) -> bool:
        """Point the search path at our folder (journaled, old value kept); False if the path cannot be written."""
        current = read_firmware_path(self.host)
        if current == self.our_path and journal.get(self._path_key) is not None:
            return True
        if current == self.our_path:
            # Set by someone else (KMM, an earlier agent whose journal is gone): leave it, never reset it.
            return True
        failed: OSError | None = None
        with journal.change(PATH, self._path_key, previous=current or "", value=self.our_path) as entry:
            try:
                write_path(self.host, self.our_path)
            except OSError as e:
                failed = e
        if failed is not None:
            journal.drop(entry)
            log.warning("firmware_path_not_writable", path=str(self.host.firmware_class_path), error=str(failed))
            return False
        if read_firmware_path(self.host) != self.our_path:
            raise IntegrityError(
                f"wrote {self.our_path!r} to {self.host.firmware_class_path} but it reads back otherwise"
            )
        log.info("firmware_path_set", value=self.our_path, previous=current or "")
        return True

    def place(self, journal: Journal, tree: DriverTree, folder: Path) -> int:
        """Copy each firmware file into ``folder``; unchanged files are skipped. Returns files written."""
        written = 0
        for fw in tree.manifest.firmware:
            dest = folder / fw.name
            key = f"{FILE}:{self.host.as_host_path(dest)}"
            existing = sha256_file(dest) if dest.is_file() else None
            if existing == fw.sha256:
                continue  # ours from an earlier run (journaled) or someone else's identical copy (not ours)
            backup = ""
            if existing is not None:
                backup_path = self.host.firmware_backup_dir / existing
                atomic_write(backup_path, dest.read_bytes())
                backup = str(backup_path)
            created = [str(d) for d in _missing_parents(dest, stop=folder.parent)]
            with journal.change(FILE, key, path=str(dest), sha256=fw.sha256, backup=backup, created=created):
                atomic_write(dest, tree.firmware_file(fw.name).read_bytes())
            if sha256_file(dest) != fw.sha256:
                raise IntegrityError(f"firmware {dest} does not read back with sha256 {fw.sha256}")
            written += 1
            log.info("firmware_placed", name=fw.name, path=self.host.as_host_path(dest), replaced=bool(backup))
        return written

    def placed_ok(self, tree: DriverTree, folder: Path) -> bool:
        """Every firmware file of the tree is in ``folder`` with its sha256."""
        return all(
            (folder / fw.name).is_file() and sha256_file(folder / fw.name) == fw.sha256 for fw in tree.manifest.firmware
        )

    def undo(self, change: Change) -> None:
        """Revert one firmware change if it is still ours; leave anything someone else changed since."""
        if change.kind == PATH:
            current = read_firmware_path(self.host)
            if current == change.data["value"]:
                write_path(self.host, change.data["previous"])
                log.info("firmware_path_restored", value=change.data["previous"])
            else:
                log.warning("firmware_path_changed_by_others", value=current, ours=change.data["value"])
            return
        path = Path(change.data["path"])
        if path.is_file() and sha256_file(path) == change.data["sha256"]:
            backup = Path(change.data["backup"]) if change.data.get("backup") else None
            if backup and backup.is_file():
                atomic_write(path, backup.read_bytes())
                backup.unlink()
                log.info("firmware_restored", path=self.host.as_host_path(path))
            else:
                path.unlink()
                log.info("firmware_removed", path=self.host.as_host_path(path))
        elif path.exists():
            log.warning("firmware_changed_by_others", path=self.host.as_host_path(path))
        for folder in reversed(change.data.get("created", [])):
            with contextlib.suppress(OSError):  # not empty: something else lives there now
                Path(folder).rmdir()


def _missing_parents(path: Path, *, stop: Path) -> list[Path]:
    """Folders between ``stop`` and ``path`` that do not exist yet, outermost first."""
    missing = []
    for parent in path.parents:
        if parent == stop or parent.exists():
            break
        missing.append(parent)
    return list(reversed(missing))
