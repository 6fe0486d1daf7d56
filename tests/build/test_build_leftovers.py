"""Scratch entries held by an flock: a dead writer's are swept, a live writer's and links never."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from agent.build.leftovers import held_file, held_folder, sweep


def test_a_held_file_survives_a_sweep_and_is_removed_when_released(tmp_path: Path) -> None:
    with held_file(tmp_path, prefix=".x.", suffix=".part") as (fd, path):
        os.write(fd, b"data")
        assert sweep(tmp_path, ".*.part") == []
        assert path.read_bytes() == b"data"
    assert list(tmp_path.iterdir()) == []


def test_a_held_file_renamed_inside_is_kept(tmp_path: Path) -> None:
    with held_file(tmp_path, prefix=".x.", suffix=".part") as (fd, path):
        os.write(fd, b"done")
        os.replace(path, tmp_path / "final")
    assert (tmp_path / "final").read_bytes() == b"done"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["final"]


def test_an_unlocked_leftover_is_swept_and_a_locked_one_kept(tmp_path: Path) -> None:
    dead = tmp_path / ".a.part"
    dead.write_bytes(b"left by a killed writer")
    live = tmp_path / ".b.part"
    live.write_bytes(b"being written")
    fd = os.open(live, os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        assert sweep(tmp_path, ".*.part") == [dead]
        assert live.exists() and not dead.exists()
    finally:
        os.close(fd)


def test_a_held_folder_survives_a_sweep(tmp_path: Path) -> None:
    with held_folder(tmp_path, prefix=".d.extract-") as staging:
        (staging / "f").write_text("x")
        assert sweep(tmp_path, ".*.extract-*") == []
        assert (staging / "f").exists()
    assert list(tmp_path.iterdir()) == []


def test_links_matching_the_pattern_are_not_followed(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep").write_text("user data")
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    (scratch / ".x.extract-evil").symlink_to(outside)
    assert sweep(scratch, ".*.extract-*") == []
    assert (outside / "keep").read_text() == "user data"
