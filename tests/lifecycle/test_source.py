"""Where the tree comes from: the given tree, one per kernel, or built once into the host cache."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from lifecycle.fakes import KERNEL, RECIPE, debian_node, make_tree, recipe

from agent.discovery.node import NodeFacts, discover
from agent.errors import UnsupportedHostError, UsageError
from agent.host.paths import HostPaths
from agent.lifecycle.source import TreeSource
from agent.recipes.loader import load_recipe
from agent.recipes.model import Recipe
from agent.tree import DriverTree


def _facts(tmp_path: Path, *, gpu: bool = True) -> NodeFacts:
    host = tmp_path / "host"
    if not host.exists():
        debian_node(host, gpu=gpu)
    return discover(HostPaths(host), use_udev=False, driver_module="testgpu")


def _source(
    tmp_path: Path, tree_dir: Path | None, spec: str | None, built: list[str], the_recipe: Recipe | None = None
) -> TreeSource:
    def build(r: Recipe, kernel: str, out: Path) -> DriverTree:
        built.append(kernel)
        return make_tree(out, kernel=kernel)

    return TreeSource(
        host=HostPaths(tmp_path / "host"), tree_dir=tree_dir, recipe_spec=spec,
        find_recipe=lambda s: the_recipe or recipe(), build=build,
    )  # fmt: skip


def test_the_given_tree_for_the_running_kernel_is_used(tmp_path: Path) -> None:
    tree = make_tree(tmp_path / "tree")
    target, built = _source(tmp_path, tree.root, None, []).resolve(_facts(tmp_path))
    assert target.tree.root == tree.root and not built


def test_a_folder_of_trees_per_kernel(tmp_path: Path) -> None:
    make_tree(tmp_path / "trees" / KERNEL)
    make_tree(tmp_path / "trees" / "6.1.0-99-amd64", kernel="6.1.0-99-amd64")
    target, _ = _source(tmp_path, tmp_path / "trees", None, []).resolve(_facts(tmp_path))
    assert target.tree.manifest.kernel == KERNEL


def test_no_tree_for_this_kernel_builds_into_the_cache_once(tmp_path: Path) -> None:
    other = make_tree(tmp_path / "other", kernel="6.1.0-99-amd64")
    built: list[str] = []
    facts = _facts(tmp_path)
    first, was_built = _source(tmp_path, other.root, "testgpu", built).resolve(facts)
    assert was_built and built == [KERNEL]
    assert first.tree.root.parent == tmp_path / "host/var/lib/intel-gpu-driver/cache/trees/testgpu-1.0" / KERNEL
    again, was_built = _source(tmp_path, other.root, "testgpu", built).resolve(facts)
    assert not was_built and built == [KERNEL], "a restart never recompiles"
    assert again.tree.root == first.tree.root


def test_no_tree_and_no_recipe_says_what_to_give(tmp_path: Path) -> None:
    other = make_tree(tmp_path / "other", kernel="6.1.0-99-amd64")
    with pytest.raises(UsageError, match=r"give --driver-tree .* or --recipe"):
        _source(tmp_path, other.root, None, []).resolve(_facts(tmp_path))


def test_an_unsupported_node_is_refused_before_anything_is_built(tmp_path: Path) -> None:
    """F10: on a node with no GPU, `load --recipe` compiled the driver first, then exited 3."""
    built: list[str] = []
    with pytest.raises(UnsupportedHostError, match="no Intel data-center GPU") as caught:
        _source(tmp_path, None, "testgpu", built).resolve(_facts(tmp_path, gpu=False))
    assert caught.value.exit_code == 3
    assert built == [], "no build was started"


def test_a_recipe_re_pinned_under_the_same_name_is_built_anew(tmp_path: Path) -> None:
    """F6: the cache was keyed by recipe name and kernel alone: a new pin was never built."""
    facts = _facts(tmp_path)
    built: list[str] = []
    first, _ = _source(tmp_path, None, "testgpu", built).resolve(facts)
    repinned = tmp_path / "testgpu.toml"
    repinned.write_text(RECIPE.read_text() + "\n# re-pinned\n")
    second, was_built = _source(tmp_path, None, "testgpu", built, load_recipe(repinned)).resolve(facts)
    assert was_built and built == [KERNEL, KERNEL]
    assert second.tree.root != first.tree.root
    assert not first.tree.root.exists(), "the old pin's tree is pruned once the new one is built"


def test_a_damaged_cached_tree_is_rebuilt_not_a_permanent_failure(tmp_path: Path) -> None:
    """F6: a corrupt cache tree failed the node for good ("rebuild it", which could not be done)."""
    facts = _facts(tmp_path)
    built: list[str] = []
    first, _ = _source(tmp_path, None, "testgpu", built).resolve(facts)
    (first.tree.root / first.tree.manifest.modules[0].path).write_bytes(b"bit rot")
    again, was_built = _source(tmp_path, None, "testgpu", built).resolve(facts)
    assert was_built and built == [KERNEL, KERNEL]
    assert again.tree.root == first.tree.root
    shutil.rmtree(again.tree.root / "firmware")
    _, was_built = _source(tmp_path, None, "testgpu", built).resolve(facts)
    assert was_built, "missing firmware in the cache is damage too"
