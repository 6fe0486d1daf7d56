"""The replaced driver's staged tree, kept aside while an upgrade loads the new one: what a rollback reloads."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from typing import ClassVar, Self

from agent.lifecycle.changes.base import ChangeContext, HostChange
from agent.lifecycle.changes.tree_staged import staged_root
from agent.logs import get_logger
from agent.tree import MANIFEST

log = get_logger(__name__)


@dataclass(frozen=True)
class TreeKept(HostChange):
    """The staged tree at ``source`` moved to ``base`` (both node paths of staged trees) for the switch."""

    kind: ClassVar[str] = "tree_kept"

    base: str
    source: str

    @property
    def key(self) -> str:
        return f"{self.kind}:{self.base}"

    def describe(self) -> str:
        return f"the replaced driver kept in {self.base} until the new one is verified"

    def apply(self, ctx: ChangeContext) -> Self:
        base, source = staged_root(ctx, self.base), staged_root(ctx, self.source)
        if base.exists():  # kept by an agent that was killed after the move: ours already
            return self
        os.replace(source, base)  # same folder: a rename, nothing copied
        log.info("tree_kept", base=self.base)
        return self

    def in_place(self, ctx: ChangeContext) -> bool:
        return (staged_root(ctx, self.base) / MANIFEST).is_file()

    def undo(self, ctx: ChangeContext) -> None:
        base = staged_root(ctx, self.base)
        if base.exists():
            shutil.rmtree(base)
            log.info("tree_kept_removed", base=self.base)
