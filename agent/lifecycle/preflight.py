"""Checks before any host change: the node is supported, the tree is for its kernel, whole and loadable."""

from __future__ import annotations

from collections.abc import Collection

from agent.discovery.node import NodeFacts
from agent.errors import IntegrityError, UnsupportedHostError, UsageError
from agent.host.files import sha256_file
from agent.host.paths import HostPaths
from agent.lifecycle.firmware import check_tree_firmware
from agent.lifecycle.modules import in_tree_dependencies, load_sequence, node_modules
from agent.recipes.model import Recipe
from agent.support import UNSUPPORTED, judge
from agent.tree import DriverTree


def check_supported(facts: NodeFacts, recipe: Recipe) -> None:
    """An unsupported node (kernel, OS or GPUs) is refused before anything is built or changed (exit 3)."""
    verdict = judge(facts.kernel, facts.os, facts.gpus, recipe)
    if verdict.verdict == UNSUPPORTED:
        raise UnsupportedHostError(f"{recipe.name} does not support this node: " + "; ".join(verdict.reasons))


def check_tree(tree: DriverTree, recipe: Recipe) -> None:
    """Every module and firmware file of the tree is there with its manifest's sha256 (else exit 2)."""
    for module in tree.manifest.modules:
        path = tree.path_of(module.path)
        if not path.is_file():
            raise UsageError(f"driver tree {tree.root} lacks {module.path}; nothing was changed: rebuild it")
        if sha256_file(path) != module.sha256:
            raise IntegrityError(f"{path} does not have the manifest's sha256; nothing was changed: rebuild it")
    check_tree_firmware(tree, recipe)


def preflight(tree: DriverTree, recipe: Recipe, facts: NodeFacts) -> None:
    """Refuse before touching the host: unsupported node, wrong kernel, unsigned modules, damaged tree."""
    check_supported(facts, recipe)
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
    check_tree(tree, recipe)


def check_dependencies(host: HostPaths, tree: DriverTree, recipe: Recipe, loaded: Collection[str]) -> None:
    """The kernel's own modules the driver needs and that are not loaded exist on the node (else exit 3)."""
    wanted = [d for d in in_tree_dependencies(tree, load_sequence(recipe)) if d not in loaded]
    if not wanted:
        return
    available = node_modules(host, tree.manifest.kernel)
    missing = [d for d in wanted if d not in available]
    if missing:
        folder = host.as_host_path(host.kernel_modules_dir(tree.manifest.kernel))
        raise UnsupportedHostError(
            f"the driver needs the kernel's own {', '.join(missing)}, which {folder} does not have "
            "(modules.dep, modules.builtin); nothing was changed",
            hint=f"install the kernel's module packages (Ubuntu: linux-modules-extra-{tree.manifest.kernel})",
        )
