"""What every kind of host change is: a frozen record with apply, in_place, undo and describe.

A change is data: the journal stores it (``record``) before it is made, and any later agent reads it
back (``from_record``) to check it (``in_place``) or revert it (``undo``). Collaborators (the host's
paths, the module commands) come in through a ``ChangeContext``, never from the record. Paths in a
record are the node's own ("/var/lib/firmware/i915/x.bin"): the same journal undoes correctly whether
the agent sees the host at "/" or at "/host".

A subclass names its journal ``kind``; defining it in a module of this package is all it takes for the
journal to know it (see ``agent.lifecycle.changes.kinds``).
"""

from __future__ import annotations

import dataclasses
import errno
import typing
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Self

from agent.errors import AgentError, HostFullError, HostWriteError

if TYPE_CHECKING:
    from agent.discovery.modules import LoadedModule
    from agent.host.paths import HostPaths
    from agent.lifecycle.modules import Modules


class RecordError(ValueError):
    """A journal record that does not fit its kind (the journal names the file and the entry)."""


@dataclass
class ChangeContext:
    """What a change needs to act on the host: its paths and the module commands.

    ``driver_modules`` name the driver's modules, so a busy unload can name the processes holding
    them. ``cache_modules`` lets a read-only pass (warm restart, status) read /proc/modules once.
    """

    host: HostPaths
    modules: Modules
    driver_modules: tuple[str, ...] = ()
    cache_modules: bool = False
    _loaded: dict[str, LoadedModule] | None = field(default=None, repr=False)
    _detailed: frozenset[str] = field(default=frozenset(), repr=False)

    def loaded(self, detail: Sequence[str] = ()) -> dict[str, LoadedModule]:
        """The loaded modules, with version and srcversion for those in ``detail``."""
        if not self.cache_modules:
            return self.modules.loaded(detail)
        wanted = frozenset(detail) | frozenset(self.driver_modules)
        if self._loaded is None or not wanted <= self._detailed:
            self._detailed = wanted | self._detailed
            self._loaded = self.modules.loaded(sorted(self._detailed))
        return self._loaded

    def on_host(self, node_path: str) -> Path:
        """A journaled node path under the current host root; a path that escapes it is refused."""
        try:
            return self.host.from_host_path(node_path)
        except ValueError as e:
            raise HostWriteError(f"refusing a journaled path: {e}") from e


class HostChange(ABC):
    """One kind of host change. Subclasses are frozen dataclasses with a class-level ``kind``."""

    kind: ClassVar[str]
    # Kernel state (loaded modules, the firmware path) does not survive a reboot; files do.
    kernel_state: ClassVar[bool] = False
    registry: ClassVar[dict[str, type[HostChange]]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "kind" in cls.__dict__:
            HostChange.registry[cls.kind] = cls

    @property
    @abstractmethod
    def key(self) -> str:
        """Unique within a journal: a second change of the same thing is the same entry."""

    @abstractmethod
    def apply(self, ctx: ChangeContext) -> Self:
        """Make the change on the host; returns it as made (e.g. with the modules a modprobe pulled in)."""

    @abstractmethod
    def in_place(self, ctx: ChangeContext) -> bool:
        """Whether the host holds this change right now (a warm restart changes nothing when all do)."""

    @abstractmethod
    def undo(self, ctx: ChangeContext) -> None:
        """Revert the change if the host still holds it; leave alone whatever someone else changed since.

        Also called for a change journaled as intent, which may or may not have been made.
        """

    @abstractmethod
    def describe(self) -> str:
        """One line for people: what this change is."""

    @classmethod
    def apply_all(cls, ctx: ChangeContext, changes: Sequence[Self]) -> list[Self]:
        """Make several changes of this kind at once (one command for all, where the kind can)."""
        return [change.apply(ctx) for change in changes]

    @classmethod
    def undo_all(cls, ctx: ChangeContext, changes: Sequence[Self]) -> None:
        """Revert several changes of this kind, in the order given (one command for all, where it can)."""
        for change in changes:
            change.undo(ctx)

    # --- the journal record --------------------------------------------------------------------
    def record(self) -> dict[str, Any]:
        """The change as JSON data: its fields, tuples as lists."""
        return {f.name: to_json(getattr(self, f.name)) for f in dataclasses.fields(self)}  # type: ignore[arg-type]

    def brief(self) -> dict[str, Any]:
        """The fields `status` shows."""
        return self.record()

    @classmethod
    def from_record(cls, data: Mapping[str, Any]) -> Self:
        """Read a record back, checking every field's type; ``RecordError`` says which field is wrong."""
        if not isinstance(data, Mapping):
            raise RecordError(f"the data of a {cls.kind} change is not an object")
        return parse_fields(cls, data, where=cls.kind)

    def merge(self, made: Self) -> Self:
        """The entry to keep when a change journaled before is made again: the first record (the host's
        original state) by default."""
        return self


T = typing.TypeVar("T")


def parse_fields(cls: type[T], data: Mapping[str, Any], *, where: str = "") -> T:
    """A dataclass from JSON data, every field's type checked; unknown keys are ignored (a newer writer's)."""
    where = where or cls.__name__
    hints = typing.get_type_hints(cls)
    values: dict[str, Any] = {}
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        if f.name not in data:
            if f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING:
                continue
            raise RecordError(f"{where}: field {f.name!r} is missing")
        values[f.name] = _from_json(data[f.name], hints[f.name], f"{where}.{f.name}")
    return cls(**values)


def host_write_error(error: OSError, what: str) -> AgentError:
    """A failed host write as a typed error: a full disk is worth a retry, a read-only one is not."""
    reason = error.strerror or str(error)
    where = f" ({error.filename})" if error.filename else ""
    if error.errno in (errno.ENOSPC, errno.EDQUOT):
        return HostFullError(f"{what} failed: {reason}{where}", hint="free space there; the agent retries")
    return HostWriteError(
        f"{what} failed: {reason}{where}",
        hint="the host folder must be writable by the agent (check the pod's hostPath mounts)",
    )


def to_json(value: Any) -> Any:
    """Tuples as lists, recursively: what json.dumps writes."""
    if isinstance(value, tuple):
        return [to_json(v) for v in value]
    if isinstance(value, Mapping):
        return {k: to_json(v) for k, v in value.items()}
    return value


def _from_json(value: Any, hint: Any, where: str) -> Any:
    """Check ``value`` against a field's type (str, int, bool, tuple[str, ...], dict[str, str])."""
    origin = typing.get_origin(hint)
    if hint is bool or hint is str:
        if type(value) is not hint:
            raise RecordError(f"{where} must be a {hint.__name__}, got {value!r}")
        return value
    if hint is int:
        if type(value) is not int:
            raise RecordError(f"{where} must be an integer, got {value!r}")
        return value
    if origin is tuple:
        (item, _ellipsis) = typing.get_args(hint)
        if not isinstance(value, list):
            raise RecordError(f"{where} must be a list, got {value!r}")
        return tuple(_from_json(v, item, f"{where}[{i}]") for i, v in enumerate(value))
    if origin is dict or origin is Mapping:
        key_type, value_type = typing.get_args(hint)
        if not isinstance(value, dict):
            raise RecordError(f"{where} must be an object, got {value!r}")
        return {
            _from_json(k, key_type, f"{where} key"): _from_json(v, value_type, f"{where}[{k!r}]")
            for k, v in value.items()
        }
    raise RecordError(f"{where}: the journal cannot hold a field of type {hint!r}")
