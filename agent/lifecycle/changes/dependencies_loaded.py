"""The kernel's own modules the driver needs (drm and its helpers), loaded from the node's module folder.

The backport's i915 needs Debian's or Ubuntu's in-tree drm. On a fresh boot, or a node that blacklists
the in-tree i915, nothing has loaded drm: the node's own modprobe loads it (with its own dependencies,
from the node's modules.dep) before the driver. Undo takes out only what this change loaded and
nothing else uses; what was loaded before, or is used by something else now, stays.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import ClassVar, Self

from agent.lifecycle.changes.base import ChangeContext, HostChange
from agent.lifecycle.modules import removal_order
from agent.logs import get_logger

log = get_logger(__name__)


@dataclass(frozen=True)
class DependenciesLoaded(HostChange):
    """``modules`` asked for from the node's module folder; ``loaded`` what that added to the kernel.

    ``candidates`` (the modules and what the node's modules.dep says they need) and ``before`` (those of
    them already loaded) are journaled with the intent: an agent killed after the modprobe, before it
    could record ``loaded``, still tells what it loaded.
    """

    kind: ClassVar[str] = "dependencies_loaded"
    kernel_state: ClassVar[bool] = True

    modules: tuple[str, ...]
    candidates: tuple[str, ...] = ()
    before: tuple[str, ...] = ()
    loaded: tuple[str, ...] = ()

    @property
    def key(self) -> str:
        return self.kind

    def describe(self) -> str:
        return f"the kernel's own {', '.join(self.modules)} loaded for the driver" + (
            f" ({', '.join(self.loaded)})" if self.loaded else ""
        )

    def brief(self) -> dict[str, object]:
        return {"modules": list(self.modules), "loaded": list(self.loaded)}

    def apply(self, ctx: ChangeContext) -> Self:
        before = ctx.loaded()
        for module in self.modules:
            if module not in before:
                ctx.modules.modprobe_in_tree(module)
        pulled = tuple(m for m in ctx.loaded() if m not in before)
        log.info("dependencies_loaded", modules=list(self.modules), pulled=list(pulled))
        return dataclasses.replace(self, loaded=pulled)

    def merge(self, made: Self) -> Self:
        return dataclasses.replace(self, loaded=tuple(dict.fromkeys([*self.loaded, *made.loaded])))

    def in_place(self, ctx: ChangeContext) -> bool:
        loaded = ctx.loaded()
        return all(m in loaded for m in self.modules)

    def undo(self, ctx: ChangeContext) -> None:
        loaded = ctx.loaded()
        made = self.loaded or tuple(m for m in self.candidates if m not in self.before)
        ours = [m for m in made if m in loaded]
        order = removal_order(ours, loaded)
        kept = [m for m in ours if m not in order]
        if kept:
            # Something else uses them now (another driver, a process): they stay, as if loaded by it.
            log.info("dependencies_kept", modules=kept, reason="in use by others")
        if order:
            ctx.modules.rmmod(order, ctx.driver_modules, "unload the dependencies")
            log.info("dependencies_unloaded", modules=order)
