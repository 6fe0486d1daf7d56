"""A module loaded from the driver tree with modprobe, with what it pulled in; undone by unloading ours."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import ClassVar, Self

from agent.lifecycle.changes.base import ChangeContext, HostChange
from agent.lifecycle.modules import from_tree
from agent.logs import get_logger

log = get_logger(__name__)


@dataclass(frozen=True)
class ModuleLoaded(HostChange):
    """``module`` loaded by ``modprobe -d base -S kernel module params``.

    ``ours`` maps every module of the tree to its srcversion (how ours are told from the kernel's own
    copies); ``loaded`` lists what the modprobe added to the kernel, dependencies included, filled
    in once it ran. ``base`` is the tree's module folder as the agent saw it: needed to apply, never to
    undo.
    """

    kind: ClassVar[str] = "module_loaded"
    kernel_state: ClassVar[bool] = True

    module: str
    ours: dict[str, str]
    base: str = ""
    kernel: str = ""
    params: tuple[str, ...] = ()
    loaded: tuple[str, ...] = ()

    @property
    def key(self) -> str:
        return f"{self.kind}:{self.module}"

    def describe(self) -> str:
        pulled = f" (with {', '.join(m for m in self.loaded if m != self.module)})" if len(self.loaded) > 1 else ""
        return f"module {self.module} loaded from the driver tree{pulled}"

    def brief(self) -> dict[str, object]:
        return {"module": self.module, "loaded": list(self.loaded)}

    def apply(self, ctx: ChangeContext) -> Self:
        before = ctx.loaded()
        argv = ["modprobe", "-d", self.base, "-S", self.kernel, self.module, *self.params]
        ctx.modules.modprobe(argv, what=f"modprobe {self.module} from {self.base}")
        pulled = tuple(m for m in ctx.loaded() if m not in before)
        log.info("module_loaded", module=self.module, params=" ".join(self.params), pulled=list(pulled))
        return dataclasses.replace(self, loaded=pulled)

    def in_place(self, ctx: ChangeContext) -> bool:
        current = ctx.loaded([self.module]).get(self.module)
        return from_tree(current, self.ours.get(self.module))

    def merge(self, made: Self) -> Self:
        # Made again after a crash: keep what the first attempt pulled in as well.
        return dataclasses.replace(self, loaded=tuple(dict.fromkeys([*self.loaded, *made.loaded])))

    def undo(self, ctx: ChangeContext) -> None:
        # Everything of ours goes in one pass, holders first: the first of these undone unloads the others too.
        ctx.modules.unload(self.loaded, self.ours, ctx.driver_modules)
