"""The kernel's own modules the driver needs (drm for the real i915): loaded first when missing, and only
what was loaded for the driver and is unused is taken out again (issue 10, item 3)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from lifecycle.fakes import KERNEL, make_node, snapshot

from agent.errors import UnsupportedHostError


def test_a_fresh_node_gets_the_kernels_own_drm_loaded_first_and_taken_out_after(tmp_path: Path) -> None:
    """A fresh boot (or i915 blacklisted): nothing loaded drm, which the driver needs."""
    node = make_node(tmp_path, in_tree_i915=False, in_tree_deps=("drm",))
    before = snapshot(node.host)
    assert "drm" not in before["modules"]

    outcome = node.engine().apply(node.target, node.facts())

    assert outcome.verification.ok
    in_tree = [c for c in node.kernel.calls if c[0] == "modprobe" and "-S" not in c]
    assert in_tree == [["modprobe", "-d", str(node.host.root), "drm"]], "the node's own module folder"
    assert snapshot(node.host)["modules"]["drm"][1] == ["testgpu"]
    journal = json.loads((node.host.paths.state_dir / "journal.json").read_text())
    (deps,) = [c for c in journal["changes"] if c["kind"] == "dependencies_loaded"]
    assert deps["data"] == {"modules": ["drm"], "candidates": ["drm"], "before": [], "loaded": ["drm"]}

    node.engine().undo()
    assert snapshot(node.host) == before, "drm was not loaded before: it goes again"


def test_a_dependency_loaded_before_stays_loaded(tmp_path: Path) -> None:
    """The in-tree i915 had loaded drm: it is not ours to load or to take out."""
    node = make_node(tmp_path, in_tree_i915=True, in_tree_deps=("drm",))
    before = snapshot(node.host)
    node.engine().apply(node.target, node.facts())
    kinds = [c["kind"] for c in json.loads((node.host.paths.state_dir / "journal.json").read_text())["changes"]]
    assert "dependencies_loaded" not in kinds
    node.engine().undo()
    assert snapshot(node.host) == before


def test_a_dependency_something_else_uses_by_now_is_left_loaded(tmp_path: Path) -> None:
    node = make_node(tmp_path, in_tree_i915=False, in_tree_deps=("drm",))
    node.engine().apply(node.target, node.facts())
    node.host.module("other_gpu")
    node.kernel.hold("drm", "other_gpu")

    node.engine().undo()

    modules = snapshot(node.host)["modules"]
    assert "testgpu" not in modules and "drm" in modules, "kept for its other user, no busy error"
    assert not (node.host.paths.state_dir / "journal.json").exists()


def test_a_dependency_the_node_lacks_is_refused_before_any_change(tmp_path: Path) -> None:
    node = make_node(tmp_path, in_tree_i915=False, in_tree_deps=("drm",))
    (node.host.root / f"lib/modules/{KERNEL}/modules.dep").write_text("kernel/drivers/gpu/drm/i915/i915.ko:\n")
    before = snapshot(node.host)
    with pytest.raises(UnsupportedHostError, match=r"needs the kernel's own drm.*linux-modules-extra") as caught:
        node.engine().apply(node.target, node.facts())
    assert caught.value.exit_code == 3
    assert snapshot(node.host) == before and node.kernel.calls == []


def test_without_the_dependency_step_the_fake_kernel_refuses_like_the_real_one(tmp_path: Path) -> None:
    """The fake kernel is honest: loading the driver with drm missing fails with Unknown symbol."""
    node = make_node(tmp_path, in_tree_i915=False, in_tree_deps=("drm",))
    from agent.errors import CommandError

    with pytest.raises(CommandError, match="Unknown symbol"):
        node.kernel.run(["modprobe", "-d", str(node.target.tree.modules_base), "-S", KERNEL, "testgpu"])
