"""Replacing the loaded driver by another in place: the old one out (never forced), the new one in and
verified, or the old one back from the copy kept aside: never half done."""

from __future__ import annotations

from agent.discovery.node import NodeFacts
from agent.errors import AgentError, LoadError
from agent.lifecycle.changes.tree_kept import TreeKept
from agent.lifecycle.changes.tree_staged import RECIPE, TreeStaged
from agent.lifecycle.engine import Lifecycle, Outcome, Target
from agent.lifecycle.preflight import check_dependencies, preflight
from agent.logs import get_logger
from agent.recipes.loader import load_recipe
from agent.tree import load_tree

log = get_logger(__name__)


class RolledBackError(LoadError):
    """The new driver did not load or verify; the one it was to replace is loaded again (exit 5)."""


def switch(engine: Lifecycle, new: Target, facts: NodeFacts) -> Outcome:
    """Put ``new`` in place of the driver the journal has loaded; a plain apply when there is none.

    Everything that can refuse is asked before the old driver is touched: the new tree's preflight, and
    whether anything holds the old driver (``BusyError``, the old one stays loaded and working).
    """
    old = engine.current()
    if old is None or old.digest == new.digest:
        return engine.apply(new, facts)
    preflight(new.tree, new.recipe, facts)
    check_dependencies(engine.host, new.tree, new.recipe, engine.modules.loaded())
    blocker = engine.unload_blocker()
    if blocker is not None:
        raise blocker
    log.info("driver_switch_started", was=old.recipe.name, now=new.recipe.name)
    (staged,) = engine.journal.of_kind(TreeStaged)[:1]
    kept = TreeKept(base=f"{staged.base}-kept", source=staged.base)
    engine.make(kept)
    keep = frozenset({kept.key})
    try:
        engine.undo(keep=keep)
        outcome = engine.apply(new, facts, keep=keep)
    except AgentError as failed:
        base = engine.host.from_host_path(kept.base)
        again = Target(load_tree(base), load_recipe(base / RECIPE))
        try:
            engine.apply(again, facts, keep=keep)
        except AgentError as also:
            _drop(engine, kept)
            raise LoadError(
                f"{new.recipe.name} did not load ({failed}), and {old.recipe.name} could not be loaded back ({also})",
                hint="the node has no driver of ours now; the next start tries again",
            ) from failed
        _drop(engine, kept)
        log.warning("driver_switch_rolled_back", was=old.recipe.name, failed=new.recipe.name, reason=str(failed))
        raise RolledBackError(
            f"{new.recipe.name} did not load or verify ({failed}); {old.recipe.name} is loaded again"
        ) from failed
    _drop(engine, kept)
    log.info("driver_switch_done", was=old.recipe.name, now=new.recipe.name)
    return outcome


def _drop(engine: Lifecycle, kept: TreeKept) -> None:
    """The kept copy is no longer needed: remove it and its journal entry."""
    kept.undo(engine.context())
    engine.journal.drop(kept)
