"""Fault injection for the crash tests: SIGKILL the agent at a named point, exactly like `kill -9`.

INTEL_GPU_AGENT_FAULT=<when>:<kind>[#<n>]. <when> is "intent" (journal written, host not yet changed)
or "after" (host changed, journal still says intent); <kind> is a change kind (firmware_file,
firmware_path, module_removed, module_loaded, ...) or "undo" (after the n-th change was reverted);
#<n> picks the n-th occurrence (1-based, default 1). Example: INTEL_GPU_AGENT_FAULT=after:module_loaded.
Tests in one process pass ``die`` to raise instead of killing themselves.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable

from agent.errors import UsageError
from agent.logs import get_logger

log = get_logger(__name__)

FAULT_ENV = "INTEL_GPU_AGENT_FAULT"
WHEN = ("intent", "after")


def _sigkill(point: str) -> None:
    os.kill(os.getpid(), signal.SIGKILL)


class FaultInjector:
    """Dies at the named point when asked to (tests only); otherwise every ``point`` call is a no-op."""

    def __init__(self, spec: str | None, *, die: Callable[[str], None] = _sigkill) -> None:
        self._when = self._kind = ""
        self._nth = 1
        self._seen: dict[str, int] = {}
        self._die = die
        if spec:
            when, _, rest = spec.partition(":")
            kind, _, nth = rest.partition("#")
            if when not in WHEN or not kind or (nth and not nth.isdigit()):
                raise UsageError(f"{FAULT_ENV}={spec!r}: expected intent|after:<kind>[#<n>]")
            self._when, self._kind, self._nth = when, kind, int(nth or 1)

    @classmethod
    def from_env(cls) -> FaultInjector:
        return cls(os.environ.get(FAULT_ENV) or None)

    def point(self, when: str, kind: str) -> None:
        """Called at every injection point; dies there when it is the one asked for."""
        if not self._kind or when != self._when or kind != self._kind:
            return
        count = self._seen.get(kind, 0) + 1
        self._seen[kind] = count
        if count == self._nth:
            log.warning("fault_injected", when=when, kind=kind, n=count)
            self._die(f"{when}:{kind}#{count}")
