"""Kernel modules: removing the in-tree ones the recipe replaces, modprobe from the tree, and undo."""

from __future__ import annotations

import contextlib
from collections.abc import Collection, Sequence

from agent.discovery.modules import LoadedModule, loaded_modules
from agent.errors import CommandError, LoadError, ModuleBusyError
from agent.host.paths import HostPaths, module_key
from agent.host.runner import Runner
from agent.lifecycle.holders import Holder, find_holders
from agent.lifecycle.journal import Change, Journal
from agent.logs import get_logger
from agent.recipes.model import Recipe
from agent.tree import DriverTree

log = get_logger(__name__)

REMOVED = "module_removed"
LOADED = "module_loaded"
TIMEOUT = 120.0


def load_sequence(recipe: Recipe) -> tuple[str, ...]:
    """What to modprobe, in order: the recipe's load order, then the modules it loads afterwards."""
    out: list[str] = []
    for name in (*recipe.load_order, *recipe.after):
        if name not in out:
            out.append(name)
    return tuple(out)


def ours(tree: DriverTree) -> dict[str, str]:
    """name → srcversion of every module in the tree (what "loaded from this tree" means)."""
    return {module_key(m.name): m.srcversion for m in tree.manifest.modules}


class BusyError(ModuleBusyError):
    """A module is in use; carries the holders so they can be exported."""

    def __init__(self, module: str, holders: Sequence[Holder], doing: str) -> None:
        names = "; ".join(h.describe() for h in holders) or "an unknown user (refcount > 0, no holder found)"
        super().__init__(
            f"cannot {doing} {module}: it is in use by {names}",
            hint="stop those processes or pods (the agent never forces a module out) and it retries",
        )
        self.module = module
        self.holders = tuple(holders)


class Modules:
    """modprobe/rmmod through the runner, reading /proc/modules and /sys/module through HostPaths."""

    def __init__(self, *, host: HostPaths, runner: Runner) -> None:
        self.host = host
        self.runner = runner

    def loaded(self, detail: Collection[str] = ()) -> dict[str, LoadedModule]:
        """Every loaded module; version and srcversion only for those named in ``detail``."""
        return loaded_modules(self.host, detail)

    def holders(self, module: str, driver_modules: Sequence[str]) -> tuple[Holder, ...]:
        return find_holders(self.host, module, driver_modules)

    # --- apply ------------------------------------------------------------------------------
    def remove_replaced(self, journal: Journal, recipe: Recipe, tree: DriverTree) -> int:
        """rmmod the loaded in-tree modules the recipe replaces, holders first; busy → ``BusyError``."""
        mine = ours(tree)
        wanted = [module_key(m) for m in recipe.replaces]
        driver_modules = [*recipe.replaces, recipe.main_module]
        removed = 0
        while True:
            loaded = self.loaded(wanted)
            targets = [m for m in wanted if m in loaded and loaded[m].srcversion != mine.get(m, "\0")]
            if not targets:
                return removed
            order = removal_order(targets, loaded)
            if not order:
                raise BusyError(*self._stuck(targets, loaded, driver_modules), "remove the in-tree")
            # One journal entry per module, all intents written before the single rmmod that removes them.
            with contextlib.ExitStack() as entries:
                for module in order:
                    info = loaded[module]
                    entries.enter_context(
                        journal.change(
                            REMOVED,
                            f"{REMOVED}:{module}",
                            module=module,
                            version=info.version,
                            srcversion=info.srcversion,
                        )
                    )
                gone = self._rmmod(order, driver_modules, "remove the in-tree")
            removed += len(gone)
            for module in gone:
                log.info("in_tree_module_removed", module=module)

    def load(self, journal: Journal, tree: DriverTree, recipe: Recipe) -> int:
        """modprobe each module of the load sequence from the tree, with its parameters. Returns loads made."""
        mine = ours(tree)
        made = 0
        for module in load_sequence(recipe):
            name = module_key(module)
            before = self.loaded([name])
            current = before.get(name)
            if current is not None:
                if current.srcversion == mine.get(name):
                    continue
                raise LoadError(
                    f"module {name} is loaded but is not the one in {tree.root} (srcversion {current.srcversion or '?'}"
                    f", tree {mine.get(name, '?')}) and {recipe.name} does not replace it",
                    hint="unload it (or add it to the recipe's replaces) and retry",
                )
            params = [f"{k}={v}" for k, v in sorted(recipe.module_parameters(module).items())]
            argv = ["modprobe", "-d", str(tree.modules_base), "-S", tree.manifest.kernel, module, *params]
            with journal.change(LOADED, f"{LOADED}:{name}", module=name, ours=mine, loaded=[]) as entry:
                try:
                    self.runner.run(argv, timeout=TIMEOUT)
                except CommandError as e:
                    raise LoadError(f"modprobe {module} from {tree.root} failed: {_why(e)}") from e
                after = self.loaded()
                entry.data["loaded"] = [m for m in after if m not in before]
            made += 1
            log.info("module_loaded", module=name, params=" ".join(params), pulled=entry.data["loaded"])
        return made

    # --- undo -------------------------------------------------------------------------------
    def undo(self, change: Change, driver_modules: Sequence[str]) -> None:
        """Revert one module change: unload what we loaded, or load back the in-tree module we removed."""
        if change.kind == REMOVED:
            module = change.data["module"]
            if module in self.loaded():  # names only
                return
            try:
                self.runner.run(["modprobe", module], timeout=TIMEOUT)
            except CommandError as e:
                raise LoadError(f"cannot load back the in-tree module {module}: {_why(e)}") from e
            log.info("in_tree_module_restored", module=module)
            return
        self.unload_ours(change.data.get("loaded", []), change.data.get("ours", {}), driver_modules)

    def unload_ours(
        self, loaded_by_us: Sequence[str], srcversions: dict[str, str], driver_modules: Sequence[str]
    ) -> None:
        """rmmod what we loaded (listed, or identified by srcversion), holders first; never forced."""
        candidates = list(dict.fromkeys([*loaded_by_us, *srcversions]))
        while True:
            loaded = self.loaded(candidates)
            targets = [
                m
                for m in candidates
                if m in loaded and (m in loaded_by_us or loaded[m].srcversion == srcversions.get(m))
            ]
            if not targets:
                return
            order = removal_order(targets, loaded)
            if not order:
                raise BusyError(*self._stuck(targets, loaded, driver_modules), "unload")
            for module in self._rmmod(order, driver_modules, "unload"):
                log.info("module_unloaded", module=module)

    def _stuck(
        self, targets: Sequence[str], loaded: dict[str, LoadedModule], driver_modules: Sequence[str]
    ) -> tuple[str, tuple[Holder, ...]]:
        """The target that blocks the others (held by something outside them) and what holds it."""
        stuck = next((m for m in targets if not set(loaded[m].holders) & set(targets)), targets[0])
        return stuck, self.holders(stuck, driver_modules)

    def _rmmod(self, order: Sequence[str], driver_modules: Sequence[str], doing: str) -> list[str]:
        """One rmmod for ``order`` (holders first); the modules it removed. A busy module → ``BusyError``."""
        try:
            self.runner.run(["rmmod", *order], timeout=TIMEOUT)
        except CommandError as e:
            still = self.loaded()
            gone = [m for m in order if m not in still]
            left = next(m for m in order if m in still) if len(gone) < len(order) else None
            if left is not None and ("in use" in e.output_tail or "busy" in e.output_tail.lower()):
                for module in gone:
                    log.info("module_removed_before_busy", module=module)
                raise BusyError(left, self.holders(left, driver_modules), doing) from e
            raise
        return list(order)


def removal_order(targets: Sequence[str], loaded: dict[str, LoadedModule]) -> list[str]:
    """The targets that one rmmod can remove in turn, holders first: each one is held only by targets removed
    before it, and its refcount is those holders' references (no open handle). Empty when the first is busy."""
    order: list[str] = []
    progress = True
    while progress:
        progress = False
        for module in targets:
            if module in order:
                continue
            info = loaded[module]
            holders = set(info.holders)
            if holders <= set(order) and info.refcount <= len(holders):
                order.append(module)
                progress = True
    return order


def _why(error: CommandError) -> str:
    """modprobe's own words, with the module-signing case spelled out."""
    tail = error.output_tail.strip() or f"exit {error.returncode}"
    if "Key was rejected" in tail or "Required key not available" in tail:
        return (
            f"{tail}: this kernel only loads signed modules (module signing enforced, e.g. Secure Boot); "
            "build with --sign-key/--sign-cert and enroll the certificate"
        )
    return tail
