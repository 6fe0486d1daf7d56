"""The kernel's firmware search path set to our folder: written in place without a newline, the old value kept."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Self

from agent.discovery.security import read_firmware_path
from agent.errors import IntegrityError
from agent.lifecycle.changes.base import ChangeContext, HostChange
from agent.logs import get_logger

log = get_logger(__name__)


def write_path(file: Path, value: str) -> None:
    """Write the path in place (the file may be a bind-mounted sysfs attribute: no rename), no newline.

    An empty value is written as one NUL byte: sysfs ignores a zero-length write, and a newline would
    become part of the path.
    """
    data = value.encode() if value else b"\x00"
    fd = os.open(file, os.O_WRONLY | os.O_TRUNC)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


@dataclass(frozen=True)
class FirmwarePathSet(HostChange):
    """``file`` (the node's path of the kernel parameter) changed from ``previous`` to ``value``."""

    kind: ClassVar[str] = "firmware_path"
    kernel_state: ClassVar[bool] = True

    file: str
    previous: str
    value: str

    @property
    def key(self) -> str:
        return f"{self.kind}:{self.file}"

    def describe(self) -> str:
        return f"firmware search path {self.value!r} (was {self.previous!r})"

    def apply(self, ctx: ChangeContext) -> Self:
        write_path(ctx.on_host(self.file), self.value)
        if read_firmware_path(ctx.host) != self.value:
            raise IntegrityError(f"wrote {self.value!r} to {self.file} but it reads back otherwise")
        log.info("firmware_path_set", value=self.value, previous=self.previous)
        return self

    def in_place(self, ctx: ChangeContext) -> bool:
        return read_firmware_path(ctx.host) == self.value

    def undo(self, ctx: ChangeContext) -> None:
        current = read_firmware_path(ctx.host)
        if current == self.value:
            write_path(ctx.on_host(self.file), self.previous)
            log.info("firmware_path_restored", value=self.previous)
        elif current != self.previous:
            log.warning("firmware_path_changed_by_others", value=current, ours=self.value)
