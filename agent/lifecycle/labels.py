"""The node-label hook: gpu-driver.intel.com/state on the Node object, or nothing outside a cluster."""

from __future__ import annotations

import json
import os
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Protocol

from agent.kube.cluster import Cluster, Eviction, EvictionResult, NoCluster, NodeState, PodRef, Wanted
from agent.logs import get_logger

log = get_logger(__name__)

LABEL = "gpu-driver.intel.com/state"
# The pod's own service-account mount (not a host path).
SERVICE_ACCOUNT = Path("/var/run/secrets/kubernetes.io/serviceaccount")


class NodeLabeler(Protocol):
    """Publishes the agent's state on its node."""

    def publish(self, state: str) -> None: ...


class NoLabels:
    """Outside a cluster (INTEL_GPU_AGENT_NODE_NAME unset): nothing to label."""

    def publish(self, state: str) -> None:
        log.debug("node_label_skipped", state=state)


class ApiServerLabels:
    """PATCHes the node's label through the API server with the pod's token; TLS verified with its CA.

    Failures are logged, never raised: a label is a convenience for schedulers, the driver state
    itself is on the host and in the metrics.
    """

    def __init__(self, *, node: str, server: str, token_file: Path, ca_file: Path, timeout: float = 5.0) -> None:
        self.node = node
        self.server = server.rstrip("/")
        self.token_file = token_file
        self.ca_file = ca_file
        self.timeout = timeout
        self._last = ""

    @classmethod
    def in_cluster(cls, node: str) -> ApiServerLabels:
        host = os.environ.get("KUBERNETES_SERVICE_HOST", "kubernetes.default.svc")
        port = os.environ.get("KUBERNETES_SERVICE_PORT", "443")
        server = f"https://[{host}]:{port}" if ":" in host else f"https://{host}:{port}"
        return cls(node=node, server=server, token_file=SERVICE_ACCOUNT / "token", ca_file=SERVICE_ACCOUNT / "ca.crt")

    def publish(self, state: str) -> None:
        if state == self._last:
            return
        import requests

        body = json.dumps({"metadata": {"labels": {LABEL: state}}})
        try:
            token = self.token_file.read_text().strip()
            response = requests.patch(
                f"{self.server}/api/v1/nodes/{self.node}",
                data=body,
                headers={"Authorization": f"Bearer {token}", "Content-Type": "application/merge-patch+json"},
                verify=str(self.ca_file),
                timeout=self.timeout,
            )
            response.raise_for_status()
        except (OSError, requests.RequestException) as e:
            log.warning("node_label_failed", node=self.node, state=state, error=str(e))
            return
        self._last = state
        log.info("node_labelled", node=self.node, label=LABEL, state=state)


def labeler_for(node_name: str | None) -> NodeLabeler:
    """The API-server labeler when the node name is known (in a cluster), else the no-op."""
    return ApiServerLabels.in_cluster(node_name) if node_name else NoLabels()


class LabelOnlyCluster:
    """The cluster as far as this agent talks to it yet: the node label only; SIGTERM unloads as before."""

    in_cluster = True

    def __init__(self, labeler: NodeLabeler) -> None:
        self.labeler = labeler

    def publish(self, state: NodeState) -> None:
        self.labeler.publish(state.state)

    def driver_wanted(self) -> Wanted:
        return Wanted.NO

    def cordon(self) -> bool:
        return False

    def uncordon(self) -> None:
        return None

    def gpu_pods(self, holder_pod_uids: Collection[str]) -> Sequence[PodRef]:
        return ()

    def evict(self, pod: PodRef) -> EvictionResult:
        return EvictionResult(pod, Eviction.FAILED, "evictions are not supported by this agent's cluster client")

    def pod_gone(self, pod: PodRef) -> bool | None:
        return None

    def allocatable_gpus(self) -> int | None:
        return None


def cluster_for(node_name: str | None) -> Cluster:
    """The cluster of a node (the node name is set in a pod), else the no-op outside a cluster."""
    return LabelOnlyCluster(ApiServerLabels.in_cluster(node_name)) if node_name else NoCluster()
