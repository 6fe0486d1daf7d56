"""The composition root: builds every component from the configuration and runs the commands."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from agent.config import GlobalConfig
from agent.discovery.node import NodeFacts, discover

if TYPE_CHECKING:
    from typing import TextIO

    from agent.build.config import BuildConfig
    from agent.build.service import BuildResult
    from agent.errors import RecipeError
    from agent.recipes.loader import RecipeSet
    from agent.recipes.model import Recipe
    from agent.support import Verdict


@dataclass(frozen=True)
class CheckResult:
    """The node's facts, each release's verdict, the chosen release and notes on signing policy."""

    facts: NodeFacts
    verdicts: tuple[Verdict, ...]
    chosen: Verdict | None
    why: str
    notes: tuple[str, ...]
    recipe_errors: tuple[RecipeError, ...]

    @property
    def supported(self) -> bool:
        return self.chosen is not None and self.chosen.ok


class App:
    """What the CLI calls; holds no state of its own beyond the configuration."""

    def __init__(self, *, config: GlobalConfig) -> None:
        self.config = config
        self.host = config.host

    def recipes(self) -> RecipeSet:
        from agent.recipes.loader import load_recipes

        return load_recipes([self.config.recipes_dir])

    def recipe(self, spec: str) -> Recipe:
        """A recipe by shipped name, or by path to a TOML file."""
        if spec.endswith(".toml") or "/" in spec:
            from pathlib import Path

            from agent.recipes.loader import load_recipe

            return load_recipe(Path(spec))
        return self.recipes().by_name(spec)

    def detect(self) -> NodeFacts:
        return discover(self.host)

    def check(self, recipe_spec: str | None = None) -> CheckResult:
        """Judge the node against one recipe, or every shipped recipe and pick the best."""
        from agent.support import best, judge

        if recipe_spec:
            recipes: tuple[Recipe, ...] = (self.recipe(recipe_spec),)
            errors: tuple[RecipeError, ...] = ()
        else:
            found = self.recipes()
            recipes, errors = found.recipes, found.errors
        facts = discover(self.host, driver_module=recipes[0].main_module if len(recipes) == 1 else "i915")
        verdicts = tuple(judge(facts.kernel, facts.os, facts.gpus, r) for r in recipes)
        chosen, why = best(verdicts, recipes)
        notes = []
        if facts.security.requires_signed_modules:
            notes.append(
                "this kernel only loads signed modules (module.sig_enforce or lockdown): build with "
                "--sign-key/--sign-cert and enroll the certificate (mokutil --import), or the load fails "
                "with 'Key was rejected by service'"
            )
        elif facts.security.secure_boot == "enabled":
            notes.append("Secure Boot is on: unsigned modules taint the kernel; sign them with --sign-key/--sign-cert")
        if not facts.kernel.headers:
            notes.append(
                f"kernel headers for {facts.kernel.release} are not installed: building on this node needs "
                f"linux-headers-{facts.kernel.release} (or use a prebuilt driver image)"
            )
        return CheckResult(facts, verdicts, chosen, why, tuple(notes), errors)

    def build(self, config: BuildConfig
