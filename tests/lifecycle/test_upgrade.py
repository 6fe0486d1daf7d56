"""Driver upgrades in the run loop: the GPU's users moved off (cordon, evictions, PDBs), the switch, the
states published in order; blocked past the deadline keeps the old driver (issue 12, item 2)."""

from __future__ import annotations

from collections.abc import Collection, Sequence

from lifecycle.fakes import Node, make_tree, snapshot, srcversion
from lifecycle.test_daemon import FakeCluster, Running

from agent.kube.cluster import Eviction, EvictionResult, PodRef, Wanted
from agent.lifecycle.daemon import DaemonSettings
from agent.lifecycle.upgrade import UpgradePolicy

POD_UID = "0a1b2c3d-1111-2222-3333-444455556666"
POD = PodRef("ml", "train-7f9", POD_UID, "requests gpu.intel.com/i915")


class UpgradeCluster(FakeCluster):
    """A cluster with one GPU pod on the node; what eviction does is up to the test."""

    def __init__(self, node: Node, *, pdb_blocks: bool = False) -> None:
        super().__init__(in_cluster=True, wanted=Wanted.YES)
        self.node = node
        self.pdb_blocks = pdb_blocks
        self.pods: list[PodRef] = [POD]
        self.calls: list[str] = []
        self.schedulable = True

    def cordon(self) -> bool:
        self.calls.append("cordon")
        was, self.schedulable = self.schedulable, False
        return was

    def uncordon(self) -> None:
        self.calls.append("uncordon")
        self.schedulable = True

    def gpu_pods(self, holder_pod_uids: Collection[str]) -> Sequence[PodRef]:
        return list(self.pods)

    def evict(self, pod: PodRef) -> EvictionResult:
        self.calls.append(f"evict {pod.namespace}/{pod.name}")
        if self.pdb_blocks:
            return EvictionResult(
                pod, Eviction.BLOCKED, "Cannot evict pod as it would violate the pod's disruption budget."
            )
        release(self.node)  # the kubelet stops the pod's containers
        self.pods.remove(pod)
        return EvictionResult(pod, Eviction.EVICTED)

    def pod_gone(self, pod: PodRef) -> bool | None:
        return pod not in self.pods


def hold_in_pod(node: Node) -> None:
    """python3 in the pod has /dev/testgpu open: the driver's refcount and a process holder."""
    node.kernel.use("testgpu")
    proc = node.host.root / "proc/4121"
    (proc / "fd").mkdir(parents=True)
    (proc / "fd/3").symlink_to("/dev/testgpu")
    (proc / "cmdline").write_bytes(b"python3\x00train.py\x00")
    (proc / "cgroup").write_text(
        f"0::/kubepods.slice/kubepods-pod{POD_UID.replace('-', '_')}.slice/cri-containerd-{'f' * 64}.scope\n"
    )


def release(node: Node) -> None:
    import shutil

    node.kernel.use("testgpu", -1)
    shutil.rmtree(node.host.root / "proc/4121")


def _loaded(node: Node) -> str:
    return (node.host.root / "sys/module/testgpu/srcversion").read_text().strip()


def _upgrade(node: Node, cluster: UpgradeCluster, **policy: object) -> Running:
    node.engine().apply(node.target, node.facts())  # tree A, loaded by the agent before
    hold_in_pod(node)
    b = make_tree(node.tmp / "tree-b", build="b")
    settings = DaemonSettings(upgrade=UpgradePolicy(poll=0.01, **policy), blocked_retry=0.05)  # type: ignore[arg-type]
    return Running(node, settings, tree=b.root, cluster=cluster)


def test_an_upgrade_evicts_the_gpu_pod_switches_and_uncordons(node: Node) -> None:
    cluster = UpgradeCluster(node)
    run = _upgrade(node, cluster)
    run.wait(lambda: run.readiness.get()[0], "ready on B")

    assert _loaded(node) == srcversion("testgpu", "b")
    assert cluster.calls == ["cordon", "evict ml/train-7f9", "uncordon"]
    assert cluster.states == ["loading", "upgrading", "ready"]
    assert "from testgpu-1.0" in cluster.published[1].reason
    assert run.finish() == 0, "a restart (the DaemonSet stays): B handed over"
    assert _loaded(node) == srcversion("testgpu", "b")


def test_a_pdb_that_never_allows_the_eviction_blocks_names_the_pod_and_keeps_the_old_driver(node: Node) -> None:
    cluster = UpgradeCluster(node, pdb_blocks=True)
    run = _upgrade(node, cluster, timeout=0.2)
    run.wait(lambda: run.state("blocked") == 1, "blocked")

    reason = run.readiness.get()[1]
    assert "pod ml/train-7f9 (Cannot evict pod as it would violate" in reason
    assert "PID 4121 (python3 train.py) has /dev/testgpu open" in reason
    assert "the old driver stays loaded and working" in reason
    assert _loaded(node) == srcversion("testgpu"), "A still loaded"
    assert cluster.calls.count("uncordon") == 0, "still cordoned while it retries"
    assert node.metrics.value("intel_gpu_driver_unload_holders") == 1
    assert run.finish() == 0
    assert cluster.calls[-1] == "uncordon", "stopping hands the node back schedulable"
    assert _loaded(node) == srcversion("testgpu") and len(snapshot(node.host)["files"]) == 2, "A kept, whole"


def test_without_evictions_the_upgrade_waits_for_the_pod_to_go(node: Node) -> None:
    cluster = UpgradeCluster(node)
    run = _upgrade(node, cluster, evict=False, cordon=False)
    run.wait(lambda: run.state("upgrading") == 1, "upgrading")
    assert _loaded(node) == srcversion("testgpu")
    release(node)  # the job finishes by itself
    cluster.pods.clear()
    run.wait(lambda: run.readiness.get()[0], "ready on B")
    assert _loaded(node) == srcversion("testgpu", "b")
    assert cluster.calls == [], "no eviction, no cordon"
    run.finish()


def test_no_upgrade_when_the_same_tree_is_loaded(node: Node) -> None:
    node.engine().apply(node.target, node.facts())
    cluster = UpgradeCluster(node)
    run = Running(node, DaemonSettings(), cluster=cluster)
    run.wait(lambda: run.readiness.get()[0], "ready")
    assert cluster.calls == [] and "upgrading" not in cluster.states
    run.finish()
