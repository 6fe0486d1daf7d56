"""The lifecycle engine: preflight, apply through the journal, verify, roll back, undo, status."""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent.discovery.node import NodeFacts
from agent.discovery.security import read_firmware_path
from agent.errors import AgentError, IntegrityError, LoadError, UnsupportedHostError, UsageError
from agent.host.files import read_optional, sha256_file
from agent.host.paths import HostPaths, module_key
from agent.lifecycle.firmware import FILE, PATH, Firmware, check_tree_firmware
from agent.lifecycle.journal import Journal
from agent.lifecycle.modules import LOADED, REMOVED, Modules, load_sequence, ours
from agent.lifecycle.verify import Kmsg, Verification, Verifier
from agent.logs import get_logger
from agent.recipes.model import Recipe
from agent.support import UNSUPPORTED, judge
from agent.tree import DriverTree

if TYPE_CHECKING:
    from agent.metrics import Metrics

log = get_logger(__name__)


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

    # --- checks before any host change -------------------------------------------------------
    def preflight(self, target: Target, facts: NodeFacts) -> None:
        """Refuse before touching the host: wrong kernel, damaged tree, unsigned modules, unsupported node."""
        tree, recipe = target.tree, target.recipe
        verdict = judge(facts.kernel, facts.os, facts.gpus, recipe)
        if verdict.verdict == UNSUPPORTED:
            raise UnsupportedHostError(f"{recipe.name} does not support this node: " + "; ".join(verdict.reasons))
        if tree.manifest.kernel != facts.kernel.release:
            raise UsageError(
                f"driver tree {tree.root} is for kernel {tree.manifest.kernel}, this node runs {facts.kernel.release}; "
                "give a tree built for this kernel, or a recipe to build one"
            )
        if facts.security.requires_signed_modules and not tree.manifest.signed:
            raise UnsupportedHostError(
                f"this kernel only loads signed modules (module signing enforced: module.sig_enforce="
                f"{'1' if facts.security.sig_enforce else '0'}, lockdown {facts.security.lockdown}) and the modules "
                f"in {tree.root} are not signed; nothing was changed",
                hint="build with --sign-key/--sign-cert and enroll the certificate (mokutil --import)",
            )
        for module in tree.manifest.modules:
            path = tree.path_of(module.path)
            if not path.is_file():
                raise UsageError(f"driver tree {tree.root} lacks {module.path}; nothing was changed: rebuild it")
            if sha256_file(path) != module.sha256:
                raise IntegrityError(f"{path} does not have the manifest's sha256; nothing was changed: rebuild it")
        check_tree_firmware(tree, recipe)

    # --- recovery -----------------------------------------------------------------------------
    def recover(self, target: Target | None) -> None:
        """Make the journal current: drop what a reboot undid; undo a different driver's changes."""
        journal = self.journal
        if not journal.exists:
            return
        if journal.header.get("boot_id") not in ("", None, self.boot_id):
            gone = journal.forget_kernel_state()
            journal.set(boot_id=self.boot_id, phase="applying")
            log.info("journal_from_previous_boot", dropped=[c.key for c in gone])
        if target is not None and journal.changes and journal.header.get("tree_digest") != target.digest:
            log.info("journal_other_driver", was=journal.header.get("tree_digest"), now=target.digest)
            self.undo()
        if journal.phase in ("applying", "undoing"):
            log.info("journal_recovering", phase=journal.phase, changes=len(journal.changes))

    def warm(self, target: Target) -> bool:
        """Everything already in place and matching (journal, modules, firmware): nothing to change."""
        j = self.journal
        if (
            j.phase != "applied"
            or j.header.get("tree_digest") != target.digest
            or j.header.get("boot_id") != self.boot_id
        ):
            return False
        sequence = [module_key(m) for m in load_sequence(target.recipe)]
        loaded = self.modules.loaded(sequence)
        mine = ours(target.tree)
        if any(loaded.get(m) is None or loaded[m].srcversion != mine.get(m) for m in sequence):
            return False
        if any(not _has_sha(c.data["path"], c.data["sha256"]) for c in j.of_kind(FILE)):
            return False
        return all(read_firmware_path(self.host) == c.data["value"] for c in j.of_kind(PATH))

    # --- apply --------------------------------------------------------------------------------
    def apply(self, target: Target, facts: NodeFacts) -> Outcome:
        """Preflight, recover, apply each change journaled first, verify; any failure rolls back and raises."""
        started = time.monotonic()
        # Logged before the first timed step: the logger's own start-up is not a step's duration.
        log.info("apply_started", recipe=target.recipe.name, tree=str(target.tree.root), kernel=facts.kernel.release)
        with self.step("preflight"):
            self.preflight(target, facts)
        self.recover(target)
        if self.warm(target):
            with self.step("verify"):
                verification = self.verifier.verify(target.tree, target.recipe, self.journal.header.get("kmsg_mark"))
            if verification.ok:
                log.info("warm_restart", changes=0)
                return Outcome(0, True, verification, time.monotonic() - started)
        try:
            changes, verification = self._apply(target)
        except AgentError as e:
            self.rollback(e)
            raise
        return Outcome(changes, False, verification, time.monotonic() - started)

    def _apply(self, target: Target) -> tuple[int, Verification]:
        tree, recipe, journal = target.tree, target.recipe, self.journal
        journal.begin(
            phase="applying",
            mode="load",
            boot_id=self.boot_id,
            tree=str(tree.root),
            tree_digest=target.digest,
            recipe=recipe.name,
            kernel=tree.manifest.kernel,
            driver_modules=target.driver_modules,
        )
        changes = 0
        with self.step("firmware"):
            placement = self.firmware.choose(journal)
            folder = placement.folder
            if placement.set_path and not self.firmware.set_path(journal):
                folder = self.host.lib_firmware_updates
            elif placement.set_path:
                changes += 1
            if placement.reason:
                log.info("firmware_placement", folder=self.host.as_host_path(folder), reason=placement.reason)
            changes += self.firmware.place(journal, tree, folder)
        with self.step("remove_in_tree"):
            changes += self.modules.remove_replaced(journal, recipe, tree)
        mark = self.kmsg.mark()
        with self.step("modprobe"):
            loads = self.modules.load(journal, tree, recipe)
        changes += loads
        if loads or "kmsg_mark" not in journal.header:
            journal.set(kmsg_mark=mark)
        with self.step("verify"):
            verification = self.verifier.verify(tree, recipe, journal.header["kmsg_mark"])
        if not verification.ok:
            raise LoadError(f"{recipe.name} loaded but did not verify: " + "; ".join(verification.problems))
        journal.settle(phase="applied")
        return changes, verification

    def rollback(self, cause: AgentError) -> None:
        """Undo after a failed apply; a failing undo is logged and leaves the journal for the next start."""
        log.warning("rolling_back", reason=str(cause), changes=len(self.journal.changes))
        try:
            self.undo()
        except AgentError as e:
            log.error("rollback_incomplete", error=str(e), left=[c.key for c in self.journal.changes])

    # --- monitor mode -------------------------------------------------------------------------
    def ensure_firmware_path(self) -> bool:
        """Monitor mode: point the firmware path at /var/lib/firmware when it is empty or ours."""
        journal = self.journal
        placement = self.firmware.choose(journal)
        if not placement.set_path:
            return read_firmware_path(self.host) == self.firmware.our_path
        if not journal.exists:
            journal.begin(phase="applying", mode="monitor", boot_id=self.boot_id, driver_modules=[])
        ok = self.firmware.set_path(journal)
        journal.set(phase="applied")
        return ok

    # --- undo ---------------------------------------------------------------------------------
    def undo(self) -> int:
        """Walk the journal backwards, reverting and dropping each change; busy modules raise ``BusyError``."""
        journal = self.journal
        if not journal.exists:
            return 0
        driver_modules = list(journal.header.get("driver_modules", []))
        journal.set(phase="undoing")
        undone = 0
        with self.step("undo"):
            for change in reversed(list(journal.changes)):
                if change.kind in (LOADED, REMOVED):
                    self.modules.undo(change, driver_modules)
                else:
                    self.firmware.undo(change)
                journal.drop(change)
                undone += 1
        journal.remove()
        shutil.rmtree(self.host.firmware_backup_dir, ignore_errors=True)
        log.info("undo_done", changes=undone)
        return undone

    # --- status -------------------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        """The journal and what the host says now, for `status`."""
        j = self.journal
        driver_modules = j.header.get("driver_modules", [])
        loaded = self.modules.loaded(driver_modules)
        driver = [m for m in driver_modules if m in loaded]
        return {
            "journal": str(j.path),
            "phase": j.phase or "none",
            "recipe": j.header.get("recipe", ""),
            "tree": j.header.get("tree", ""),
            "kernel": j.header.get("kernel", ""),
            "same_boot": j.header.get("boot_id", self.boot_id) == self.boot_id,
            "changes": [{"kind": c.kind, "status": c.status, **_brief(c.data)} for c in j.changes],
            "loaded": {
                m: {"srcversion": loaded[m].srcversion, "refcount": loaded[m].refcount, "version": loaded[m].version}
                for m in driver
            },
            "firmware_path": read_firmware_path(self.host),
        }


def _has_sha(path: str, sha: str) -> bool:
    p = Path(path)
    return p.is_file() and sha256_file(p) == sha


def _brief(data: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in data.items() if k in ("path", "module", "value", "previous", "loaded")}
