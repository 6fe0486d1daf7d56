"""Where the driver tree comes from: the given tree when it is for this kernel, else one built into the cache."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

from agent.discovery.node import NodeFacts
from agent.errors import AgentError, UsageError
from agent.host.files import sha256_file
from agent.host.paths import HostPaths
from agent.lifecycle.engine import Target
from agent.lifecycle.preflight import check_supported, check_tree
from agent.logs import get_logger
from agent.recipes.model import Recipe
from agent.tree import MANIFEST, DriverTree, load_tree

log = get_logger(__name__)

BuildFn = Callable[[Recipe, str, Path], DriverTree]
RecipeFn = Callable[[str], Recipe]


class TreeSource:
    """Resolves (tree, recipe) for the running kernel; builds on the node only when no tree fits."""

    def __init__(
        self,
        *,
        host: HostPaths,
        tree_dir: Path | None,
        recipe_spec: str | None,
        find_recipe: RecipeFn,
        build: BuildFn | None,
    ) -> None:
        self.host = host
        self.tree_dir = tree_dir
        self.recipe_spec = recipe_spec
        self.find_recipe = find_recipe
        self.build = build

    def cached_tree_dir(self, recipe: Recipe, kernel: str) -> Path:
        """Keyed by the recipe's content too: a recipe re-pinned under the same name builds anew."""
        return self.host.build_cache_dir / "trees" / recipe.name / kernel / sha256_file(recipe.path)[:16]

    def resolve(self, facts: NodeFacts) -> tuple[Target, bool]:
        """The target for the node's kernel and whether it was built now.

        A node the recipe does not support is refused before anything is built (exit 3): the verdict comes
        first, so a build that would fail on an unsupported kernel is never started.
        """
        kernel = facts.kernel.release
        tree = self._given_tree(kernel)
        if tree is not None:
            recipe = self.find_recipe(self.recipe_spec or tree.manifest.recipe)
            return Target(tree, recipe), False
        if not self.recipe_spec:
            raise UsageError(
                f"no driver tree for kernel {kernel}"
                + (f" in {self.tree_dir}" if self.tree_dir else "")
                + ": give --driver-tree (built by `intel-gpu-agent build`) or --recipe to build one on this node"
            )
        recipe = self.find_recipe(self.recipe_spec)
        check_supported(facts, recipe)
        out = self.cached_tree_dir(recipe, kernel)
        cached = self._cached(out, recipe, kernel)
        if cached is not None:
            return Target(cached, recipe), False
        if self.build is None:
            raise UsageError(f"no driver tree for kernel {kernel} and building on the node is not available")
        log.info("driver_tree_building", recipe=recipe.name, kernel=kernel, out=str(out))
        built = self.build(recipe, kernel, out)
        for stale in out.parent.iterdir():  # trees of earlier pins of this recipe: never loaded again
            if stale != out and stale.is_dir():
                shutil.rmtree(stale, ignore_errors=True)
        return Target(built, recipe), True

    def _cached(self, out: Path, recipe: Recipe, kernel: str) -> DriverTree | None:
        """The tree built on this node earlier, if it is whole; a damaged one is removed to be rebuilt."""
        if not (out / MANIFEST).is_file():
            return None
        try:
            cached = load_tree(out)
            if cached.manifest.kernel != kernel or cached.manifest.recipe != recipe.name:
                raise UsageError(f"{out} holds {cached.manifest.recipe} for {cached.manifest.kernel}")
            check_tree(cached, recipe)
        except AgentError as e:
            log.warning("driver_tree_cache_damaged", tree=str(out), reason=str(e), action="rebuilding")
            shutil.rmtree(out, ignore_errors=True)
            return None
        log.info("driver_tree_cached", tree=str(out))
        return cached

    def _given_tree(self, kernel: str) -> DriverTree | None:
        """--driver-tree: a tree, or a folder of trees one per kernel (<dir>/<kernel>/manifest.json)."""
        if self.tree_dir is None:
            return None
        for candidate in (self.tree_dir, self.tree_dir / kernel):
            if (candidate / MANIFEST).is_file():
                tree = load_tree(candidate)
                if tree.manifest.kernel == kernel:
                    return tree
                log.info("driver_tree_other_kernel", tree=str(candidate), kernel=tree.manifest.kernel, running=kernel)
        if not self.recipe_spec and not self.tree_dir.exists():
            raise UsageError(f"--driver-tree {self.tree_dir} does not exist")
        return None
