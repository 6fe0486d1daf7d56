"""What the node lifecycle asks of the cluster, as one protocol; and the answers outside a cluster.

The lifecycle never talks HTTP: it holds a ``Cluster``. In a pod it is the API-server implementation
(agent/kube/api.py), outside a cluster ``NoCluster``. Every method is safe to call when the API is down:
it says "unknown" (None) or reports the failure in its result, never raises for the network, so the
node-side lifecycle goes on and never unloads because it could not ask.
"""

from __future__ import annotations

import enum
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import Protocol


class Wanted(enum.Enum):
    """Whether the cluster still wants the driver on this node (asked at SIGTERM)."""

    YES = "yes"  # the DaemonSet is there and not being deleted, the node is in scope: a restart
    NO = "no"  # the DaemonSet is being deleted or gone, or the node left the driver's scope: unload
    UNKNOWN = "unknown"  # the API could not be asked: keep the driver (never unload because it could not ask)


@dataclass(frozen=True)
class PodRef:
    """A pod on this node that uses the GPU (requests gpu.intel.com/* or holds the device)."""

    namespace: str
    name: str
    uid: str
    why: str = ""  # "requests gpu.intel.com/i915" | "holds /dev/dri/renderD128 (pid 4121 python3)"


class Eviction(enum.Enum):
    """What one eviction request came to."""

    EVICTED = "evicted"  # accepted (201): the pod is terminating
    GONE = "gone"  # the pod no longer exists (404/410): nothing to evict
    BLOCKED = "blocked"  # a PodDisruptionBudget refuses it now (429): retry later
    FAILED = "failed"  # the API answered otherwise or not at all: retry later


@dataclass(frozen=True)
class EvictionResult:
    """The outcome of evicting one pod, with the API's words when it was refused."""

    pod: PodRef
    outcome: Eviction
    message: str = ""


@dataclass(frozen=True)
class NodeState:
    """What the agent publishes on its node: label, condition, and an event when it changes."""

    state: str  # "loading" | "ready" | "upgrading" | "blocked" | "unsupported" | "failed" | "unloaded"
    reason: str  # the why, for the condition's message and the event
    ready: bool = False
    extra: dict[str, str] = field(default_factory=dict)


class Cluster(Protocol):
    """The cluster as the lifecycle needs it."""

    @property
    def in_cluster(self) -> bool:
        """False outside a cluster: SIGTERM then undoes as a plain command would."""
        ...

    def publish(self, state: NodeState) -> None:
        """Label gpu-driver.intel.com/state, condition IntelGPUDriverReady, an Event on each change."""
        ...

    def driver_wanted(self) -> Wanted:
        """Asked at SIGTERM: is this a restart (YES), an uninstall or out-of-scope node (NO), or unknown?"""
        ...

    def cordon(self) -> bool:
        """Mark the node unschedulable; True only if this call cordoned it (it was schedulable)."""
        ...

    def uncordon(self) -> None:
        """Make the node schedulable again (called only when ``cordon`` returned True)."""
        ...

    def gpu_pods(self, holder_pod_uids: Collection[str]) -> Sequence[PodRef]:
        """Pods on this node that request gpu.intel.com/* or whose UID is among the device holders,
        limited by the chart's upgrade.podSelector; never DaemonSet pods, mirror pods or the agent itself."""
        ...

    def evict(self, pod: PodRef) -> EvictionResult:
        """One Eviction API request (policy/v1), honouring PodDisruptionBudgets."""
        ...

    def pod_gone(self, pod: PodRef) -> bool | None:
        """True once the pod (that very UID) no longer exists; None when the API cannot be asked."""
        ...

    def allocatable_gpus(self) -> int | None:
        """The node's allocatable gpu.intel.com/i915 (the device plugin registered); None when unknown."""
        ...


class NoCluster:
    """Outside a cluster (no node name): nothing to publish, nobody to evict, SIGTERM unloads."""

    in_cluster = False

    def publish(self, state: NodeState) -> None:
        return None

    def driver_wanted(self) -> Wanted:
        return Wanted.NO

    def cordon(self) -> bool:
        return False

    def uncordon(self) -> None:
        return None

    def gpu_pods(self, holder_pod_uids: Collection[str]) -> Sequence[PodRef]:
        return ()

    def evict(self, pod: PodRef) -> EvictionResult:
        return EvictionResult(pod, Eviction.GONE)

    def pod_gone(self, pod: PodRef) -> bool | None:
        return True

    def allocatable_gpus(self) -> int | None:
        return None
