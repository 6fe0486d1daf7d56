"""A firmware file placed on the host: written atomically, a foreign file kept aside, undone only if still ours."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Self

from agent.errors import IntegrityError
from agent.host.files import atomic_write, sha256_file
from agent.lifecycle.changes.base import ChangeContext, HostChange
from agent.logs import get_logger

log = get_logger(__name__)


@dataclass(frozen=True)
class FirmwareFilePlaced(HostChange):
    """``path`` holds our blob (``sha256``); ``backup`` keeps the file that was there; ``created`` folders.

    Every path is the node's own. ``source`` is where the blob comes from (the driver tree, as this
    agent saw it): needed to apply, never to undo.
    """

    kind: ClassVar[str] = "firmware_file"

    path: str
    sha256: str
    source: str = ""
    backup: str = ""
    created: tuple[str, ...] = ()

    @property
    def key(self) -> str:
        return f"{self.kind}:{self.path}"

    def describe(self) -> str:
        return f"firmware {self.path}" + (" (the file that was there kept aside)" if self.backup else "")

    def brief(self) -> dict[str, object]:
        return {"path": self.path, "replaced": bool(self.backup)}

    def apply(self, ctx: ChangeContext) -> Self:
        dest = ctx.on_host(self.path)
        if self.backup:
            atomic_write(ctx.on_host(self.backup), dest.read_bytes(), mode=0o600)
        for folder in self.created:
            ctx.on_host(folder).mkdir(exist_ok=True)
        atomic_write(dest, Path(self.source).read_bytes())
        if sha256_file(dest) != self.sha256:
            raise IntegrityError(f"firmware {self.path} does not read back with sha256 {self.sha256}")
        log.info("firmware_placed", path=self.path, replaced=bool(self.backup))
        return self

    def in_place(self, ctx: ChangeContext) -> bool:
        dest = ctx.on_host(self.path)
        return dest.is_file() and sha256_file(dest) == self.sha256

    def undo(self, ctx: ChangeContext) -> None:
        dest = ctx.on_host(self.path)
        backup = ctx.on_host(self.backup) if self.backup else None
        if dest.is_file() and sha256_file(dest) == self.sha256:
            if backup is not None and backup.is_file():
                atomic_write(dest, backup.read_bytes())
                log.info("firmware_restored", path=self.path)
            else:
                dest.unlink()
                log.info("firmware_removed", path=self.path)
        elif dest.exists() and not (backup is not None and backup.is_file() and _same(dest, backup)):
            # (the same bytes as the backup: killed before our copy was written, the host's file is untouched)
            log.warning("firmware_changed_by_others", path=self.path)
        if backup is not None:
            # Restored above, or the host's file was replaced by someone else since: the copy is no longer needed.
            backup.unlink(missing_ok=True)
        for folder in reversed(self.created):
            with contextlib.suppress(OSError):  # not empty: something else lives there now
                ctx.on_host(folder).rmdir()


def _same(a: Path, b: Path) -> bool:
    return a.stat().st_size == b.stat().st_size and sha256_file(a) == sha256_file(b)
