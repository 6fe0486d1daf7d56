"""The run loop over the fake kernel: ready, SIGTERM → undo → 0, busy → 4 at the deadline, unsupported stays up."""

from __future__ import annotations

import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest
from lifecycle.fakes import Node, make_node, recipe, snapshot

from agent.health import HealthServer, Readiness
from agent.kube.cluster import NoCluster, NodeState, Wanted
from agent.lifecycle.daemon import Daemon, DaemonSettings
from agent.lifecycle.signals import stop_on_signals
from agent.lifecycle.source import TreeSource


class FakeCluster(NoCluster):
    """The cluster as the daemon sees it: what was published, and what SIGTERM's question answers."""

    def __init__(self, *, in_cluster: bool = False, wanted: Wanted = Wanted.NO) -> None:
        self.in_cluster = in_cluster  # type: ignore[misc]
        self.wanted = wanted
        self.published: list[NodeState] = []
        self.asked = 0

    @property
    def states(self) -> list[str]:
        return [p.state for p in self.published]

    def publish(self, state: NodeState) -> None:
        self.published.append(state)

    def driver_wanted(self) -> Wanted:
        self.asked += 1
        return self.wanted


class Running:
    """A daemon in a thread, its stop event, readiness, labels and HTTP port."""

    def __init__(
        self, node: Node, settings: DaemonSettings, tree: Path | None = None, cluster: FakeCluster | None = None
    ) -> None:
        self.node = node
        self.stop = threading.Event()
        self.readiness = Readiness()
        self.labels = cluster or FakeCluster()
        self.health = HealthServer("127.0.0.1:0", node.metrics, self.readiness)
        engine = node.engine()
        engine.verifier.stop = self.stop
        self.daemon = Daemon(
            lifecycle=engine,
            source=TreeSource(
                host=node.host.paths,
                tree_dir=tree or node.target.tree.root,
                recipe_spec=None,
                find_recipe=lambda spec: recipe(),
                build=None,
            ),
            discover=node.facts,
            metrics=node.metrics,
            readiness=self.readiness,
            cluster=self.labels,
            health=self.health,
            stop=self.stop,
            settings=settings,
        )
        self.code: int | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        self.code = self.daemon.run()

    def http(self, path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.health.port}{path}", timeout=5) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()

    def state(self, name: str) -> float | None:
        return self.node.metrics.value("intel_gpu_driver_state", {"state": name})

    def wait(self, condition: Callable[[], bool], what: str, timeout: float = 10) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            assert time.monotonic() < deadline, f"{what} not reached"
            time.sleep(0.01)

    def finish(self, timeout: float = 10) -> int:
        self.stop.set()
        self.thread.join(timeout)
        assert not self.thread.is_alive()
        assert self.code is not None
        return self.code


def test_ready_then_sigterm_unloads_and_exits_0(tmp_path: Path) -> None:
    node = make_node(tmp_path)
    before = snapshot(node.host)
    run = Running(node, DaemonSettings())
    run.wait(lambda: run.readiness.get()[0], "ready")

    assert run.http("/readyz")[0] == 200
    assert run.state("ready") == 1
    assert "intel_gpu_driver_ready 1.0" in run.http("/metrics")[1]
    assert run.labels.states == ["loading", "ready"]
    assert node.metrics.value("intel_gpu_driver_host_changes") == 6

    assert run.finish() == 0
    assert snapshot(node.host) == before
    assert run.state("stopped") == 1
    assert run.labels.states[-1] == "unloaded" and "6 host changes undone" in run.labels.published[-1].reason


def test_a_held_module_blocks_the_unload_until_the_deadline_then_exit_4(tmp_path: Path) -> None:
    node = make_node(tmp_path)
    run = Running(node, DaemonSettings(unload_deadline=0.3, retry_interval=0.05))
    run.wait(lambda: run.readiness.get()[0], "ready")
    node.kernel.use("testgpu")
    proc = node.host.root / "proc/777"
    (proc / "fd").mkdir(parents=True)
    (proc / "fd/5").symlink_to("/dev/testgpu")
    (proc / "cmdline").write_bytes(b"sleep\x00infinity\x00")

    assert run.finish() == 4
    assert node.metrics.value("intel_gpu_driver_unload_blocked") == 1
    assert node.metrics.value("intel_gpu_driver_unload_holders") == 1
    holder = {"kind": "process", "name": "sleep infinity", "pid": "777", "pod": ""}
    assert node.metrics.value("intel_gpu_driver_unload_holder", holder) == 1
    assert "testgpu" in snapshot(node.host)["modules"], "never forced"


def test_released_in_time_the_unload_succeeds(tmp_path: Path) -> None:
    node = make_node(tmp_path)
    run = Running(node, DaemonSettings(unload_deadline=10, retry_interval=0.05))
    run.wait(lambda: run.readiness.get()[0], "ready")
    node.kernel.use("testgpu")
    run.stop.set()
    run.wait(lambda: node.metrics.value("intel_gpu_driver_unload_blocked") == 1, "blocked")
    node.kernel.use("testgpu", -1)
    assert run.finish() == 0
    assert node.metrics.value("intel_gpu_driver_unload_blocked") == 0


def test_an_unsupported_node_stays_up_not_ready_and_exits_0(tmp_path: Path) -> None:
    node = make_node(tmp_path, gpu=False)
    before = snapshot(node.host)
    run = Running(node, DaemonSettings())
    run.wait(lambda: run.state("unsupported") == 1, "unsupported")

    assert run.thread.is_alive(), "no crash loop"
    code, body = run.http("/readyz")
    assert code == 503 and "no Intel data-center GPU" in body
    assert run.labels.states[-1] == "unsupported"
    assert run.finish() == 0
    assert snapshot(node.host) == before


def test_a_failed_load_rolls_back_stays_up_and_says_why(tmp_path: Path) -> None:
    node = make_node(tmp_path, fail={"testgpu": "testgpu: Unknown symbol testgpu_missing_symbol (err -2)"})
    before = snapshot(node.host)
    run = Running(node, DaemonSettings())
    run.wait(lambda: run.state("failed") == 1, "failed")
    assert "modprobe testgpu" in run.readiness.get()[1]
    assert snapshot(node.host)["modules"].keys() == before["modules"].keys()
    assert run.finish() == 0


def test_monitor_mode_sets_the_path_never_loads_and_restores_the_path(tmp_path: Path) -> None:
    node = make_node(tmp_path, in_tree_i915=False)
    run = Running(node, DaemonSettings(mode="monitor", monitor_interval=0.02))
    run.wait(lambda: run.state("loading") == 1, "waiting for KMM")
    assert snapshot(node.host)["firmware_path"] == b"/var/lib/firmware"
    assert run.readiness.get()[1] == "testgpu is not loaded"
    # KMM loads the driver: the agent notices it and becomes ready.
    node.kernel.run(["modprobe", "-d", str(node.target.tree.modules_base), "-S", "k", "testgpu"])
    run.wait(lambda: run.readiness.get()[0], "ready")
    calls = len(node.kernel.calls)
    assert run.finish() == 0
    assert len(node.kernel.calls) == calls, "monitor mode never unloads"
    assert snapshot(node.host)["firmware_path"] == b""


def test_the_signal_handler_only_sets_the_event_and_is_removed_after() -> None:
    import os
    import signal

    stop = threading.Event()
    previous = signal.getsignal(signal.SIGUSR1)
    with stop_on_signals(stop, (signal.SIGUSR1,)):
        os.kill(os.getpid(), signal.SIGUSR1)
        assert stop.wait(5)
    assert signal.getsignal(signal.SIGUSR1) is previous


@pytest.mark.parametrize("kind", ["systemd", "cgroupfs"])
def test_pod_of_a_process_from_its_cgroup(kind: str) -> None:
    from agent.lifecycle.holders import pod_of

    uid = "0a1b2c3d-1111-2222-3333-444455556666"
    cid = "ab" * 32
    text = (
        f"0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{uid.replace('-', '_')}.slice/"
        f"cri-containerd-{cid}.scope\n"
        if kind == "systemd"
        else f"12:devices:/kubepods/burstable/pod{uid}/{cid}\n"
    )
    assert pod_of(text) == (uid, cid[:12])
    assert pod_of("0::/user.slice/session-1.scope\n") == ("", "")


def test_a_full_disk_during_apply_rolls_back_keeps_running_and_retries(tmp_path: Path) -> None:
    """Repro of F2 for `run`: an OSError in apply killed the daemon (exit 1), so the pod would crash-loop."""
    import subprocess

    node = make_node(tmp_path)
    folder = node.host.root / "var/lib/firmware"
    folder.mkdir(parents=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4k", "tmpfs", str(folder)], check=True)
    try:
        run = Running(node, DaemonSettings(blocked_retry=0.05))
        # Polled: between two retries the daemon is not ready and says why (each attempt rolls back first).
        run.wait(lambda: "No space left on device" in run.readiness.get()[1], "the reason in /readyz")
        assert run.thread.is_alive(), "no crash loop"
        assert run.labels.states[:2] == ["loading", "failed"]
        subprocess.run(["umount", str(folder)], check=True)  # room again: the next retry loads
        run.wait(lambda: run.readiness.get()[0], "ready after the retry")
        assert run.finish() == 0
    finally:
        subprocess.run(["umount", str(folder)], check=False, capture_output=True)


def _journal_phase(node: Node) -> str:
    import json

    return str(json.loads((node.host.paths.state_dir / "journal.json").read_text())["phase"])


@pytest.mark.parametrize("wanted", [Wanted.YES, Wanted.UNKNOWN])
def test_a_restart_in_a_cluster_hands_the_driver_over_and_the_next_agent_adopts_it(
    tmp_path: Path, wanted: Wanted
) -> None:
    """SIGTERM while the DaemonSet stays (a restart, a rolling update), or when the API cannot be asked."""
    node = make_node(tmp_path)
    cluster = FakeCluster(in_cluster=True, wanted=wanted)
    run = Running(node, DaemonSettings(), cluster=cluster)
    run.wait(lambda: run.readiness.get()[0], "ready")
    loaded = snapshot(node.host)

    assert run.finish() == 0
    assert cluster.asked == 1
    assert snapshot(node.host) == loaded, "the driver stays loaded, firmware and path in place"
    assert _journal_phase(node) == "handed_over"
    assert run.state("handed_over") == 1 and "unloaded" not in cluster.states

    calls = len(node.kernel.calls)
    again = Running(node, DaemonSettings(), cluster=FakeCluster(in_cluster=True, wanted=Wanted.NO))
    again.wait(lambda: again.readiness.get()[0], "ready again")
    assert len(node.kernel.calls) == calls, "adopted: nothing reloaded"
    assert node.metrics.value("intel_gpu_driver_host_changes") == 0
    assert again.finish() == 0, "the DaemonSet is gone now: unload"
    assert "testgpu" not in snapshot(node.host)["modules"]


def test_an_uninstall_in_a_cluster_unloads(tmp_path: Path) -> None:
    node = make_node(tmp_path)
    before = snapshot(node.host)
    cluster = FakeCluster(in_cluster=True, wanted=Wanted.NO)
    run = Running(node, DaemonSettings(), cluster=cluster)
    run.wait(lambda: run.readiness.get()[0], "ready")
    assert run.finish() == 0
    assert snapshot(node.host) == before and cluster.states[-1] == "unloaded"


@pytest.mark.parametrize(("policy", "unloads"), [("unload", True), ("keep", False)])
def test_on_stop_unload_or_keep_never_asks_the_cluster(tmp_path: Path, policy: str, unloads: bool) -> None:
    node = make_node(tmp_path)
    cluster = FakeCluster(in_cluster=True, wanted=Wanted.YES if unloads else Wanted.NO)
    run = Running(node, DaemonSettings(on_stop=policy), cluster=cluster)
    run.wait(lambda: run.readiness.get()[0], "ready")
    assert run.finish() == 0
    assert cluster.asked == 0
    assert ("testgpu" in snapshot(node.host)["modules"]) is not unloads
