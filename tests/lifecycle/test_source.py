"""Where the tree comes from: the given tree, one per kernel, or built once into the host cache."""

from __future__ import annotations

from pathlib import Path

import pytest
from lifecycle.fakes import KERNEL, make_tree, recipe

from agent.errors import UsageError
from agent.host.paths import HostPaths
from agent.lifecycle.source import TreeSource
from agent.recipes.model import Recipe
from agent.tree import DriverTree


def _source(tmp_path: Path, tree_dir: Path | None, spec: str | None, built: list[str]) -> TreeSource:
    def build(r: Recipe, kernel: str, out: Path) -> DriverTree:
        built.append(kernel)
        return make_tree(out, kernel=kernel)

    return TreeSource(
        host=HostPaths(tmp_path / "host"), tree_dir=tree_dir, recipe_spec=spec,
        find_recipe=lambda s: recipe(), build=build,
    )  # fmt: skip


def test_the_given_tree_for_the_running_kernel_is_used(tmp_path: Path) -> None:
    tree = make_tree(tmp_path / "tree")
    target, built = _source(tmp_path, tree.root, None, []).resolve(KERNEL)
    assert target.tree.root == tree.root and not built


def test_a_folder_of_trees_per_kernel(tmp_path: Path) -> None:
    make_tree(tmp_path / "trees" / KERNEL)
    make_tree(tmp_path / "trees" / "6.1.0-99-amd64", kernel="6.1.0-99-amd64")
    target, _ = _source(tmp_path, tmp_path / "trees", None, []).resolve(KERNEL)
    assert target.tree.manifest.kernel == KERNEL


def test_no_tree_for_this_kernel_builds_into_the_cache_once(tmp_path: Path) -> None:
    other = make_tree(tmp_path / "other", kernel="6.1.0-99-amd64")
    built: list[str] = []
    first, was_built = _source(tmp_path, other.root, "testgpu", built).resolve(KERNEL)
    assert was_built and built == [KERNEL]
    assert first.tree.root == tmp_path / "host/var/lib/intel-gpu-driver/cache/trees/testgpu-1.0" / KERNEL
    again, was_built = _source(tmp_path, other.root, "testgpu", built).resolve(KERNEL)
    assert not was_built and built == [KERNEL], "a restart never recompiles"
    assert again.tree.root == first.tree.root


def test_no_tree_and_no_recipe_says_what_to_give(tmp_path: Path) -> None:
    other = make_tree(tmp_path / "other", kernel="6.1.0-99-amd64")
    with pytest.raises(UsageError, match=r"give --driver-tree .* or --recipe"):
        _source(tmp_path, other.root, None, []).resolve(KERNEL)
