"""The driver tree copied into the agent's state folder, checked and indexed there: what the node loads from.

Trees come from images and caches: untrusted. Loading from a private copy means the files modprobe
opens and the firmware placed on the host are the very files whose sha256 was checked against the
manifest, and their modules.dep is the one `depmod -b` writes over them here, never the tree's own.
The copy is a whole driver tree (modules, firmware, manifest, the recipe): a later agent can load it
again by itself, which an upgrade needs to roll back to the driver it replaced.
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
from agent.tree import MANIFEST

log = get_logger(__name__)

RECIPE = "recipe.toml"


@dataclass(frozen=True)
class TreeStaged(HostChange):
    """``base`` (a node path under the state folder) holds each of ``files`` (path relative to the tree →
    sha256) copied from ``source`` (the tree as the agent saw it), the manifest and ``recipe``'s file."""

    kind: ClassVar[str] = "tree_staged"

    base: str
    kernel: str
    files: dict[str, str]
    source: str = ""
    recipe: str = ""

    @property
    def key(self) -> str:
        return f"{self.kind}:{self.base}"

    def describe(self) -> str:
        return f"the driver tree ({len(self.files)} files) staged for loading in {self.base}"

    def brief(self) -> dict[str, object]:
        return {"path": self.base, "files": len(self.files)}

    def apply(self, ctx: ChangeContext) -> Self:
        base = staged_root(ctx, self.base)
        if base.exists():  # half staged by an agent that was killed: ours, start again
            shutil.rmtree(base)
        source = Path(self.source)
        for relative, sha256 in sorted(self.files.items()):
            dest = base / relative
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source / relative, dest)
            actual = sha256_file(dest)
            if actual != sha256:
                raise IntegrityError(
                    f"{source / relative} has sha256 {actual}, the tree's manifest says {sha256}; "
                    "the tree is damaged or was changed after it was checked: rebuild it"
                )
        shutil.copyfile(source / MANIFEST, base / MANIFEST)
        if self.recipe:
            shutil.copyfile(self.recipe, base / RECIPE)
        ctx.modules.depmod(base / "opt", self.kernel)
        log.info("tree_staged", base=self.base, files=len(self.files))
        return self

    def in_place(self, ctx: ChangeContext) -> bool:
        base = staged_root(ctx, self.base)
        index = base / "opt/lib/modules" / self.kernel / "modules.dep"
        return index.is_file() and (base / MANIFEST).is_file() and all((base / r).is_file() for r in self.files)

    def undo(self, ctx: ChangeContext) -> None:
        base = staged_root(ctx, self.base)
        if base.exists():
            shutil.rmtree(base)
            log.info("tree_unstaged", base=self.base)
        with contextlib.suppress(OSError):  # other trees are staged there too
            base.parent.rmdir()


def staged_root(ctx: ChangeContext, node_path: str) -> Path:
    """A staged tree's folder under the current host root; anything outside the agent's own folder for
    staged trees is refused (a crafted journal must not make undo remove a host folder)."""
    base = ctx.on_host(node_path)
    staging = ctx.host.from_host_path(ctx.host.as_host_path(ctx.host.staged_trees_dir))
    if base.parent != staging:
        raise IntegrityError(
            f"refusing a staged tree outside {ctx.host.as_host_path(ctx.host.staged_trees_dir)}: {node_path}"
        )
    return base
