"""A driver upgrade on one node: the GPU's users moved off first (cordon, evictions honouring PDBs), then the
switch; blocked past the deadline means the old driver keeps running and the holders are named."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from agent.discovery.node import NodeFacts
from agent.errors import ModuleBusyError, StopRequestedError
from agent.kube.cluster import Cluster, Eviction, PodRef
from agent.lifecycle.engine import Lifecycle, Outcome, Target
from agent.lifecycle.holders import Holder, device_prefixes, process_holders
from agent.lifecycle.switch import switch
from agent.logs import get_logger

log = get_logger(__name__)


@dataclass(frozen=True)
class UpgradePolicy:
    """How an upgrade frees the node (the chart's upgrade.* values)."""

    cordon: bool = True  # mark the node unschedulable first (undone only if we did it)
    evict: bool = True  # evict the GPU pods; False waits for them to go by themselves
    timeout: float = 600.0  # how long the users may take to go before the node is "blocked"
    poll: float = 2.0


class UpgradeBlockedError(ModuleBusyError):
    """The GPU's users did not go before the deadline: the old driver stays loaded; named holders (exit 4)."""

    def __init__(self, message: str, holders: Sequence[Holder], pods: Sequence[PodRef]) -> None:
        super().__init__(message, hint="the agent retries; free those pods or raise upgrade.timeoutSeconds")
        self.holders = tuple(holders)
        self.pods = tuple(pods)


class Upgrade:
    """Moves the GPU's users off the node, then switches drivers; states are published by ``on_state``."""

    def __init__(
        self,
        *,
        lifecycle: Lifecycle,
        cluster: Cluster,
        policy: UpgradePolicy,
        stop: threading.Event,
        on_state: Callable[[str, str], None],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.lifecycle = lifecycle
        self.cluster = cluster
        self.policy = policy
        self.stop = stop
        self.on_state = on_state
        self.clock = clock
        self.cordoned = False  # kept across retries: uncordon only what this agent cordoned

    def run(self, old: Target, new: Target, facts: NodeFacts) -> Outcome:
        """Free the node and switch; ``UpgradeBlockedError`` when the users stay past the deadline."""
        what = f"{old.recipe.name} ({old.tree.manifest.kernel}) to {new.recipe.name} ({new.tree.manifest.kernel})"
        self.on_state("upgrading", f"upgrading the driver from {what}")
        if self.policy.cordon and not self.cordoned:
            self.cordoned = self.cluster.cordon()
        self._free_the_gpu(what)
        try:
            return switch(self.lifecycle, new, facts)
        finally:
            self.release()

    def release(self) -> None:
        """Make the node schedulable again if this agent cordoned it (done, failed, or stopping)."""
        if self.cordoned:
            self.cluster.uncordon()
            self.cordoned = False

    def _free_the_gpu(self, what: str) -> None:
        """Evict (or wait for) every pod using the GPU until none is left and nothing holds the driver."""
        deadline = self.clock() + self.policy.timeout
        asked: set[str] = set()
        refusals: dict[str, str] = {}
        while True:
            holders = self._holders()
            pods = list(self.cluster.gpu_pods({h.pod_uid for h in holders if h.pod_uid}))
            for pod in pods:
                if not self.policy.evict or pod.uid in asked:
                    continue
                result = self.cluster.evict(pod)
                if result.outcome in (Eviction.EVICTED, Eviction.GONE):
                    asked.add(pod.uid)
                    log.info("gpu_pod_evicted", pod=f"{pod.namespace}/{pod.name}", why=pod.why)
                else:  # a PDB (429) or an API failure: asked again next round, until the deadline
                    refusals[pod.uid] = result.message or result.outcome.value
            waiting = [p for p in pods if self.cluster.pod_gone(p) is not True]
            blocker = self.lifecycle.unload_blocker()
            if not waiting and blocker is None:
                return
            if self.clock() >= deadline:
                raise self._blocked(what, waiting, holders, refusals, blocker)
            if self.stop.wait(self.policy.poll):
                raise StopRequestedError("stopped while the GPU's users were moved off")

    def _holders(self) -> tuple[Holder, ...]:
        driver_modules = self.lifecycle.journal.header.driver_modules
        return process_holders(self.lifecycle.host, device_prefixes(driver_modules))

    def _blocked(
        self,
        what: str,
        pods: Sequence[PodRef],
        holders: Sequence[Holder],
        refusals: dict[str, str],
        blocker: ModuleBusyError | None,
    ) -> UpgradeBlockedError:
        named = [
            f"pod {p.namespace}/{p.name}" + (f" ({refusals[p.uid]})" if p.uid in refusals else "") for p in pods
        ] + [h.describe() for h in holders]
        if blocker is not None and not named:
            named.append(str(blocker))
        return UpgradeBlockedError(
            f"upgrade from {what} blocked after {self.policy.timeout:.0f} s by "
            + ("; ".join(named) or "an unknown user")
            + ": the old driver stays loaded and working",
            holders,
            pods,
        )
