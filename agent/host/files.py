"""Small, careful file operations on the host: reads that say what failed, atomic writes, hashing."""

from __future__ import annotations

import os
from pathlib import Path

from agent.errors import HostReadError

CHUNK = 1 << 20


def read_text(path: Path, *, what: str) -> str:
    """Read a host file; a missing or unreadable file raises ``HostReadError`` naming it and ``what``."""
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError as e:
        raise HostReadError(f"cannot read {what} from {path}: {e.strerror or e}") from e


def read_optional(path: Path) -> str | None:
    """Read a host file that may legitimately be absent; None when it cannot be read."""
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None


def atomic_write(path: Path, data: bytes, *, mode: int = 0o644) -> None:
    """Write through a temp file in the same folder, fsync, rename: readers see old or new, never half."""
    import tempfile

    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, streamed."""
    import hashlib

    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()
