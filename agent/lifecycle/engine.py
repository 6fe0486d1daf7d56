"""The lifecycle engine: apply each host change through the journal, verify, roll back, undo, status."""

from __future__ import annotations

import contextlib
import hashlib
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent.discovery.node import NodeFacts
from agent.discovery.security import read_firmware_path
from agent.errors import AgentError, IntegrityError, LoadError
from agent.host.files import read_optional
from agent.host.paths import HostPaths, module_key
from agent.lifecycle.changes import ChangeContext, HostChange, host_write_error
from agent.lifecycle.changes.dependencies_loaded import DependenciesLoaded
from agent.lifecycle.changes.module_loaded import ModuleLoaded
from agent.lifecycle.changes.module_removed import InTreeModuleRemoved
from agent.lifecycle.changes.tree_staged import RECIPE, TreeStaged
from agent.lifecycle.firmware import Firmware
from agent.lifecycle.journal import DONE, Journal
from agent.lifecycle.modules import (
    BusyError,
    Modules,
    dependency_closure,
    from_tree,
    in_tree_dependencies,
    load_sequence,
    ours,
    removal_order,
)
from agent.lifecycle.preflight import check_dependencies, preflight
from agent.lifecycle.verify import Kmsg, Verification, Verifier
from agent.logs import get_logger
from agent.recipes.loader import load_recipe
from agent.recipes.model import Recipe
from agent.tree import DriverTree, load_tree

if TYPE_CHECKING:
    from agent.metrics import Metrics

log = get_logger(__name__)

# Journal phases with the driver in place: applied by this agent, or handed over by the previous one.
APPLIED = ("applied", "handed_over")


@dataclass(frozen=True)
class Target:
    """What to load: a driver tree and the recipe that says how."""

    tree: DriverTree
    recipe: Recipe

    @property
    def digest(self) -> str:
        """Identifies the tree's content: a different digest means a different driver."""
        m = self.tree.manifest
        return f"{m.recipe}/{m.kernel}/{m.inputs_digest}/" + ",".join(sorted(x.srcversion for x in m.modules))

    @property
    def driver_modules(self) -> list[str]:
        return list(dict.fromkeys([module_key(self.recipe.main_module), *map(module_key, load_sequence(self.recipe))]))


@dataclass(frozen=True)
class Outcome:
    """The result of an apply: host changes made (0 on a warm restart) and the verification."""

    changes: int
    warm: bool
    verification: Verification
    seconds: float


class Lifecycle:
    """Brings the host to "driver loaded and verified" and back, every change journaled first."""

    def __init__(
        self,
        *,
        host: HostPaths,
        journal: Journal,
        firmware: Firmware,
        modules: Modules,
        verifier: Verifier,
        kmsg: Kmsg,
        metrics: Metrics | None = None,
    ) -> None:
        self.host = host
        self.journal = journal
        self.firmware = firmware
        self.modules = modules
        self.verifier = verifier
        self.kmsg = kmsg
        self.metrics = metrics

    @property
    def boot_id(self) -> str:
        return (read_optional(self.host.boot_id) or "").strip()

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        started = time.monotonic()
        try:
            yield
        finally:
            seconds = time.monotonic() - started
            if self.metrics is not None:
                self.metrics.step_seconds.labels(step=name).observe(seconds)
            log.debug("step_done", step=name, seconds=round(seconds, 3))

    # --- making and undoing changes --------------------------------------------------------------
    def context(self, *, cached: bool = False) -> ChangeContext:
        """What changes act through; ``cached`` reads the loaded modules once (read-only passes)."""
        return ChangeContext(
            host=self.host,
            modules=self.modules,
            driver_modules=self.journal.header.driver_modules,
            cache_modules=cached,
        )

    def make(self, change: HostChange) -> HostChange:
        """Journal ``change`` as intent, make it, mark it done; returns it as made."""
        self.journal.intent(change)
        made = change.apply(self.context())
        self.journal.done(made)
        return made

    def make_all(self, changes: Sequence[HostChange]) -> None:
        """Several changes of one kind made by one command: every intent is journaled before it runs."""
        for change in changes:
            self.journal.intent(change)
        for made in type(changes[0]).apply_all(self.context(), changes):
            self.journal.done(made)

    # --- recovery -----------------------------------------------------------------------------
    def forget_previous_boot(self) -> None:
        """Kernel state journaled in an earlier boot is gone with it: drop it, keep the files to undo."""
        journal = self.journal
        if journal.exists and journal.header.boot_id not in ("", self.boot_id):
            gone = journal.forget_kernel_state()
            phase = "applying" if journal.phase == "applied" else journal.phase
            journal.update(boot_id=self.boot_id, phase=phase)
            log.info("journal_from_previous_boot", dropped=[c.key for c in gone])

    def recover(self, target: Target | None, *, keep: frozenset[str] = frozenset()) -> None:
        """Make the journal current: drop what a reboot undid; undo a different driver's changes
        (all but the changes whose keys are in ``keep``: an upgrade's kept tree)."""
        journal = self.journal
        if not journal.exists:
            return
        journal.require_known()
        self.forget_previous_boot()
        others = [c for c in journal.changes if c.key not in keep]
        if target is not None and others and journal.header.tree_digest != target.digest:
            log.info("journal_other_driver", was=journal.header.tree_digest, now=target.digest)
            self.undo(keep=keep)
        if journal.phase in ("applying", "undoing"):
            log.info("journal_recovering", phase=journal.phase, changes=len(journal.entries))

    def warm(self, target: Target) -> bool:
        """Everything already in place and matching (journal, modules, firmware): nothing to change."""
        j = self.journal
        if j.phase not in APPLIED or j.header.tree_digest != target.digest or j.header.boot_id != self.boot_id:
            return False
        ctx = self.context(cached=True)
        sequence = [module_key(m) for m in load_sequence(target.recipe)]
        loaded = ctx.loaded(sequence)
        mine = ours(target.tree)
        if not all(from_tree(loaded.get(m), mine.get(m)) for m in sequence):
            return False
        return all(change.in_place(ctx) for change in j.changes)

    # --- apply --------------------------------------------------------------------------------
    def apply(self, target: Target, facts: NodeFacts, *, keep: frozenset[str] = frozenset()) -> Outcome:
        """Preflight, recover, apply each change journaled first, verify; any failure rolls back and raises.

        ``keep``: keys of journaled changes that recovery and rollback leave alone (an upgrade's kept tree).
        """
        started = time.monotonic()
        # Logged before the first timed step: the logger's own start-up is not a step's duration.
        log.info("apply_started", recipe=target.recipe.name, tree=str(target.tree.root), kernel=facts.kernel.release)
        with self.step("preflight"):
            preflight(target.tree, target.recipe, facts)
            check_dependencies(self.host, target.tree, target.recipe, self.modules.loaded())
        try:
            self.recover(target, keep=keep)
        except OSError as e:
            raise host_write_error(e, "recovering the journal") from e
        if self.warm(target):
            with self.step("verify"):
                verification = self.verifier.verify(target.tree, target.recipe, self.journal.header.kmsg_since)
            if verification.ok:
                log.info("warm_restart", changes=0)
                return Outcome(0, True, verification, time.monotonic() - started)
        try:
            changes, verification = self._apply(target)
        except AgentError as e:
            self.rollback(e, keep=keep)
            raise
        except OSError as e:
            error = host_write_error(e, "changing the host")
            self.rollback(error, keep=keep)
            raise error from e
        return Outcome(changes, False, verification, time.monotonic() - started)

    def _apply(self, target: Target) -> tuple[int, Verification]:
        tree, recipe, journal = target.tree, target.recipe, self.journal
        journal.update(
            phase="applying",
            mode="load",
            boot_id=self.boot_id,
            tree=str(tree.root),
            tree_digest=target.digest,
            recipe=recipe.name,
            kernel=tree.manifest.kernel,
            driver_modules=tuple(target.driver_modules),
        )
        changes = 0
        with self.step("stage"):
            staged, made = self._stage(target)
            changes += made
        tree = staged.tree
        with self.step("firmware"):
            placement = self.firmware.choose(journal)
            folder = placement.folder
            if placement.set_path:
                if self._set_firmware_path():
                    changes += 1
                else:
                    folder = self.host.lib_firmware_updates
            if placement.reason:
                log.info("firmware_placement", folder=self.host.as_host_path(folder), reason=placement.reason)
            for change in self.firmware.file_changes(tree, folder):
                self.make(change)
                changes += 1
        with self.step("remove_in_tree"):
            changes += self._remove_replaced(staged)
        mark = self.kmsg.mark()
        with self.step("modprobe"):
            loads = self._load(staged)
        changes += loads
        if loads or journal.header.kmsg_mark < 0:
            journal.update(kmsg_mark=mark)
        with self.step("verify"):
            verification = self.verifier.verify(tree, recipe, journal.header.kmsg_since)
        if not verification.ok:
            raise LoadError(f"{recipe.name} loaded but did not verify: " + "; ".join(verification.problems))
        journal.settle(phase="applied")
        return changes, verification

    def _set_firmware_path(self) -> bool:
        """Point the firmware path at our folder; False (nothing journaled) when the file cannot be written."""
        change = self.firmware.path_change()
        try:
            self.make(change)
        except OSError as e:
            # Opening the parameter failed (a read-only /sys without the single-file mount): nothing was written.
            self.journal.drop(change)
            log.warning("firmware_path_not_writable", path=change.file, error=e.strerror or str(e))
            return False
        return True

    def _remove_replaced(self, target: Target) -> int:
        """rmmod the loaded in-tree modules the recipe replaces, holders first; busy → ``BusyError``."""
        mine = ours(target.tree)
        wanted = [module_key(m) for m in target.recipe.replaces]
        removed = 0
        while True:
            loaded = self.modules.loaded(wanted)
            targets = [m for m in wanted if m in loaded and not from_tree(loaded[m], mine.get(m))]
            if not targets:
                return removed
            order = removal_order(targets, loaded)
            if not order:
                module, holders = self.modules.stuck(targets, loaded, self.journal.header.driver_modules)
                raise BusyError(module, holders, "remove the in-tree")
            self.make_all(
                [InTreeModuleRemoved(m, version=loaded[m].version, srcversion=loaded[m].srcversion) for m in order]
            )
            removed += len(order)

    def _load(self, target: Target) -> int:
        """modprobe each module of the load sequence from a checked copy of the tree, the kernel's own
        dependencies first. Returns the changes made."""
        tree, recipe = target.tree, target.recipe
        mine = ours(tree)
        loaded = self.modules.loaded([module_key(m) for m in load_sequence(recipe)])
        pending = []
        for module in load_sequence(recipe):
            name = module_key(module)
            current = loaded.get(name)
            if current is None:
                pending.append(module)
            elif not from_tree(current, mine.get(name)):
                raise LoadError(
                    f"module {name} is loaded but is not the one in {tree.root} (srcversion {current.srcversion or '?'}"
                    f", tree {mine.get(name, '?')}) and {recipe.name} does not replace it",
                    hint="unload it (or add it to the recipe's replaces) and retry",
                )
        if not pending:
            return 0
        made = 0
        needed = tuple(d for d in in_tree_dependencies(tree, load_sequence(recipe)) if d not in loaded)
        if needed:
            candidates = dependency_closure(self.host, tree.manifest.kernel, needed)
            before = tuple(m for m in candidates if m in loaded)
            self.make(DependenciesLoaded(needed, candidates=candidates, before=before))
            made += 1
        for module in pending:
            params = tuple(f"{k}={v}" for k, v in sorted(recipe.module_parameters(module).items()))
            self.make(
                ModuleLoaded(
                    module=module_key(module),
                    ours=mine,
                    base=str(tree.modules_base),
                    kernel=tree.manifest.kernel,
                    params=params,
                )
            )
            made += 1
        return made

    def _stage(self, target: Target) -> tuple[Target, int]:
        """Copy the tree into the state folder (checked, indexed) unless it is there already; the target
        that loads from the copy, and the changes made (0 or 1)."""
        staged = self._staged(target)
        entry = self.journal.get(staged.key)
        made = 0
        if entry is None or entry.status != DONE or not staged.in_place(self.context()):
            self.make(staged)
            made = 1
        base = self.host.from_host_path(staged.base)
        return Target(load_tree(base), target.recipe), made

    def _staged(self, target: Target) -> TreeStaged:
        """The change that copies ``target``'s tree into the state folder."""
        tree = target.tree
        prefix = tree.modules_dir.relative_to(tree.root).as_posix() + "/"
        files = {}
        for path, sha256, what in [
            *((m.path, m.sha256, prefix) for m in tree.manifest.modules),
            *((f.path, f.sha256, "firmware/") for f in tree.manifest.firmware),
        ]:
            if not path.startswith(what) or any(part in ("", ".", "..") for part in path.split("/")):
                raise IntegrityError(f"driver tree {tree.root} lists {path!r}, outside {what}: refused")
            files[path] = sha256
        name = hashlib.sha256(target.digest.encode()).hexdigest()[:16]
        return TreeStaged(
            base=self.host.as_host_path(self.host.staged_trees_dir / name),
            kernel=tree.manifest.kernel,
            files=files,
            source=str(tree.root),
            recipe=str(target.recipe.path),
        )

    def rollback(self, cause: AgentError, *, keep: frozenset[str] = frozenset()) -> None:
        """Undo after a failed apply; a failing undo is logged and leaves the journal for the next start."""
        log.warning("rolling_back", reason=str(cause), changes=len(self.journal.entries))
        try:
            self.undo(keep=keep)
        except AgentError as e:
            log.error("rollback_incomplete", error=str(e), left=[c.key for c in self.journal.changes])
        except OSError as e:
            log.error("rollback_incomplete", error=e.strerror or str(e), left=[c.key for c in self.journal.changes])

    def current(self) -> Target | None:
        """The driver this journal has in place in this boot, loadable again from its staged copy."""
        j = self.journal
        if j.phase not in APPLIED or j.header.boot_id != self.boot_id:
            return None
        for staged in j.of_kind(TreeStaged):
            base = self.host.from_host_path(staged.base)
            if (base / RECIPE).is_file():
                return Target(load_tree(base), load_recipe(base / RECIPE))
        return None

    def unload_blocker(self) -> BusyError | None:
        """What would make an undo stop at a busy module now (held by a process or another module), or None.

        Asked before an upgrade touches anything, so a held driver is never half unloaded.
        """
        ours_loaded: list[str] = []
        srcversions: dict[str, str] = {}
        for change in self.journal.of_kind(ModuleLoaded):
            ours_loaded += change.loaded
            srcversions.update(change.ours)
        return self.modules.unload_blocker(ours_loaded, srcversions, self.journal.header.driver_modules)

    def hand_over(self) -> int:
        """Leave the driver loaded for the next agent (a restart): the journal says so; nothing is undone."""
        journal = self.journal
        if journal.phase == "applied":
            journal.update(phase="handed_over")
        return len(journal.entries)

    # --- monitor mode -------------------------------------------------------------------------
    def ensure_firmware_path(self) -> bool:
        """Monitor mode: point the firmware path at /var/lib/firmware when it is empty or ours."""
        journal = self.journal
        placement = self.firmware.choose(journal)
        if not placement.set_path:
            return read_firmware_path(self.host) == self.firmware.our_path
        if not journal.exists:
            journal.update(phase="applying", mode="monitor", boot_id=self.boot_id, driver_modules=())
        ok = self._set_firmware_path()
        journal.update(phase="applied")
        return ok

    # --- undo ---------------------------------------------------------------------------------
    def undo(self, *, keep: frozenset[str] = frozenset()) -> int:
        """Walk the journal backwards, reverting and dropping each change; busy modules raise ``BusyError``.

        A journal holding a kind this agent does not know stops here, before anything is touched. Changes
        whose keys are in ``keep`` stay, and so does the journal that holds them.
        """
        journal = self.journal
        if not journal.exists:
            return 0
        journal.require_known()
        self.forget_previous_boot()
        journal.update(phase="undoing")
        undone = 0
        ctx = self.context()
        with self.step("undo"):
            for group in _runs_of_one_kind([c for c in reversed(journal.changes) if c.key not in keep]):
                type(group[0]).undo_all(ctx, group)
                journal.drop(*group)
                undone += len(group)
        if journal.entries:
            journal.update(phase="applying", tree_digest="")  # only kept changes left: no driver is in place
        else:
            journal.remove()
        _remove_empty(self.host.firmware_backup_dir)
        log.info("undo_done", changes=undone)
        return undone

    # --- status -------------------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        """The journal and what the host says now, for `status` (read-only, also for unknown kinds)."""
        j = self.journal
        driver_modules = j.header.driver_modules
        loaded = self.modules.loaded(driver_modules)
        driver = [m for m in driver_modules if m in loaded]
        same_boot = j.header.boot_id in ("", self.boot_id)
        # After a reboot the kernel state journaled before it is gone: shown apart, never as still to undo.
        live = [e for e in j.entries if same_boot or not e.change.kernel_state]
        gone = [e for e in j.entries if not same_boot and e.change.kernel_state]
        return {
            "journal": str(j.path),
            "phase": j.phase or "none",
            "recipe": j.header.recipe,
            "tree": j.header.tree,
            "kernel": j.header.kernel,
            "same_boot": same_boot,
            "changes": [{"kind": e.change.kind, "status": e.status, **e.change.brief()} for e in live],
            "forgotten": [{"kind": e.change.kind, **e.change.brief()} for e in gone],
            "unknown_changes": [{"index": u.index, "kind": u.kind} for u in j.unknown],
            "loaded": {
                m: {"srcversion": loaded[m].srcversion, "refcount": loaded[m].refcount, "version": loaded[m].version}
                for m in driver
            },
            "firmware_path": read_firmware_path(self.host),
        }


def _runs_of_one_kind(changes: Sequence[HostChange]) -> list[list[HostChange]]:
    """Consecutive changes of the same kind, grouped: each group is undone by one call (one modprobe)."""
    groups: list[list[HostChange]] = []
    for change in changes:
        if groups and type(groups[-1][0]) is type(change):
            groups[-1].append(change)
        else:
            groups.append([change])
    return groups


def _remove_empty(folder: Path) -> None:
    """Remove ``folder`` and its parents up to the state folder's own, if empty (backups all restored)."""
    with contextlib.suppress(OSError):
        folder.rmdir()
        folder.parent.rmdir()
