"""A full disk under --out (issue 11 F11): a typed error naming the folder and the errno; the old tree kept whole."""

from __future__ import annotations

import contextlib
import errno
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from build.buildlib import DRIVER, headers_kernel, make_builder, recipe
from tooling import need_tool

from agent.errors import HostFullError, HostWriteError
from agent.host.files import atomic_write, write_failure, writes_under
from agent.tree import load_tree


@contextlib.contextmanager
def small_disk(where: Path, size: str) -> Iterator[Path]:
    """A real tmpfs of ``size`` mounted at ``where`` (the machine's root may mount; CI runs as root)."""
    mount, umount = need_tool("mount"), need_tool("umount")
    where.mkdir(parents=True)
    subprocess.run([mount, "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)], check=True)
    try:
        yield where
    finally:
        subprocess.run([umount, str(where)], check=True)


def _fill(disk: Path) -> None:
    """Use up what is left on ``disk``."""
    with (disk / "filler").open("wb", buffering=0) as handle, contextlib.suppress(OSError):
        while True:
            handle.write(b"\0" * 512)


@pytest.mark.real_commands
def test_a_full_disk_under_out_is_a_typed_error_and_the_old_tree_is_kept(tmp_path: Path) -> None:
    kernel = headers_kernel()
    source = tmp_path / "source"
    shutil.copytree(DRIVER, source)
    with small_disk(tmp_path / "disk", "8m") as disk:
        out = disk / "out"
        first = make_builder(tmp_path / "cache").build(recipe(), kernel, out, source=str(source))
        _fill(disk)
        # Other inputs: the build compiles (elsewhere) and must then stage a second tree on the full disk.
        (source / "README.md").write_text("changed\n")
        with pytest.raises(HostFullError) as caught:
            make_builder(tmp_path / "cache").build(recipe(), kernel, out, source=str(source))
        assert caught.value.exit_code == 4, "a full disk is transient: retry once there is room"
        assert f"cannot write under {disk}" in str(caught.value)
        assert "ENOSPC" in str(caught.value)
        assert load_tree(out).manifest == first.manifest, "the tree that was there is whole"
        assert sorted(p.name for p in disk.iterdir()) == ["filler", "out"], "no staging left behind"


def test_the_error_names_the_folder_and_errno() -> None:
    error = write_failure(Path("/var/cache/x"), OSError(errno.EROFS, "Read-only file system"))
    assert str(error).startswith("cannot write under /var/cache/x: Read-only file system (EROFS)")
    assert "read-only" in str(error)


def test_only_the_disks_errors_are_translated(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError), writes_under(tmp_path):
        (tmp_path / "missing" / "x").read_text()
    with pytest.raises(HostFullError), writes_under(tmp_path):
        raise OSError(errno.ENOSPC, "No space left on device")
    with pytest.raises(HostWriteError), writes_under(tmp_path):
        raise OSError(errno.EROFS, "Read-only file system")


def test_an_atomic_write_on_a_full_disk_leaves_no_temp_file(tmp_path: Path) -> None:
    with small_disk(tmp_path / "disk", "64k") as disk:
        with pytest.raises(OSError) as caught:
            atomic_write(disk / "big", b"\0" * (1 << 20))
        assert caught.value.errno == errno.ENOSPC
        assert list(disk.iterdir()) == []
