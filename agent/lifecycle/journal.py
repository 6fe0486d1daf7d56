"""The journal: every host change written to <state>/journal.json BEFORE it is made, undone backwards.

Format (schema 2), rewritten whole through an atomic rename after every step:

    {"schema": 2, "phase": "applying" | "applied" | "undoing", "boot_id": "...", "mode": "load" | "monitor",
     "tree": "/abs/tree", "tree_digest": "...", "recipe": "testgpu-1.0", "kernel": "6.1.0-57-amd64",
     "driver_modules": [...], "kmsg_mark": 1234, "agent_version": "0.1.0",
     "changes": [{"kind": "firmware_file", "key": "...", "status": "intent" | "done", "data": {...}}]}

Each change is a typed ``HostChange`` (agent/lifecycle/changes/), its paths the node's own. A change is
appended as "intent" and the journal written before the host is touched; once made it is marked
"done". A crash between the two leaves "intent": undo treats such a change as possibly made, and every
undo first looks at the host and only reverts what is still ours. Undo walks the changes backwards
and drops each one from the file once it is reverted, so a crash during undo resumes where it stopped.
Kernel state does not survive a reboot: a journal from another boot keeps only its file changes.

A change of a kind this agent does not know (a journal written by a newer agent, read after a chart
rollback) makes the journal read-only: undo and apply stop before touching anything (``JournalError``).
Schema 1 journals (root-prefixed paths) are read by mapping their paths through the current root.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from agent import __version__
from agent.errors import JournalError
from agent.host.files import atomic_write
from agent.lifecycle.changes import HostChange, RecordError, kinds
from agent.lifecycle.changes.base import parse_fields, to_json
from agent.lifecycle.faults import FaultInjector
from agent.logs import get_logger

log = get_logger(__name__)

SCHEMA = 2
INTENT = "intent"
DONE = "done"
STATUSES = (INTENT, DONE)
C = TypeVar("C", bound=HostChange)


@dataclass(frozen=True)
class JournalHeader:
    """What the journal says of the run as a whole."""

    phase: str = ""  # "applying" | "applied" | "undoing"; "" when there is no journal
    mode: str = ""  # "load" | "monitor"
    boot_id: str = ""
    tree: str = ""  # the driver tree as the agent that wrote the journal saw it
    tree_digest: str = ""
    recipe: str = ""
    kernel: str = ""
    driver_modules: tuple[str, ...] = ()
    kmsg_mark: int = -1  # the kernel log's sequence number before the load; -1 when none was taken
    agent_version: str = ""

    @property
    def kmsg_since(self) -> int | None:
        """The mark to read the kernel log from, None when no load of ours was marked."""
        return self.kmsg_mark if self.kmsg_mark >= 0 else None


@dataclass(frozen=True)
class Entry:
    """A journaled change and whether it is known to be made."""

    change: HostChange
    status: str


@dataclass(frozen=True)
class Unknown:
    """A journaled change of a kind this agent does not know: kept as written, never acted on."""

    index: int
    kind: str


class Journal:
    """The journal file of one state folder; every mutation is written through before it returns.

    ``root`` is where the host is visible (the host root): only schema 1 journals, whose paths carried
    it, need it.
    """

    def __init__(self, path: Path, *, root: Path = Path("/"), faults: FaultInjector | None = None) -> None:
        self.path = path
        self.root = root
        self.faults = faults or FaultInjector(None)
        self.header = JournalHeader()
        self.entries: list[Entry] = []
        self.unknown: list[Unknown] = []
        self._load()

    # --- reading --------------------------------------------------------------------------------
    def _load(self) -> None:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return
        except (OSError, UnicodeDecodeError) as e:
            raise JournalError(f"cannot read the journal {self.path}: {getattr(e, 'strerror', None) or e}") from e
        try:
            data = json.loads(text)
        except ValueError as e:
            raise self._unreadable(f"not JSON: {e}") from e
        if not isinstance(data, dict):
            raise self._unreadable(f"a JSON {type(data).__name__}, not an object")
        schema = data.get("schema")
        if schema == 1:
            data = self._from_schema_1(data)
        elif type(schema) is not int or schema > SCHEMA or schema < 1:
            raise JournalError(
                f"the journal {self.path} has schema {schema!r}; this agent ({__version__}) reads schemas 1 to "
                f"{SCHEMA}: it was written by a newer agent (agent_version {data.get('agent_version', '?')!r})",
                hint="undo it with that agent version (`intel-gpu-agent unload`), or roll forward; nothing was touched",
            )
        try:
            self.header = parse_fields(JournalHeader, {k: v for k, v in data.items() if k not in ("schema", "changes")})
            records = data.get("changes", [])
            if not isinstance(records, list):
                raise RecordError("changes must be a list")
            known = kinds()
            for index, record in enumerate(records):
                if not isinstance(record, dict) or not isinstance(record.get("kind"), str):
                    raise RecordError(f"change {index} is not an object with a kind")
                if record["kind"] not in known:
                    self.unknown.append(Unknown(index, record["kind"]))
                    continue
                status = record.get("status")
                if status not in STATUSES:
                    raise RecordError(f"change {index}: status {status!r} is not one of {', '.join(STATUSES)}")
                try:
                    change = known[record["kind"]].from_record(record.get("data", {}))
                except TypeError as e:  # a field the dataclass refuses
                    raise RecordError(f"change {index}: {e}") from e
                self.entries.append(Entry(change, status))
        except RecordError as e:
            raise self._unreadable(str(e)) from e

    def _unreadable(self, why: str) -> JournalError:
        return JournalError(
            f"the journal {self.path} is unreadable ({why}); the host may hold changes of a previous run",
            hint="inspect it, undo them by hand and delete the file",
        )

    def _from_schema_1(self, data: dict[str, Any]) -> dict[str, Any]:
        """Schema 1 stored firmware paths with the writer's host root in front: map them to node paths."""
        prefix = str(self.root).rstrip("/")

        def node(path: Any) -> Any:
            if not isinstance(path, str) or not path:
                return path
            if prefix and not (path == prefix or path.startswith(prefix + "/")):
                raise JournalError(
                    f"the journal {self.path} (schema 1) names {path}, which is not under the host root {self.root}: "
                    "it was written by an agent that saw the host elsewhere",
                    hint="run `unload` with the --host-root it was written under; nothing was touched",
                )
            return path[len(prefix) :] or "/"

        changes = []
        for old in data.get("changes", []):
            record = old
            if isinstance(old, dict) and isinstance(old.get("data"), dict):
                fields = dict(old["data"])
                if old.get("kind") == "firmware_file":
                    fields["path"] = node(fields.get("path"))
                    fields["backup"] = node(fields.get("backup", ""))
                    fields["created"] = [node(p) for p in fields.get("created", [])]
                elif old.get("kind") == "firmware_path":
                    fields["file"] = str(old.get("key", "")).partition(":")[2]
                record = {**old, "data": fields}
            changes.append(record)
        return {**data, "schema": SCHEMA, "changes": changes}

    # --- what it holds --------------------------------------------------------------------------
    @property
    def exists(self) -> bool:
        return bool(self.entries) or bool(self.unknown) or self.header != JournalHeader()

    @property
    def phase(self) -> str:
        return self.header.phase

    @property
    def changes(self) -> list[HostChange]:
        return [e.change for e in self.entries]

    def get(self, key: str) -> Entry | None:
        return next((e for e in self.entries if e.change.key == key), None)

    def of_kind(self, kind: type[C]) -> list[C]:
        return [e.change for e in self.entries if isinstance(e.change, kind)]

    def require_known(self) -> None:
        """Refuse to act on a journal that holds kinds this agent does not know (exit 2, nothing touched)."""
        if self.unknown:
            names = ", ".join(f"{u.kind!r} (change {u.index})" for u in self.unknown)
            raise JournalError(
                f"the journal {self.path} holds changes of a kind this agent ({__version__}) does not know: {names}; "
                f"it was written by agent {self.header.agent_version or 'of another version'}; nothing was touched",
                hint="undo it with the agent version that wrote it (`intel-gpu-agent unload`), then use this one",
            )

    # --- changing it ----------------------------------------------------------------------------
    def update(self, **fields: Any) -> None:
        """Set header fields and write the file."""
        self.require_known()
        self.header = dataclasses.replace(self.header, agent_version=__version__, **fields)
        self.save()

    def intent(self, change: HostChange) -> None:
        """Journal ``change`` as about to be made. A key already journaled keeps its first data (the original
        host state) and is marked intent again."""
        self.require_known()
        existing = self.get(change.key)
        if existing is None:
            self.entries.append(Entry(change, INTENT))
        else:
            self._replace(Entry(existing.change, INTENT))
        self.save()
        self.faults.point("intent", change.kind)

    def done(self, made: HostChange) -> None:
        """Mark a change made; ``made`` is the change as made (e.g. with what a modprobe pulled in)."""
        self.faults.point("after", made.kind)
        existing = self.get(made.key)
        kept = existing.change.merge(made) if existing is not None else made
        self._replace(Entry(kept, DONE))
        self.save()

    def settle(self, **fields: Any) -> None:
        """After a verified apply every journaled change is in effect: mark the ones a crash left as intent."""
        self.entries = [Entry(e.change, DONE) for e in self.entries]
        self.update(**fields)

    def drop(self, *changes: HostChange) -> None:
        """Forget changes once they are reverted (or proven never made): one write for all of them."""
        keys = {c.key for c in changes}
        self.entries = [e for e in self.entries if e.change.key not in keys]
        self.save()
        for _ in changes:
            self.faults.point("after", "undo")

    def forget_kernel_state(self) -> list[HostChange]:
        """Drop the changes a reboot has undone by itself; return them."""
        gone = [e.change for e in self.entries if e.change.kernel_state]
        self.entries = [e for e in self.entries if not e.change.kernel_state]
        self.save()
        return gone

    def remove(self) -> None:
        """Delete the journal file: nothing of ours is left on the host."""
        self.require_known()
        self.entries = []
        self.header = JournalHeader()
        self.path.unlink(missing_ok=True)

    def save(self) -> None:
        """Write the whole journal atomically (temp file, fsync, rename)."""
        self.require_known()
        data = {
            "schema": SCHEMA,
            **to_json(dataclasses.asdict(self.header)),
            "changes": [
                {"kind": e.change.kind, "key": e.change.key, "status": e.status, "data": e.change.record()}
                for e in self.entries
            ],
        }
        atomic_write(self.path, (json.dumps(data, indent=1, sort_keys=True) + "\n").encode(), mode=0o600)

    def _replace(self, entry: Entry) -> None:
        self.entries = [entry if e.change.key == entry.change.key else e for e in self.entries]
