"""A driver change in place: tree A loaded, tree B wanted: A out (never forced), B in and verified,
or A back from its kept copy; a held driver is refused before anything is touched (issue 12, item 2)."""

from __future__ import annotations

import json

import pytest
from lifecycle.fakes import Node, make_tree, snapshot, srcversion

from agent.lifecycle.engine import Target
from agent.lifecycle.modules import BusyError
from agent.lifecycle.switch import RolledBackError, switch


def _b(node: Node) -> Target:
    return Target(make_tree(node.tmp / "tree-b", build="b"), node.target.recipe)


def _loaded_build(node: Node) -> str | None:
    module = node.host.root / "sys/module/testgpu/srcversion"
    if not module.exists():
        return None
    value = module.read_text().strip()
    return next((b for b in ("tree", "b") if srcversion("testgpu", b) == value), value)


def test_a_new_tree_replaces_the_loaded_one_and_undo_restores_the_node(node: Node) -> None:
    before = snapshot(node.host)
    node.engine().apply(node.target, node.facts())
    assert _loaded_build(node) == "tree"

    outcome = switch(node.engine(), _b(node), node.facts())

    assert outcome.verification.ok and _loaded_build(node) == "b"
    journal = json.loads((node.host.paths.state_dir / "journal.json").read_text())
    assert "tree_kept" not in [c["kind"] for c in journal["changes"]], "the old copy is dropped once B verified"
    staged = sorted(p.name for p in node.host.paths.staged_trees_dir.iterdir())
    assert len(staged) == 1, "only B's staged tree is left"
    node.engine().undo()
    assert snapshot(node.host) == before, "the in-tree i915 of before A is back, nothing of A or B left"


def test_a_held_driver_is_refused_before_anything_is_touched(node: Node) -> None:
    node.engine().apply(node.target, node.facts())
    node.kernel.use("testgpu")  # a process holds /dev/testgpu
    state, calls = snapshot(node.host), len(node.kernel.calls)

    with pytest.raises(BusyError):
        switch(node.engine(), _b(node), node.facts())

    assert snapshot(node.host) == state and len(node.kernel.calls) == calls, "A stays loaded and working"
    assert _loaded_build(node) == "tree"


def test_a_new_tree_that_fails_verification_rolls_back_to_the_old_one(node: Node) -> None:
    node.engine().apply(node.target, node.facts())
    loaded = snapshot(node.host)
    b = _b(node)
    node.kernel.broken_builds.add(b.tree.manifest.inputs_digest)

    with pytest.raises(RolledBackError, match=r"testgpu-1\.0 is loaded again") as caught:
        switch(node.engine(), b, node.facts())

    assert caught.value.exit_code == 5 and "Unknown symbol a_symbol_this_build_needs" in str(caught.value)
    assert _loaded_build(node) == "tree", "A, loaded again from its kept copy"
    assert snapshot(node.host) == loaded
    assert len(list(node.host.paths.staged_trees_dir.iterdir())) == 1, "A's staged tree, no kept copy"
    assert node.engine().warm(node.target), "and a restart with A adopts it unchanged"


def test_a_switch_with_nothing_loaded_is_a_plain_apply(node: Node) -> None:
    assert switch(node.engine(), _b(node), node.facts()).verification.ok
    assert _loaded_build(node) == "b"
