"""Kernel module commands: what is loaded, modprobe, rmmod holders first, and who holds a busy module."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from pathlib import Path

from agent.discovery.modules import LoadedModule, loaded_modules
from agent.errors import CommandError, LoadError, ModuleBusyError
from agent.host.files import read_optional
from agent.host.paths import HostPaths, module_key
from agent.host.runner import Runner
from agent.lifecycle.holders import Holder, find_holders
from agent.logs import get_logger
from agent.recipes.model import Recipe
from agent.tree import DriverTree

log = get_logger(__name__)

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


def from_tree(module: LoadedModule | None, srcversion: str | None) -> bool:
    """Whether a loaded module is the tree's copy (``srcversion``: the tree's, None when the tree lacks it).

    The srcversion says so; a module built without one (no MODULE_VERSION, like the backport's mei-gsc)
    is the tree's when the kernel marks it out of tree ("O" taint): the kernel's own copies never are.
    """
    if module is None or srcversion is None:
        return False
    return module.srcversion == srcversion if srcversion else "O" in module.taint


def in_tree_dependencies(tree: DriverTree, load: Sequence[str]) -> tuple[str, ...]:
    """The kernel's own modules that loading ``load`` from the tree needs (drm for the backport's i915).

    Only what those modules and, through the tree, their own dependencies need: a tree module that is
    not loaded (i915_spi needs mtd) asks for nothing.
    """
    modules = {module_key(m.name): m for m in tree.manifest.modules}
    pending, seen, needed = [module_key(n) for n in load], set(), set()
    while pending:
        name = pending.pop()
        if name in seen:
            continue
        seen.add(name)
        if name not in modules:
            needed.add(name)
            continue
        pending += [module_key(d) for d in modules[name].depends]
    return tuple(sorted(needed))


def dependency_closure(host: HostPaths, kernel: str, names: Sequence[str]) -> tuple[str, ...]:
    """``names`` and every module the node's modules.dep says they need (its lines list them all)."""
    wanted = set(names)
    found: list[str] = list(names)
    text = read_optional(host.kernel_modules_dir(kernel) / "modules.dep") or ""
    for line in text.splitlines():
        path, _, deps = line.partition(":")
        if _module_name(path) in wanted:
            found += [_module_name(d) for d in deps.split()]
    return tuple(dict.fromkeys(found))


def _module_name(path: str) -> str:
    return module_key(path.strip().rsplit("/", 1)[-1].split(".ko", 1)[0])


def node_modules(host: HostPaths, kernel: str) -> set[str]:
    """Every module the node's kernel can load (modules.dep) or has built in (modules.builtin)."""
    folder = host.kernel_modules_dir(kernel)
    names: set[str] = set()
    for index in ("modules.dep", "modules.builtin"):
        text = read_optional(folder / index) or ""
        names.update(_module_name(line.split(":", 1)[0]) for line in text.splitlines() if line.strip())
    return names


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

    def modprobe(self, argv: Sequence[str], *, what: str) -> None:
        """Run one modprobe; a failure is a ``LoadError`` in modprobe's own words."""
        try:
            self.runner.run(list(argv), timeout=TIMEOUT)
        except CommandError as e:
            raise LoadError(f"{what} failed: {_why(e)}") from e

    def modprobe_in_tree(self, *modules: str) -> None:
        """Load the kernel's own ``modules`` from the node's module folder (the host's, also in a pod)."""
        # -d: the node's /lib/modules under the host root; a pod has no /lib/modules of the host's own.
        argv = ["modprobe", "-d", str(self.host.root), *(["-a"] if len(modules) > 1 else []), *modules]
        names = ", ".join(modules)
        self.modprobe(argv, what=f"loading the in-tree module{'s' if len(modules) > 1 else ''} {names}")

    def depmod(self, base: Path, kernel: str) -> None:
        """modules.dep and friends for the modules under ``base`` (`depmod -b`), nothing else."""
        try:
            self.runner.run(["depmod", "-b", str(base), kernel], timeout=TIMEOUT, quiet=True)
        except CommandError as e:
            raise LoadError(f"depmod -b {base} {kernel} failed: {e.output_tail.strip() or e.returncode}") from e

    def unload(self, loaded_by_us: Sequence[str], srcversions: dict[str, str], driver_modules: Sequence[str]) -> None:
        """rmmod what we loaded (listed, or identified by srcversion), holders first; never forced."""
        while True:
            targets, loaded = self._ours_loaded(loaded_by_us, srcversions)
            if not targets:
                return
            order = removal_order(targets, loaded)
            if not order:
                raise BusyError(*self.stuck(targets, loaded, driver_modules), "unload")
            for module in self.rmmod(order, driver_modules, "unload"):
                log.info("module_unloaded", module=module)

    def unload_blocker(
        self, loaded_by_us: Sequence[str], srcversions: dict[str, str], driver_modules: Sequence[str]
    ) -> BusyError | None:
        """What would stop ``unload`` of the same modules at a busy one now; nothing is run."""
        targets, loaded = self._ours_loaded(loaded_by_us, srcversions)
        order = removal_order(targets, loaded)
        if len(order) == len(targets):
            return None
        module, holders = self.stuck([m for m in targets if m not in order], loaded, driver_modules)
        return BusyError(module, holders, "unload")

    def _ours_loaded(
        self, loaded_by_us: Sequence[str], srcversions: dict[str, str]
    ) -> tuple[list[str], dict[str, LoadedModule]]:
        """Our modules loaded now (listed as loaded by us, or the tree's by srcversion), and what is loaded."""
        candidates = list(dict.fromkeys([*loaded_by_us, *srcversions]))
        loaded = self.loaded(candidates)
        mine = [
            m for m in candidates if m in loaded and (m in loaded_by_us or from_tree(loaded[m], srcversions.get(m)))
        ]
        return mine, loaded

    def stuck(
        self, targets: Sequence[str], loaded: dict[str, LoadedModule], driver_modules: Sequence[str]
    ) -> tuple[str, tuple[Holder, ...]]:
        """The target that blocks the others (held by something outside them) and what holds it."""
        stuck = next((m for m in targets if not set(loaded[m].holders) & set(targets)), targets[0])
        return stuck, self.holders(stuck, driver_modules)

    def rmmod(self, order: Sequence[str], driver_modules: Sequence[str], doing: str) -> list[str]:
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
