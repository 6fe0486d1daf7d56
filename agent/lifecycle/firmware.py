"""Firmware on the host: where it goes (and whether the search path must point there), and the changes to place it."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from agent.discovery.security import read_firmware_path
from agent.errors import IntegrityError, UsageError
from agent.host.files import sha256_file
from agent.host.paths import HostPaths
from agent.lifecycle.changes.firmware_file import FirmwareFilePlaced
from agent.lifecycle.changes.firmware_path import FirmwarePathSet
from agent.lifecycle.journal import Journal
from agent.recipes.model import Recipe
from agent.tree import DriverTree


@dataclass(frozen=True)
class Placement:
    """Where firmware goes and whether the search path must point there, with the reason."""

    folder: Path
    set_path: bool
    reason: str


def check_tree_firmware(tree: DriverTree, recipe: Recipe) -> None:
    """Every firmware file the recipe needs is in the tree with its manifest sha256: else refuse."""
    for fw in tree.manifest.firmware:
        _check_name(tree, fw.name)
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
    """Decides where the tree's firmware goes and plans the changes that put it there."""

    def __init__(self, *, host: HostPaths) -> None:
        self.host = host

    @property
    def our_path(self) -> str:
        return self.host.as_host_path(self.host.firmware_dir)

    @property
    def path_file(self) -> str:
        """The kernel parameter's node path: the key of the firmware path change."""
        return self.host.as_host_path(self.host.firmware_class_path)

    def choose(self, journal: Journal) -> Placement:
        """/var/lib/firmware with the path set when the path is empty or ours, else /lib/firmware/updates."""
        current = read_firmware_path(self.host)
        updates = self.host.lib_firmware_updates
        if current is None:
            return Placement(updates, False, f"{self.host.firmware_class_path} is not readable")
        if current == "":
            return Placement(self.host.firmware_dir, True, "the firmware path is empty")
        if current == self.our_path:
            # Ours (journaled) or set by someone else (KMM, an earlier agent whose journal is gone): never reset.
            return Placement(self.host.firmware_dir, False, "the path is already ours")
        return Placement(updates, False, f"the firmware path is {current!r}, set by someone else: kept")

    def path_change(self) -> FirmwarePathSet:
        """The change that points the search path at our folder, remembering what it was."""
        return FirmwarePathSet(file=self.path_file, previous=read_firmware_path(self.host) or "", value=self.our_path)

    def file_changes(self, tree: DriverTree, folder: Path) -> list[FirmwareFilePlaced]:
        """One change per firmware file of the tree not already in ``folder`` with its sha256.

        A different file already there is kept aside (in the state folder, by its sha256) and put back
        on undo; an identical one is someone else's or ours from an earlier run: left as it is.
        """
        folder = self.host.from_host_path(self.host.as_host_path(folder))
        changes = []
        for fw in tree.manifest.firmware:
            dest = self._destination(tree, folder, fw.name)
            existing = sha256_file(dest) if dest.is_file() else None
            if existing == fw.sha256:
                continue
            node_path = self.host.as_host_path(dest)
            # One backup per destination: two host files with the same bytes must not share one.
            backup_name = hashlib.sha256(node_path.encode()).hexdigest()[:32]
            backup = self.host.as_host_path(self.host.firmware_backup_dir / backup_name) if existing else ""
            changes.append(
                FirmwareFilePlaced(
                    path=node_path,
                    sha256=fw.sha256,
                    source=str(tree.firmware_file(fw.name)),
                    backup=backup,
                    created=tuple(self.host.as_host_path(d) for d in _missing_parents(dest, stop=self.host.root)),
                )
            )
        return changes

    def _destination(self, tree: DriverTree, folder: Path, name: str) -> Path:
        """Where firmware ``name`` goes (links followed as on the node): inside ``folder`` (itself resolved),
        whatever the untrusted tree says."""
        _check_name(tree, name)
        dest = self.host.from_host_path(self.host.as_host_path(folder / name))
        if not dest.is_relative_to(folder):
            raise IntegrityError(
                f"firmware {name!r} of {tree.root} would land in {self.host.as_host_path(dest)}, outside "
                f"{self.host.as_host_path(folder)} (a link on the host): refused, nothing was changed"
            )
        return dest


def _check_name(tree: DriverTree, name: str) -> None:
    """A firmware name is a relative path that stays where it is put: trees come from images, untrusted."""
    if not name or name.startswith("/") or any(p in ("", "..", ".") for p in name.split("/")):
        raise IntegrityError(
            f"driver tree {tree.root} names firmware {name!r}, which is not a path inside the firmware folder; "
            "nothing was changed on the host: the tree is damaged or crafted, rebuild it"
        )


def _missing_parents(path: Path, *, stop: Path) -> list[Path]:
    """Folders between ``stop`` and ``path`` that do not exist yet, outermost first."""
    missing = []
    for parent in path.parents:
        if parent == stop or parent.exists():
            break
        missing.append(parent)
    return list(reversed(missing))
