"""The state lock: one agent at a time may change a node (an exclusive flock on the state folder's lock)."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from agent.errors import TransientError


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
