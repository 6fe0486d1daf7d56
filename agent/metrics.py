"""Prometheus metrics: one `Metrics` object with its own registry, prefix intel_gpu_driver_."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from agent import __version__
from agent.discovery.node import NodeFacts
from agent.support import Verdict

PREFIX = "intel_gpu_driver"
STATES = (
    "starting", "loading", "ready", "upgrading", "unsupported", "failed", "blocked", "unloading", "stopped",
    "handed_over",
)  # fmt: skip
VERDICTS = ("supported", "at-risk", "unsupported")


class Metrics:
    """Every series the agent exports; low-cardinality labels only (no PIDs, no paths)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.info = Gauge(
            f"{PREFIX}_node_info",
            "Node facts: kernel, OS and agent version (value 1).",
            ["kernel", "os", "agent_version"],
            registry=r,
        )
        self.gpus = Gauge(
            f"{PREFIX}_gpus",
            "Intel display-class PCI functions found, by device and function.",
            ["device_id", "platform", "function"],
            registry=r,
        )
        self.support = Gauge(
            f"{PREFIX}_support",
            "Support verdict per driver release (1 for the current verdict).",
            ["recipe", "verdict"],
            registry=r,
        )
        self.state = Gauge(f"{PREFIX}_state", "Agent state (1 for the current state).", ["state"], registry=r)
        self.ready = Gauge(f"{PREFIX}_ready", "1 when the driver is loaded and verified.", registry=r)
        self.unload_blocked = Gauge(
            f"{PREFIX}_unload_blocked",
            "1 while an unload is refused because the driver is in use.",
            registry=r,
        )
        self.holders = Gauge(f"{PREFIX}_unload_holders", "Processes holding the driver's devices open.", registry=r)
        self.holder = Gauge(
            f"{PREFIX}_unload_holder",
            "What holds the driver while an unload is refused (1 per holder; cleared once released).",
            ["kind", "name", "pid", "pod"],
            registry=r,
        )
        self.changes = Gauge(f"{PREFIX}_host_changes", "Host changes of the last apply (0: warm restart).", registry=r)
        self.allocatable = Gauge(
            f"{PREFIX}_allocatable_gpus",
            "gpu.intel.com/i915 the node advertises (the device plugin registered), once the driver is ready.",
            registry=r,
        )
        self.journal_changes = Gauge(
            f"{PREFIX}_journal_changes", "Host changes recorded in the journal (still to undo).", registry=r
        )
        self.build_failures = Counter(f"{PREFIX}_build_failures", "Driver builds that failed.", registry=r)
        self.step_seconds = Histogram(
            f"{PREFIX}_step_duration_seconds",
            "Duration of lifecycle steps.",
            ["step"],
            registry=r,
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1200),
        )
        self.set_state("starting")

    def set_state(self, state: str) -> None:
        """Make ``state`` the one current state."""
        if state not in STATES:
            raise ValueError(f"unknown state {state!r}")
        for s in STATES:
            self.state.labels(state=s).set(1 if s == state else 0)
        self.ready.set(1 if state == "ready" else 0)

    def observe_node(self, facts: NodeFacts) -> None:
        """Export what discovery found."""
        self.info.clear()
        self.info.labels(kernel=facts.kernel.release, os=facts.os.pretty_name, agent_version=__version__).set(1)
        self.gpus.clear()
        counts: dict[tuple[str, str, str], int] = {}
        for gpu in facts.gpus:
            key = (gpu.device_id, gpu.platform, gpu.function)
            counts[key] = counts.get(key, 0) + 1
        for (device, platform, function), n in counts.items():
            self.gpus.labels(device_id=device, platform=platform, function=function).set(n)

    def observe_verdicts(self, verdicts: Iterable[Verdict]) -> None:
        """One-hot support verdict per recipe."""
        for verdict in verdicts:
            for v in VERDICTS:
                self.support.labels(recipe=verdict.recipe, verdict=v).set(1 if v == verdict.verdict else 0)

    def exposition(self) -> bytes:
        """The text exposition format of every series."""
        return generate_latest(self.registry)

    def value(self, name: str, labels: dict[str, str] | None = None) -> float | None:
        """One sample's value (tests and status use it)."""
        return self.registry.get_sample_value(name, labels or {})


def states() -> Sequence[str]:
    return STATES
