"""The journal: every host change written to <state>/journal.json BEFORE it is made, undone backwards.

Format (schema 1), rewritten whole through an atomic rename after every step:

    {"schema": 1, "phase": "applying" | "applied" | "undoing", "boot_id": "...",
     "tree": "/abs/tree", "tree_digest": "...", "recipe": "testgpu-1.0", "kernel": "6.1.0-57-amd64",
     "mode": "load" | "monitor", "kmsg_mark": 1234,
     "changes": [{"kind": "firmware_file", "key": "...", "status": "intent" | "done", "data": {...}}]}

A change is appended with status "intent" and the journal written before the host is touched; after
the change it is marked "done". A crash between the two leaves "intent": undo treats such a change as
possibly made, so every undo first looks at the host and only reverts what is still ours. Undo walks
the changes backwards and drops each one from the file once it is reverted, so a crash during undo
resumes where it stopped. Kernel state (loaded modules, the firmware path) does not survive a reboot:
a journal from another boot keeps only its file changes (see ``forget_kernel_state``).

Fault injection for tests: INTEL_GPU_AGENT_FAULT=<when>:<kind>[#<n>] kills the process with SIGKILL
at that point, exactly like `kill -9`. <when> is "intent" (journal written, host not yet changed) or
"after" (host changed, journal still says intent); <kind> is a change kind (firmware_file,
firmware_path, module_removed, module_loaded) or "undo" (after the n-th change was reverted);
#<n> picks the n-th occurrence (1-based, default 1). Example: INTEL_GPU_AGENT_FAULT=after:module_loaded.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent.errors import TransientError, UsageError
from agent.host.files import atomic_write
from agent.logs import get_logger

log = get_logger(__name__)

SCHEMA = 1
FAULT_ENV = "INTEL_GPU_AGENT_FAULT"
# Changes that only live in the running kernel: gone after a reboot.
KERNEL_KINDS = frozenset({"firmware_path", "module_removed", "module_loaded"})
INTENT = "intent"
DONE = "done"


@dataclass
class Change:
    """One host change: its kind, a key unique within the journal, its status and what undo needs."""

    kind: str
    key: str
    status: str
    data: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "key": self.key, "status": self.status, "data": self.data}


class FaultInjector:
    """Kills the process at a named point when INTEL_GPU_AGENT_FAULT asks for it (tests only)."""

    def __init__(self, spec: str | None) -> None:
        self._when = self._kind = ""
        self._nth = 1
        self._seen: dict[str, int] = {}
        if spec:
            when, _, rest = spec.partition(":")
            kind, _, nth = rest.partition("#")
            if when not in ("intent", "after") or not kind or (nth and not nth.isdigit()):
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
            os.kill(os.getpid(), signal.SIGKILL)


class Journal:
    """The journal file of one state folder; every mutation is written through before it returns."""

    def __init__(self, path: Path, *, faults: FaultInjector | None = None) -> None:
        self.path = path
        self.faults = faults or FaultInjector(None)
        self.header: dict[str, Any] = {}
        self.changes: list[Change] = []
        self._load()

    def _load(self) -> None:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return
        except OSError as e:
            raise UsageError(f"cannot read the journal {self.path}: {e.strerror or e}") from e
        try:
            data = json.loads(text)
            if data.get("schema") != SCHEMA:
                raise ValueError(f"schema {data.get('schema')!r} is not {SCHEMA}")
            self.changes = [Change(c["kind"], c["key"], c["status"], dict(c.get("data", {}))) for c in data["changes"]]
        except (ValueError, KeyError, TypeError) as e:
            raise UsageError(
                f"the journal {self.path} is unreadable ({e}); the host may hold changes of a previous run: "
                "inspect it, undo them by hand and delete the file"
            ) from e
        self.header = {k: v for k, v in data.items() if k not in ("changes", "schema")}

    @property
    def exists(self) -> bool:
        return bool(self.changes) or bool(self.header)

    @property
    def phase(self) -> str:
        return str(self.header.get("phase", ""))

    def get(self, key: str) -> Change | None:
        return next((c for c in self.changes if c.key == key), None)

    def of_kind(self, kind: str) -> list[Change]:
        return [c for c in self.changes if c.kind == kind]

    def begin(self, **header: Any) -> None:
        """Start (or continue) a run: set the header fields and write the file."""
        self.header.update(header)
        self.save()

    def set(self, **header: Any) -> None:
        self.header.update(header)
        self.save()

    def save(self) -> None:
        """Write the whole journal atomically (temp file, fsync, rename)."""
        data = {"schema": SCHEMA, **self.header, "changes": [c.to_json() for c in self.changes]}
        atomic_write(self.path, (json.dumps(data, indent=1, sort_keys=True) + "\n").encode(), mode=0o600)

    @contextlib.contextmanager
    def change(self, kind: str, key: str, **data: Any) -> Iterator[Change]:
        """Journal a change as intent, let the caller make it, then mark it done.

        A key already journaled keeps its first data (the original host state) and is re-marked intent.
        """
        entry = self.get(key)
        if entry is None:
            entry = Change(kind, key, INTENT, dict(data))
            self.changes.append(entry)
        else:
            entry.status = INTENT
        self.save()
        self.faults.point("intent", kind)
        yield entry
        self.faults.point("after", kind)
        entry.status = DONE
        self.save()

    def settle(self, **header: Any) -> None:
        """After a verified apply every journaled change is in effect: mark the ones a crash left as intent."""
        for change in self.changes:
            change.status = DONE
        self.set(**header)

    def drop(self, change: Change) -> None:
        """Forget a change once it is reverted (or proven never made)."""
        self.changes = [c for c in self.changes if c.key != change.key]
        self.save()
        self.faults.point("after", "undo")

    def forget_kernel_state(self) -> list[Change]:
        """Drop the changes a reboot has undone by itself; return them."""
        gone = [c for c in self.changes if c.kind in KERNEL_KINDS]
        self.changes = [c for c in self.changes if c.kind not in KERNEL_KINDS]
        self.save()
        return gone

    def remove(self) -> None:
        """Delete the journal file: nothing of ours is left on the host."""
        self.changes = []
        self.header = {}
        self.path.unlink(missing_ok=True)


class StateLock:
    """An exclusive lock on the state folder: a second agent on the node refuses to start."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as e:
            os.close(fd)
            raise TransientError(
                f"another intel-gpu-agent holds {self.path}: only one agent may change this node at a time"
            ) from e
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> StateLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
