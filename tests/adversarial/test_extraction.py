"""A SIGKILLed extraction (issue 11 F5): its staging folder is removed by the next extraction, a live one never."""

from __future__ import annotations

import gzip
import io
import os
import signal
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from adversarial.httpd import wait_for
from tooling import REPO

from agent.build.sources import safe_extract

BIG = 1 << 30  # one member of this many zero bytes: seconds to unpack, 1 MB to store


def _big_tarball(path: Path) -> None:
    """A .tar.gz whose one member takes long to write out (so a kill lands mid-extraction)."""
    info = tarfile.TarInfo("top/zeros.bin")
    info.size = BIG

    class Zeros(io.RawIOBase):
        left = BIG

        def readable(self) -> bool:
            return True

        def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
            n = min(len(buffer), self.left)
            buffer[:n] = bytes(n)
            self.left -= n
            return n

    with gzip.open(path, "wb", compresslevel=1) as raw, tarfile.open(fileobj=raw, mode="w|") as archive:
        archive.addfile(info, io.BufferedReader(Zeros(), 1 << 20))


def _small_tarball(path: Path) -> None:
    with tarfile.open(path, "w") as archive:
        info = tarfile.TarInfo("top/a.c")
        info.size = 6
        archive.addfile(info, io.BytesIO(b"int a;"))


CHILD = """
import sys
from pathlib import Path
from agent.build.sources import safe_extract
safe_extract(Path(sys.argv[1]), Path(sys.argv[2]))
"""


def _staging(unpacked: Path) -> list[Path]:
    return sorted(p for p in unpacked.glob(".*.extract-*") if p.is_dir())


def _extracting(tarball: Path, dest: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-c", CHILD, str(tarball), str(dest)], env={**os.environ, "PYTHONPATH": str(REPO)}
    )


def _written(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


@pytest.fixture(scope="module")
def big(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("big") / "big.tar.gz"
    _big_tarball(path)
    return path


def test_f5_a_killed_extraction_leaves_staging_that_the_next_one_removes(tmp_path: Path, big: Path) -> None:
    unpacked = tmp_path / "unpacked"
    child = _extracting(big, unpacked / "aaaa")
    try:
        wait_for(lambda: _staging(unpacked) and _written(_staging(unpacked)[0]) > (8 << 20), timeout=120, what="data")
        child.send_signal(signal.SIGKILL)
        assert child.wait(timeout=30) == -signal.SIGKILL
    finally:
        child.kill()
        child.wait()
    left = _staging(unpacked)
    assert len(left) == 1 and _written(left[0]) > 0, "SIGKILL leaves the staging folder (what the next run cleans)"
    assert not (unpacked / "aaaa").exists()
    small = tmp_path / "small.tar"
    _small_tarball(small)
    safe_extract(small, unpacked / "bbbb")
    assert _staging(unpacked) == []
    assert (unpacked / "bbbb/top/a.c").read_bytes() == b"int a;"


def test_f5_a_live_extraction_keeps_its_staging_folder(tmp_path: Path, big: Path) -> None:
    unpacked = tmp_path / "unpacked"
    child = _extracting(big, unpacked / "aaaa")
    try:
        wait_for(lambda: _staging(unpacked), timeout=120, what="the child's staging folder")
        live = _staging(unpacked)
        small = tmp_path / "small.tar"
        _small_tarball(small)
        safe_extract(small, unpacked / "bbbb")
        assert _staging(unpacked) == live, "another extraction's staging folder is left alone while it runs"
        assert child.poll() is None
    finally:
        child.kill()
        child.wait()
