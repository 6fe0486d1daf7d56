"""Monitor mode's diagnosis when KMM's load fails: the kernel's own lines, folded, as a "failed" state.

Over the fake kernel of tests/lifecycle (the real-kernel replay is test_kmm_worker_vm.py). KMM's worker
retries its modprobe until it works, so a refusal logged before a successful load must not keep the
node failed.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from lifecycle.fakes import Node, make_node, recipe

from agent.health import Readiness
from agent.kube.cluster import NoCluster, NodeState
from agent.lifecycle.daemon import Daemon, DaemonSettings
from agent.lifecycle.source import TreeSource
from agent.lifecycle.verify import SYMBOL_LINES_SHOWN, Record, log_problems

NAMES = ["i915", "i915_compat", "i915/"]
REFUSALS = [f"i915: Unknown symbol drm_symbol_{n} (err -2)" for n in range(7)]


def records(*messages: str) -> list[Record]:
    return [Record(seq, message) for seq, message in enumerate(messages)]


def test_unknown_symbols_are_shown_first_then_counted_per_module() -> None:
    got = log_problems(records(*REFUSALS, "i915_compat: Unknown symbol x (err -2)", "e1000e: Unknown symbol y"), NAMES)
    assert got[:SYMBOL_LINES_SHOWN] == REFUSALS[:SYMBOL_LINES_SHOWN]
    assert "i915_compat: Unknown symbol x (err -2)" in got
    assert f"i915: {len(REFUSALS) - SYMBOL_LINES_SHOWN} more Unknown symbol lines" in got
    assert not any("e1000e" in line for line in got), "another driver's lines are not ours to judge"


def test_refusals_of_a_module_loaded_now_are_from_an_earlier_attempt() -> None:
    firmware = "i915 0000:03:00.0: Direct firmware load for i915/dg2_guc_70.40.1.bin failed with error -2"
    got = log_problems(records(*REFUSALS, firmware), NAMES, loaded={"i915": object()})
    assert got == [firmware], "a firmware failure still counts; the old refusals do not"


class Labels(NoCluster):
    """The node label as the daemon publishes it (the cluster's other answers: outside one)."""

    def __init__(self) -> None:
        self.states: list[str] = []

    def publish(self, state: NodeState) -> None:
        self.states.append(state.state)


def monitor(node: Node) -> tuple[threading.Event, Readiness, Labels, threading.Thread]:
    """The daemon in monitor mode in a thread, as the chart's kmm-mode DaemonSet runs it."""
    stop, readiness, labels = threading.Event(), Readiness(), Labels()
    engine = node.engine()
    engine.verifier.stop = stop
    source = TreeSource(
        host=node.host.paths,
        tree_dir=node.target.tree.root,
        recipe_spec=None,
        find_recipe=lambda spec: recipe(),
        build=None,
    )
    daemon = Daemon(
        lifecycle=engine,
        source=source,
        discover=node.facts,
        metrics=node.metrics,
        readiness=readiness,
        cluster=labels,
        health=None,
        stop=stop,
        settings=DaemonSettings(mode="monitor", monitor_interval=0.02),
    )
    thread = threading.Thread(target=daemon.run, daemon=True)
    thread.start()
    return stop, readiness, labels, thread


def wait(condition: Callable[[], bool], what: str, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"{what} not reached"
        time.sleep(0.01)


@pytest.fixture
def node(tmp_path: Path) -> Node:
    # A fresh node: KMM's modprobe of the driver is refused like the real i915 without drm.
    refusal = "testgpu: Unknown symbol drm_dev_register (err -2)"
    return make_node(tmp_path, in_tree_i915=False, fail={"testgpu": refusal})


def test_a_refused_load_is_failed_with_the_kernels_lines_then_ready_once_kmm_succeeds(node: Node) -> None:
    stop, readiness, labels, thread = monitor(node)
    try:
        wait(lambda: node.metrics.value("intel_gpu_driver_state", {"state": "loading"}) == 1, "waiting for KMM")
        calls = len(node.kernel.calls)
        modprobe = ["modprobe", "-d", str(node.target.tree.modules_base), "-S", "k", "testgpu"]
        with pytest.raises(Exception, match="Unknown symbol"):
            node.kernel.run(modprobe)  # KMM's first attempt
        wait(lambda: node.metrics.value("intel_gpu_driver_state", {"state": "failed"}) == 1, "failed")
        ready, reason = readiness.get()
        assert not ready
        assert reason.startswith("testgpu is not loaded; kernel log: testgpu: Unknown symbol drm_dev_register")
        assert labels.states[-1] == "failed"
        assert node.metrics.value("intel_gpu_driver_ready") == 0
        # KMM retries once the cause is gone: the old refusal stays in the log but no longer counts.
        node.kernel.fail.clear()
        node.kernel.run(modprobe)
        wait(lambda: readiness.get()[0], "ready")
        assert labels.states[-1] == "ready"
        assert len(node.kernel.calls) == calls + 2, "the agent itself loaded nothing"
    finally:
        stop.set()
        thread.join(10)
