"""Compat fixes: which of a recipe's own patches the target kernel's headers call for, and applying them.

A fix is chosen by its probe of the headers (DESIGN.md decision 14), never by a version string. The
plan is part of the build's inputs: turning fixes off, or headers that answer a probe differently,
make another tree.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from agent.build.patches import FilePatch, changed_files, parse_patch, write_files
from agent.build.probes import answer
from agent.errors import IntegrityError, UsageError
from agent.tree import AppliedFix

if TYPE_CHECKING:
    from agent.build.headers import KernelHeaders
    from agent.discovery.kernel import KernelInfo
    from agent.host.paths import HostPaths
    from agent.recipes.model import CompatFix, Recipe
    from agent.support import CompatFixes

OFF = "off"


@dataclass(frozen=True)
class FixDecision:
    """One fix and what the headers said about it."""

    fix: CompatFix
    needed: bool
    evidence: str


@dataclass(frozen=True)
class FixPlan:
    """The recipe's fixes judged against one kernel's headers, and whether fixes are turned on."""

    decisions: tuple[FixDecision, ...] = ()
    enabled: bool = True

    @property
    def applied(self) -> tuple[FixDecision, ...]:
        """The fixes the build applies: needed, and fixes are on."""
        return tuple(d for d in self.decisions if d.needed) if self.enabled else ()

    @property
    def withheld(self) -> tuple[FixDecision, ...]:
        """Fixes the kernel needs but --no-compat-fixes turned off (named when the build then fails)."""
        return () if self.enabled else tuple(d for d in self.decisions if d.needed)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(d.fix.name for d in self.applied)

    def digest_value(self) -> str:
        """What the inputs digest records: the applied fixes by name and pin, or that fixes are off."""
        if not self.enabled:
            return OFF
        return ",".join(f"{d.fix.name}:{d.fix.sha256}" for d in self.applied)


def header_roots(headers: KernelHeaders) -> tuple[Path, ...]:
    """Where the probes look: the build folder (generated headers), then the kernel source tree."""
    return (headers.path, *headers.source_dirs)


def plan_fixes(recipe: Recipe, headers: KernelHeaders, *, enabled: bool = True) -> FixPlan:
    """Answer every fix's probe against ``headers`` (also when fixes are off, to say what was withheld)."""
    roots = header_roots(headers)
    decisions = []
    for fix in recipe.compat_fixes:
        found = answer(fix.probe, roots)
        decisions.append(FixDecision(fix=fix, needed=found.holds, evidence=found.evidence))
    return FixPlan(decisions=tuple(decisions), enabled=enabled)


def patch_file(recipe: Recipe, fix: CompatFix) -> Path:
    """The fix's patch, relative to the recipe's folder (build/fixes/ beside build/releases/)."""
    return Path(recipe.resolve(fix.patch))


def read_patch(recipe: Recipe, fix: CompatFix) -> tuple[FilePatch, ...]:
    """The fix's patch, checked against the recipe's sha256 before it is parsed."""
    import hashlib

    path = patch_file(recipe, fix)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise UsageError(
            f"recipe {recipe.path}: compat fix {fix.name}: cannot read its patch {path} ({e.strerror or e})",
            hint="the fixes folder (build/fixes) must be installed beside the recipes (build/releases)",
        ) from e
    actual = hashlib.sha256(data).hexdigest()
    if actual != fix.sha256:
        raise IntegrityError(
            f"compat fix {fix.name}: {path} has sha256 {actual}, the recipe {recipe.name} pins {fix.sha256}: "
            "refusing to apply it",
            hint="restore the shipped patch, or update the recipe's sha256 if the patch was changed on purpose",
        )
    return parse_patch(data.decode("utf-8", errors="surrogateescape"), source=str(path))


def apply_fixes(plan: FixPlan, recipe: Recipe, tree: Path) -> tuple[AppliedFix, ...]:
    """Apply the plan's fixes to the build copy ``tree``: every one of them, or (on any error) none."""
    pending: dict[Path, str] = {}
    records = []
    for decision in plan.applied:
        patches = read_patch(recipe, decision.fix)
        before = set(pending)
        pending = changed_files(patches, tree, name=decision.fix.name, pending=pending)
        touched = sorted({p.path for p in patches} | {p.relative_to(tree).as_posix() for p in set(pending) - before})
        records.append(
            AppliedFix(
                name=decision.fix.name,
                sha256=decision.fix.sha256,
                files=tuple(touched),
                probe=decision.fix.probe.describe(),
                evidence=decision.evidence,
            )
        )
    write_files(pending)
    return tuple(records)


def describe(decisions: Sequence[FixDecision]) -> str:
    """'a, b' for messages."""
    return ", ".join(d.fix.name for d in decisions)


def fixes_for_node(host: HostPaths, kernel: KernelInfo, recipe: Recipe, enabled: bool) -> CompatFixes:
    """What `check` says about a release's fixes on this node: probes of its own kernel's headers."""
    from agent.build.headers import find_headers
    from agent.errors import AgentError
    from agent.support import CompatFixes

    if not recipe.compat_fixes:
        return CompatFixes(enabled=enabled)
    try:
        plan = plan_fixes(recipe, find_headers(host, kernel.release), enabled=enabled)
    except AgentError as e:
        return CompatFixes(enabled=enabled, unknown=e.message)
    return CompatFixes(needed=tuple(d.fix.name for d in plan.decisions if d.needed), enabled=enabled)
