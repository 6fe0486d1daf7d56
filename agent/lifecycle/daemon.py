"""The `run` daemon: detect → check → plan → apply → verify → ready → wait → SIGTERM → undo or hand over → exit.

Stopping is not uninstalling: in a cluster, SIGTERM unloads only when the cluster wants the driver gone
(its DaemonSet deleted, the node out of scope); a restart or rolling update hands the loaded driver
over to the next agent, which adopts it without a change (``--on-stop``).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from agent.discovery.node import NodeFacts
from agent.errors import AgentError, BuildError, StopRequestedError, TransientError, UnsupportedHostError
from agent.health import HealthServer, Readiness
from agent.kube.cluster import Cluster, NodeState, Wanted
from agent.lifecycle.engine import Lifecycle, Target
from agent.lifecycle.holders import Holder
from agent.lifecycle.modules import BusyError
from agent.lifecycle.source import TreeSource
from agent.lifecycle.switch import RolledBackError
from agent.lifecycle.upgrade import Upgrade, UpgradeBlockedError, UpgradePolicy
from agent.logs import get_logger
from agent.metrics import Metrics

log = get_logger(__name__)

LOAD = "load"
MONITOR = "monitor"
# --on-stop: unload always, keep always (hand over), or ask the cluster (outside one: unload).
ON_STOP = ("auto", "unload", "keep")
# States published on the node (label, condition, event); the others are the process's own.
PUBLISHED = ("loading", "ready", "upgrading", "unsupported", "failed", "blocked", "unloaded")


@dataclass(frozen=True)
class DaemonSettings:
    """How the daemon behaves: mode, unload deadline and its retry pacing."""

    mode: str = LOAD
    on_stop: str = "auto"
    unload_deadline: float = 60.0
    retry_interval: float = 1.0
    blocked_retry: float = 30.0
    monitor_interval: float = 10.0
    upgrade: UpgradePolicy = field(default_factory=UpgradePolicy)
    # After ready: how long the device plugin may take to advertise the GPUs, and how often to look.
    allocatable_deadline: float = 300.0
    allocatable_interval: float = 10.0


class Daemon:
    """Runs the lifecycle until ``stop`` is set; the exit code follows DESIGN.md decision 7."""

    def __init__(
        self,
        *,
        lifecycle: Lifecycle,
        source: TreeSource,
        discover: Callable[[], NodeFacts],
        metrics: Metrics,
        readiness: Readiness,
        cluster: Cluster,
        health: HealthServer | None,
        stop: threading.Event,
        settings: DaemonSettings,
    ) -> None:
        self.lifecycle = lifecycle
        self.source = source
        self.discover = discover
        self.metrics = metrics
        self.readiness = readiness
        self.cluster = cluster
        self.health = health
        self.stop = stop
        self.settings = settings
        self.target: Target | None = None
        self.upgrade = Upgrade(
            lifecycle=lifecycle, cluster=cluster, policy=settings.upgrade, stop=stop, on_state=self._state
        )

    def run(self) -> int:
        """Bring the node up, wait for the stop event, put the node back; the process exit code."""
        if self.health is not None:
            self.health.start()
        started = time.monotonic()
        try:
            if self.settings.mode == MONITOR:
                self._monitor()
            else:
                self._bring_up(started)
                self._watch_allocatable()
                self.stop.wait()
            return self._shut_down()
        finally:
            if self.health is not None:
                self.health.stop()

    # --- states -------------------------------------------------------------------------------
    def _state(self, state: str, reason: str, *, ready: bool = False) -> None:
        self.metrics.set_state(state)
        self.readiness.set(ready, reason)
        self.metrics.journal_changes.set(len(self.lifecycle.journal.changes))
        if state in PUBLISHED:
            self.cluster.publish(NodeState(state, reason, ready=ready))

    def _export_holders(self, holders: Sequence[Holder], *, blocked: bool = True) -> None:
        self.metrics.holder.clear()
        for h in holders:
            self.metrics.holder.labels(kind=h.kind, name=h.name[:60], pid=str(h.pid or ""), pod=h.pod_uid).set(1)
        self.metrics.holders.set(sum(1 for h in holders if h.kind == "process"))
        self.metrics.unload_blocked.set(1 if blocked else 0)

    # --- load mode ----------------------------------------------------------------------------
    def _bring_up(self, started: float) -> None:
        """Load and verify; an unsupported node or a failed build stays up, not ready (no crash loop)."""
        while not self.stop.is_set():
            self._state("loading", "loading the driver")
            try:
                facts = self.discover()
                self.metrics.observe_node(facts)
                self.target, _built = self.source.resolve(facts)
                current = self.lifecycle.current()
                if current is not None and current.digest != self.target.digest:
                    outcome = self.upgrade.run(current, self.target, facts)
                else:
                    outcome = self.lifecycle.apply(self.target, facts)
            except UnsupportedHostError as e:
                log.error("node_unsupported", reason=str(e))
                self._state("unsupported", str(e))
                return
            except BusyError as e:
                log.warning("load_blocked", reason=str(e), holders=[h.describe() for h in e.holders])
                self._export_holders(e.holders)
                self._state("blocked", str(e))
                self.stop.wait(self.settings.blocked_retry)
                continue
            except UpgradeBlockedError as e:
                log.warning("upgrade_blocked", reason=str(e), pods=[f"{p.namespace}/{p.name}" for p in e.pods])
                self._export_holders(e.holders)
                self._state("blocked", str(e))
                self.stop.wait(self.settings.blocked_retry)
                continue
            except RolledBackError as e:
                # The old driver is loaded and verified again: the GPUs keep working, the failure is named.
                log.error("upgrade_rolled_back", reason=str(e))
                self.target = self.lifecycle.current()
                self._state("ready", f"upgrade failed, the previous driver is loaded again: {e}", ready=True)
                return
            except StopRequestedError:
                return
            except BuildError as e:
                self.metrics.build_failures.inc()
                log.error("build_failed", reason=str(e))
                self._state("failed", str(e))
                return
            except TransientError as e:
                log.warning("load_retry", reason=str(e))
                self._state("failed", str(e))
                self.stop.wait(self.settings.blocked_retry)
                continue
            except AgentError as e:
                log.error("load_failed", reason=str(e), exit_code=e.exit_code)
                self._state("failed", str(e))
                return
            self._export_holders((), blocked=False)
            self.metrics.changes.set(outcome.changes)
            self._state("ready", f"{self.target.recipe.name} loaded and verified", ready=True)
            log.info(
                "ready",
                recipe=self.target.recipe.name,
                changes=outcome.changes,
                warm=outcome.warm,
                render_nodes=list(outcome.verification.render_nodes),
                seconds=round(time.monotonic() - started, 3),
            )
            return

    def _watch_allocatable(self) -> None:
        """Once ready in a cluster: the device plugin should advertise gpu.intel.com/i915 > 0 soon. Exported
        (an alert fires when it stays 0); a warning when the deadline passes without it."""
        if not self.cluster.in_cluster or not self.readiness.get()[0]:
            return
        deadline = time.monotonic() + self.settings.allocatable_deadline
        while True:
            count = self.cluster.allocatable_gpus()
            if count is not None:
                self.metrics.allocatable.set(count)
                if count > 0:
                    log.info("gpus_advertised", allocatable=count)
                    return
            if time.monotonic() >= deadline:
                log.warning("gpus_not_advertised", seconds=self.settings.allocatable_deadline, allocatable=count)
                return
            if self.stop.wait(self.settings.allocatable_interval):
                return

    # --- monitor mode -------------------------------------------------------------------------
    def _monitor(self) -> None:
        """KMM loads the driver: keep the firmware path, verify periodically, never load or unload."""
        try:
            facts = self.discover()
            self.metrics.observe_node(facts)
            self.target, _ = self.source.resolve(facts)
        except AgentError as e:
            log.error("monitor_failed", reason=str(e))
            self._state("failed", str(e))
            self.stop.wait()
            return
        try:
            self.lifecycle.ensure_firmware_path()
        except AgentError as e:
            log.warning("firmware_path_failed", reason=str(e))
        recipe = self.target.recipe
        was = ""
        while True:
            result = self.lifecycle.verifier.verify(self.target.tree, recipe, -1, others_load=True)
            # Not ready yet (KMM has not loaded) is "loading"; a driver the kernel refused or broke
            # (Unknown symbol, firmware) is "failed", with the kernel's own lines as the reason.
            state = "ready" if result.ok else "failed" if result.kernel_log else "loading"
            reason = f"{recipe.name} verified" if result.ok else "; ".join(result.problems)
            self._state(state, reason, ready=result.ok)
            if state != was:
                log.info("monitor_state", state=state, reason=reason)
                was = state
            if self.stop.wait(self.settings.monitor_interval):
                return

    # --- shutdown -----------------------------------------------------------------------------
    def _unload_at_stop(self) -> bool:
        """Whether this SIGTERM means "take the driver off" (see ``ON_STOP``); monitor mode loads nothing."""
        policy = self.settings.on_stop
        if policy != "auto":
            return policy == "unload"
        if not self.cluster.in_cluster:
            return True
        wanted = self.cluster.driver_wanted()
        if wanted is Wanted.UNKNOWN:
            log.warning("stop_keeps_driver", reason="the API server could not be asked; never unload without knowing")
        elif wanted is Wanted.YES:
            log.info("stop_keeps_driver", reason="a restart: the DaemonSet stays and the node is in scope")
        return wanted is Wanted.NO

    def _shut_down(self) -> int:
        """Hand the driver over (a restart) or undo the journal; a busy module is retried until the
        deadline, then exit 4 (never forced)."""
        self.readiness.set(False, "stopping")
        self.upgrade.release()
        if self.settings.mode == LOAD and not self._unload_at_stop():
            handed = self.lifecycle.hand_over()
            self.metrics.set_state("handed_over")
            log.info("handed_over", changes=handed, reason="the next agent adopts the loaded driver")
            return 0
        self.metrics.set_state("unloading")
        deadline = time.monotonic() + self.settings.unload_deadline
        pause = threading.Event()  # the stop event is already set: wait on one of our own
        while True:
            try:
                undone = self.lifecycle.undo()
            except BusyError as e:
                self._export_holders(e.holders)
                self.metrics.set_state("blocked")
                left = deadline - time.monotonic()
                log.warning(
                    "unload_blocked",
                    module=e.module,
                    holders=[h.describe() for h in e.holders],
                    seconds_left=round(max(left, 0), 1),
                )
                if left <= 0:
                    log.error("unload_deadline_passed", reason=str(e), exit_code=e.exit_code)
                    return e.exit_code
                pause.wait(min(self.settings.retry_interval, left))
                continue
            except AgentError as e:
                log.error("unload_failed", reason=str(e), exit_code=e.exit_code)
                self.metrics.set_state("failed")
                return e.exit_code
            self._export_holders((), blocked=False)
            self.metrics.set_state("stopped")
            self.metrics.journal_changes.set(0)
            if self.settings.mode == LOAD:
                self.cluster.publish(NodeState("unloaded", f"the driver was unloaded: {undone} host changes undone"))
            log.info("stopped", changes_undone=undone)
            return 0
