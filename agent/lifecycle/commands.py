"""The lifecycle commands (run, load, unload, status) over components the composition root built."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from agent.discovery.node import NodeFacts
from agent.errors import AgentError
from agent.lifecycle.engine import Lifecycle, Outcome
from agent.lifecycle.lock import StateLock
from agent.lifecycle.modules import BusyError
from agent.lifecycle.signals import stop_on_signals
from agent.lifecycle.source import TreeSource
from agent.logs import get_logger

if TYPE_CHECKING:
    from agent.lifecycle.daemon import Daemon

log = get_logger(__name__)


class LifecycleCommands:
    """One object per CLI invocation: holds the components, the state lock and the stop event."""

    def __init__(
        self,
        *,
        lifecycle: Lifecycle,
        source: TreeSource,
        discover: Callable[[], NodeFacts],
        lock: StateLock,
        stop: threading.Event,
        make_daemon: Callable[[], Daemon],
        unload_deadline: float,
    ) -> None:
        self.lifecycle = lifecycle
        self.source = source
        self.discover = discover
        self.lock = lock
        self.stop = stop
        self.make_daemon = make_daemon
        self.unload_deadline = unload_deadline

    def run(self) -> int:
        """The daemon: returns its exit code (0 after a clean unload, 4 when still held at the deadline)."""
        with stop_on_signals(self.stop), self.lock:
            return self.make_daemon().run()

    def load(self) -> Outcome:
        """Apply and verify once; the driver stays loaded (the journal keeps what `unload` reverts)."""
        with stop_on_signals(self.stop), self.lock:
            facts = self.discover()
            target, _ = self.source.resolve(facts)
            return self.lifecycle.apply(target, facts)

    def unload(self) -> int:
        """Undo the journal; a busy module is retried until the deadline, then ``BusyError`` (exit 4)."""
        deadline = time.monotonic() + self.unload_deadline
        with stop_on_signals(self.stop), self.lock:
            while True:
                try:
                    return self.lifecycle.undo()
                except BusyError as e:
                    left = deadline - time.monotonic()
                    log.warning("unload_blocked", module=e.module, holders=[h.describe() for h in e.holders])
                    if left <= 0 or self.stop.wait(min(1.0, left)):
                        raise

    def status(self) -> dict[str, Any]:
        """The journal and the host's driver state, read-only (no lock: never blocks a running agent)."""
        data = self.lifecycle.status()
        try:
            facts = self.discover()
            data["kernel_running"] = facts.kernel.release
            data["gpus"] = [
                {"address": g.address, "id": g.pci_id, "driver": g.driver, "render_nodes": list(g.render_nodes)}
                for g in facts.gpus
            ]
        except AgentError as e:
            data["problem"] = str(e)
        return data
