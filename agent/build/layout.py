"""The build's folders on disk: up-to-date checks, the output swap, stale leftovers, the source link, locks."""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from agent.errors import TransientError, UsageError
from agent.tree import MANIFEST, DriverTree, load_tree


def up_to_date(out: Path, kernel: str, digest: str) -> DriverTree | None:
    """The tree at ``out`` when it was built from exactly these inputs and is still whole."""
    if not (out / MANIFEST).is_file():
        return None
    try:
        tree = load_tree(out)
    except UsageError:
        return None
    manifest = tree.manifest
    if manifest.inputs_digest != digest or manifest.kernel != kernel:
        return None
    if not all((out / m.path).is_file() for m in manifest.modules):
        return None
    if not all((out / f.path).is_file() for f in manifest.firmware):
        return None
    return tree


def check_out(out: Path) -> None:
    """Only an absent or empty folder, or an older driver tree, may be replaced."""
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} is a file, not a folder")
    if out.is_dir() and any(out.iterdir()) and not (out / MANIFEST).is_file():
        raise UsageError(
            f"--out {out} is not empty and is not a driver tree (no {MANIFEST}): refusing to replace it",
            hint="give an empty or new folder",
        )


def register_source(link: Path, source_root: Path) -> None:
    """DKMS's <name>/<version>/source: which source this release's builds use (a link, replaced atomically)."""
    if link.is_symlink() and link.readlink() == source_root:
        return
    tmp = link.with_name(f".source.{os.getpid()}")
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(source_root)
    os.replace(tmp, link)


def remove_stale(out: Path) -> None:
    """Staging and old-tree folders a killed build (SIGKILL, power loss) left beside ``out``."""
    for stale in out.parent.glob(f".{out.name}.building-*"):
        shutil.rmtree(stale, ignore_errors=True)
    for stale in out.parent.glob(f".{out.name}.old-*"):
        shutil.rmtree(stale, ignore_errors=True)


def swap_in(staging: Path, out: Path) -> None:
    """Replace ``out`` by the finished tree with renames: readers see the old tree or the new one."""
    old = None
    if out.exists():
        old = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.old-"))
        os.replace(out, old / "tree")
    os.replace(staging, out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def locked(path: Path, *, what: str) -> Iterator[None]:
    """One build per (recipe, kernel) folder at a time."""
    with path.open("a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as e:
            raise TransientError(f"another build of {what} is running (lock {path})", hint="retry when it ends") from e
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
