"""An in-tree module the driver replaces, removed from the running kernel, and loaded back on undo."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar, Self

from agent.lifecycle.changes.base import ChangeContext, HostChange
from agent.logs import get_logger

log = get_logger(__name__)


@dataclass(frozen=True)
class InTreeModuleRemoved(HostChange):
    """``module`` (the kernel's own copy: ``version``, ``srcversion``) was loaded and is removed."""

    kind: ClassVar[str] = "module_removed"
    kernel_state: ClassVar[bool] = True

    module: str
    version: str = ""
    srcversion: str = ""

    @property
    def key(self) -> str:
        return f"{self.kind}:{self.module}"

    def describe(self) -> str:
        return f"in-tree module {self.module} removed"

    def brief(self) -> dict[str, object]:
        return {"module": self.module}

    def apply(self, ctx: ChangeContext) -> Self:
        return self.apply_all(ctx, [self])[0]

    @classmethod
    def apply_all(cls, ctx: ChangeContext, changes: Sequence[Self]) -> list[Self]:
        """One rmmod for all of them, in the order given (holders first)."""
        gone = ctx.modules.rmmod([c.module for c in changes], ctx.driver_modules, "remove the in-tree")
        for module in gone:
            log.info("in_tree_module_removed", module=module)
        return list(changes)

    def in_place(self, ctx: ChangeContext) -> bool:
        current = ctx.loaded([self.module]).get(self.module)
        # Gone, or replaced by an out-of-tree copy (ours): the kernel's own copy is not loaded.
        return current is None or "O" in current.taint or current.srcversion != self.srcversion

    def undo(self, ctx: ChangeContext) -> None:
        self.undo_all(ctx, [self])

    @classmethod
    def undo_all(cls, ctx: ChangeContext, changes: Sequence[Self]) -> None:
        """One modprobe loads back every in-tree module that is not back already."""
        loaded = ctx.loaded()
        # Back already, or replaced by ours (whose own change unloads it first): nothing to load.
        missing = [c.module for c in changes if c.module not in loaded]
        if missing:
            ctx.modules.modprobe_in_tree(*missing)
            for module in missing:
                log.info("in_tree_module_restored", module=module)
