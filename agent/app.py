"""The composition root: builds every component from the configuration and runs the commands."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from agent.config import GlobalConfig

if TYPE_CHECKING:
    import threading
    from pathlib import Path
    from typing import TextIO

    from agent.build.config import BuildConfig
    from agent.build.service import BuildResult
    from agent.discovery.node import NodeFacts
    from agent.errors import RecipeError
    from agent.lifecycle.commands import LifecycleCommands
    from agent.lifecycle.config import LifecycleConfig
    from agent.lifecycle.daemon import Daemon
    from agent.recipes.loader import RecipeSet
    from agent.recipes.model import Recipe
    from agent.support import Verdict
    from agent.tree import DriverTree


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
    """What the CLI calls; holds no state of its own beyond the configuration and the recipes it read."""

    def __init__(self, *, config: GlobalConfig) -> None:
        self.config = config
        self.host = config.host
        self._recipes: dict[str, Recipe] = {}

    def recipes(self) -> RecipeSet:
        from agent.recipes.loader import load_recipes

        return load_recipes([self.config.recipes_dir])

    def recipe(self, spec: str) -> Recipe:
        """A recipe by shipped name, or by path to a TOML file; each is read once per process."""
        if spec not in self._recipes:
            if spec.endswith(".toml") or "/" in spec:
                from pathlib import Path

                from agent.recipes.loader import load_recipe

                self._recipes[spec] = load_recipe(Path(spec))
            else:
                self._recipes[spec] = self.recipes().by_name(spec)
        return self._recipes[spec]

    def detect(self) -> NodeFacts:
        from agent.discovery.node import discover

        return discover(self.host)

    def check(self, recipe_spec: str | None = None, *, compat_fixes: bool = True) -> CheckResult:
        """Judge the node against one recipe, or every shipped recipe and pick the best; a release's
        verdict names the compat fixes its build needs, by probes of the node's kernel headers."""
        from agent.build.fixes import fixes_for_node
        from agent.discovery.node import discover
        from agent.support import best, judge

        if recipe_spec:
            recipes: tuple[Recipe, ...] = (self.recipe(recipe_spec),)
            errors: tuple[RecipeError, ...] = ()
        else:
            found = self.recipes()
            recipes, errors = found.recipes, found.errors
        facts = discover(self.host, driver_module=recipes[0].main_module if len(recipes) == 1 else "i915")
        verdicts = tuple(
            judge(facts.kernel, facts.os, facts.gpus, r, fixes=fixes_for_node(self.host, facts.kernel, r, compat_fixes))
            for r in recipes
        )
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

    def build(self, config: BuildConfig, *, progress: TextIO | None = None) -> BuildResult:
        """Build a driver tree (issue 3); SIGTERM/SIGINT stop it and leave nothing partial behind."""
        import os
        import signal
        import threading

        from agent.build.download import Fetcher, ProxySettings
        from agent.build.service import Builder
        from agent.host.runner import Runner

        stop = threading.Event()
        runner = Runner(stop=stop)
        proxies = ProxySettings.from_env(
            os.environ, http=config.http_proxy, https=config.https_proxy, no_proxy=config.no_proxy
        )
        fetcher = Fetcher(
            cache_dir=config.cache_dir,
            proxies=proxies,
            ca_bundle=config.ca_bundle,
            stop=stop,
            deadline=config.download_timeout,
        )
        builder = Builder(
            host=self.host,
            runner=runner,
            cache_dir=config.cache_dir,
            work_dir=config.work_dir,
            fetcher=fetcher,
            jobs=config.jobs,
            signing=config.signing,
            progress_stream=progress,
            compat_fixes=config.compat_fixes,
        )
        recipe = self.recipe(config.recipe)
        previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            return builder.build_result(
                recipe,
                config.kernel,
                config.out,
                headers=config.headers,
                source=config.source,
                source_sha256=config.source_sha256,
                firmware=config.firmware,
                firmware_sha256=config.firmware_sha256,
                firmware_files_url=config.firmware_files_url,
            )
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def lifecycle(
        self, config: LifecycleConfig, *, daemon: bool = False, stop: threading.Event | None = None
    ) -> LifecycleCommands:
        """run/load/unload/status (issue 4): every lifecycle component, given its collaborators by keyword."""
        import dataclasses
        import os
        import threading

        from agent.host.runner import Runner
        from agent.lifecycle.commands import LifecycleCommands
        from agent.lifecycle.engine import Lifecycle
        from agent.lifecycle.faults import FaultInjector
        from agent.lifecycle.firmware import Firmware
        from agent.lifecycle.journal import Journal
        from agent.lifecycle.labels import cluster_for
        from agent.lifecycle.lock import StateLock
        from agent.lifecycle.modules import Modules
        from agent.lifecycle.source import TreeSource
        from agent.lifecycle.verify import Kmsg, Verifier

        host = self.host
        if config.state_dir:
            host = dataclasses.replace(host, state_dir_name=config.state_dir.lstrip("/"))
        from agent.build.config import compat_fixes_from_env

        compat_fixes = compat_fixes_from_env(os.environ)  # validated before anything runs
        stop = stop or threading.Event()
        runner = Runner(stop=stop)
        # One-shot commands export no metrics: prometheus_client and http.server cost seconds on slow nodes.
        if daemon:
            from agent.metrics import Metrics

        metrics, kmsg = Metrics() if daemon else None, Kmsg(host.dev_kmsg)
        verifier = Verifier(host=host, kmsg=kmsg, stop=stop)
        engine = Lifecycle(
            host=host,
            journal=Journal(host.state_dir / "journal.json", root=host.root, faults=FaultInjector.from_env()),
            firmware=Firmware(host=host),
            # Its own runner, never stopped: SIGTERM must not kill the rmmod that answers it.
            modules=Modules(host=host, runner=Runner()),
            verifier=verifier,
            kmsg=kmsg,
            metrics=metrics,
        )

        def build(recipe: Recipe, kernel: str, out: Path) -> DriverTree:
            from agent.build.download import Fetcher, ProxySettings
            from agent.build.service import Builder

            fetcher = Fetcher(
                cache_dir=host.build_cache_dir,
                proxies=ProxySettings.from_env(os.environ),
                ca_bundle=config.ca_bundle,
                stop=stop,
            )
            builder = Builder(
                host=host, runner=runner, cache_dir=host.build_cache_dir, fetcher=fetcher, compat_fixes=compat_fixes
            )
            return builder.build(recipe, kernel, out, headers=host.resolve(host.kernel_headers_dir(kernel)))

        source = TreeSource(
            host=host, tree_dir=config.driver_tree, recipe_spec=config.recipe, find_recipe=self.recipe, build=build
        )

        def discover_facts() -> NodeFacts:
            from agent.discovery.node import discover

            return discover(host, use_udev=False, driver_module=self._main_module(config))

        def make_daemon() -> Daemon:
            from agent.health import HealthServer, Readiness
            from agent.lifecycle.daemon import Daemon, DaemonSettings
            from agent.lifecycle.upgrade import UpgradePolicy

            assert metrics is not None, "built with daemon=True"
            readiness = Readiness()
            return Daemon(
                lifecycle=engine,
                source=source,
                discover=discover_facts,
                metrics=metrics,
                readiness=readiness,
                cluster=cluster_for(config.node_name),
                health=HealthServer(config.listen, metrics, readiness),
                stop=stop,
                settings=DaemonSettings(
                    mode=config.mode,
                    on_stop=config.on_stop,
                    unload_deadline=config.unload_deadline,
                    upgrade=UpgradePolicy(
                        cordon=config.upgrade_cordon, evict=config.upgrade_evict, timeout=config.upgrade_timeout
                    ),
                ),
            )

        return LifecycleCommands(
            lifecycle=engine,
            source=source,
            discover=discover_facts,
            lock=StateLock(host.state_dir / "lock"),
            stop=stop,
            make_daemon=make_daemon,
            unload_deadline=config.unload_deadline,
        )

    def _main_module(self, config: LifecycleConfig) -> str:
        try:
            return self.recipe(config.recipe).main_module if config.recipe else "i915"
        except Exception:
            return "i915"
