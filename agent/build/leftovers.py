"""Scratch files and folders held by an flock while written, and the sweep of those a killed writer left.

A download's ``.part`` file and an extraction's staging folder can be gigabytes. A writer killed by
SIGKILL (the pod's memory limit, ``kill -9``) cannot remove them, so the next writer in the same
folder does: an entry whose lock can be taken has no live writer (the kernel drops an flock with the
last descriptor of a dead process). A live writer's entry is never touched.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from agent.logs import get_logger

log = get_logger(__name__)


def _lock_fresh(path: Path, fd: int) -> bool:
    """Lock ``fd`` (waiting out a sweeper that holds it), then whether ``path`` is still that file.

    A sweeper may take the lock of a just-created entry before its writer does, and remove it.
    """
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        return os.stat(path).st_ino == os.fstat(fd).st_ino
    except FileNotFoundError:
        return False


@contextlib.contextmanager
def held_file(folder: Path, *, prefix: str, suffix: str) -> Iterator[tuple[int, Path]]:
    """A new temp file in ``folder``, locked while inside; yields its descriptor and path.

    The file is removed on the way out unless the caller renamed it (rename while still inside: the
    lock must cover the file until it has its final name).
    """
    while True:
        fd, name = tempfile.mkstemp(dir=folder, prefix=prefix, suffix=suffix)
        path = Path(name)
        if _lock_fresh(path, fd):
            break
        os.close(fd)
    try:
        yield fd, path
    finally:
        with contextlib.suppress(FileNotFoundError):
            if os.stat(path).st_ino == os.fstat(fd).st_ino:
                path.unlink()
        os.close(fd)


@contextlib.contextmanager
def held_folder(parent: Path, *, prefix: str) -> Iterator[Path]:
    """A new temp folder in ``parent``, locked while inside (an flock on the folder itself).

    Removed on the way out unless the caller renamed it while inside.
    """
    while True:
        path = Path(tempfile.mkdtemp(dir=parent, prefix=prefix))
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
        if _lock_fresh(path, fd):
            break
        os.close(fd)
    try:
        yield path
    finally:
        with contextlib.suppress(FileNotFoundError):
            if os.stat(path).st_ino == os.fstat(fd).st_ino:
                shutil.rmtree(path, ignore_errors=True)
        os.close(fd)


def sweep(folder: Path, pattern: str) -> list[Path]:
    """Remove the entries of ``folder`` matching ``pattern`` that no live writer holds; return them."""
    removed: list[Path] = []
    if not folder.is_dir():
        return removed
    for path in sorted(folder.glob(pattern)):
        try:
            fd = os.open(path, os.O_RDONLY | (os.O_DIRECTORY if path.is_dir() else 0) | os.O_NOFOLLOW)
        except OSError:
            continue  # gone already, or a link: not ours to follow
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # a live writer
            if os.stat(path, follow_symlinks=False).st_ino != os.fstat(fd).st_ino:
                continue  # replaced since we opened it
            size = _size(path)
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
            removed.append(path)
            log.info("leftover_removed", path=str(path), bytes=size, reason="its writer is gone")
        except FileNotFoundError:
            continue
        finally:
            os.close(fd)
    return removed


def _size(path: Path) -> int:
    if not path.is_dir():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())
