"""The driver's modules copied into the agent's state folder, checked and indexed there, for modprobe to load.

Trees come from images and caches: untrusted. Loading from a private copy means the files modprobe
opens are the very files whose sha256 was checked against the manifest, and their modules.dep is
the one `depmod -b` writes over them here, never the tree's own.
"""

from __future__ import annotations

import contextlib
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Self

from agent.errors import IntegrityError
from agent.host.files import sha256_file
from agent.lifecycle.changes.base import ChangeContext, HostChange
from agent.logs import get_logger

log = get_logger(__name__)


@dataclass(frozen=True)
class ModuleTreeStaged(HostChange):
    """``base`` (a node path under the state folder) holds ``lib/modules/<kernel>/<relative path>`` for each of
    ``files`` (relative path → sha256), copied from ``source`` (the tree's module folder as the agent saw it)."""

    kind: ClassVar[str] = "module_tree_staged"

    base: str
    kernel: str
    files: dict[str, str]
    source: str = ""

    @property
    def key(self) -> str:
        return f"{self.kind}:{self.base}"

    def describe(self) -> str:
        return f"{len(self.files)} driver modules staged for loading in {self.base}"

    def brief(self) -> dict[str, object]:
        return {"path": self.base, "modules": len(self.files)}

    def modules_dir(self, ctx: ChangeContext) -> Path:
        return self._base(ctx) / "lib/modules" / self.kernel

    def apply(self, ctx: ChangeContext) -> Self:
        base = self._base(ctx)
        if base.exists():  # half staged by an agent that was killed: ours, start again
            shutil.rmtree(base)
        target = self.modules_dir(ctx)
        for relative, sha256 in sorted(self.files.items()):
            dest = target / relative
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(Path(self.source) / relative, dest)
            actual = sha256_file(dest)
            if actual != sha256:
                raise IntegrityError(
                    f"{Path(self.source) / relative} has sha256 {actual}, the tree's manifest says {sha256}; "
                    "the tree is damaged or was changed after it was checked: rebuild it"
                )
        ctx.modules.depmod(base, self.kernel)
        log.info("modules_staged", base=self.base, modules=len(self.files))
        return self

    def in_place(self, ctx: ChangeContext) -> bool:
        target = self.modules_dir(ctx)
        return (target / "modules.dep").is_file() and all((target / r).is_file() for r in self.files)

    def undo(self, ctx: ChangeContext) -> None:
        base = self._base(ctx)
        if base.exists():
            shutil.rmtree(base)
            log.info("modules_unstaged", base=self.base)
        with contextlib.suppress(OSError):  # other trees are staged there too
            base.parent.rmdir()

    def _base(self, ctx: ChangeContext) -> Path:
        base = ctx.on_host(self.base)
        staging = ctx.host.staged_modules_dir
        if base.parent != ctx.host.from_host_path(ctx.host.as_host_path(staging)):
            raise IntegrityError(
                f"refusing a staged module folder outside {ctx.host.as_host_path(staging)}: {self.base}"
            )
        return base
