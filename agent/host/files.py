"""Small, careful file operations on the host: reads that say what failed, atomic writes, hashing."""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Iterator
from pathlib import Path

from agent.errors import HostFullError, HostReadError, HostWriteError

CHUNK = 1 << 20
# What a write can meet that is the disk's or the mount's doing, not a bug: said as such, with the errno.
WRITE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EIO, errno.EACCES, errno.EPERM, errno.EFBIG})
_WRITE_HINTS = {
    errno.ENOSPC: "the filesystem is full: free space there or choose another folder",
    errno.EDQUOT: "the disk quota is used up: free space there or choose another folder",
    errno.EROFS: "the filesystem is mounted read-only: choose a writable folder",
    errno.EACCES: "no permission: run as a user that may write there, or choose another folder",
    errno.EPERM: "not permitted: run as a user that may write there, or choose another folder",
}


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


def write_failure(folder: Path, error: OSError) -> HostWriteError | HostFullError:
    """``error`` from writing under ``folder`` as a typed error naming the folder and the errno.

    A full disk is transient (HostFullError, exit 4: retry once there is room); the rest exit 2.
    """
    code = error.errno or 0
    name = errno.errorcode.get(code, str(code))
    kind = HostFullError if code in (errno.ENOSPC, errno.EDQUOT) else HostWriteError
    return kind(
        f"cannot write under {folder}: {error.strerror or error} ({name})",
        hint=_WRITE_HINTS.get(code, "check the disk and the mount"),
    )


@contextlib.contextmanager
def writes_under(folder: Path) -> Iterator[None]:
    """Inside, a write failure of the disk's doing (full, read-only, ...) becomes ``HostWriteError`` for ``folder``."""
    try:
        yield
    except OSError as e:
        if e.errno not in WRITE_ERRNOS:
            raise
        raise write_failure(folder, e) from e


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
