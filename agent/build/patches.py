"""Unified diffs: parsed strictly and applied like `patch -p1 --forward --batch` without fuzz, all or nothing.

Only what the project's own fixes use: edits of existing files, `a/` and `b/` prefixes, hunks that may
have moved (an offset is fine, as with patch) but whose context must match exactly.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from agent.errors import BuildError, UsageError

_HUNK = re.compile(r"^@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@")


class PatchDoesNotApplyError(BuildError):
    """A fix's hunk does not match the source it should change (exit 5: permanent for this source)."""


NOT_FOR_THIS_SOURCE = "the fix was written for another release; --no-compat-fixes builds without the fixes"


@dataclass(frozen=True)
class Hunk:
    """One change: the lines expected at ``old_start`` (1-based) and what replaces them."""

    old_start: int
    old: tuple[str, ...]
    new: tuple[str, ...]


@dataclass(frozen=True)
class FilePatch:
    """The hunks for one file, by its path in the source tree (``a/`` prefix removed)."""

    path: str
    hunks: tuple[Hunk, ...]


def parse_patch(text: str, *, source: str) -> tuple[FilePatch, ...]:
    """The files and hunks of a unified diff; text before the first ``---`` (a description) is ignored."""
    lines = text.splitlines(keepends=True)
    files: list[FilePatch] = []
    i = 0
    while i < len(lines):
        if not (lines[i].startswith("--- ") and i + 1 < len(lines) and lines[i + 1].startswith("+++ ")):
            i += 1
            continue
        path = _strip_prefix(lines[i + 1][4:].split("\t")[0].strip(), source=source)
        i += 2
        hunks = []
        while i < len(lines) and lines[i].startswith("@@"):
            hunk, i = _hunk(lines, i, source=source)
            hunks.append(hunk)
        if not hunks:
            raise UsageError(f"patch {source}: no hunk for {path}")
        files.append(FilePatch(path, tuple(hunks)))
    if not files:
        raise UsageError(f"patch {source} holds no unified diff (no '--- a/...' and '+++ b/...' lines)")
    return tuple(files)


def _strip_prefix(name: str, *, source: str) -> str:
    parts = PurePosixPath(name).parts
    if name == "/dev/null" or len(parts) < 2 or parts[0] != "b" or ".." in parts:
        raise UsageError(f"patch {source}: {name!r} is not b/<path> inside the source tree (only edits are supported)")
    return PurePosixPath(*parts[1:]).as_posix()


def _hunk(lines: Sequence[str], i: int, *, source: str) -> tuple[Hunk, int]:
    match = _HUNK.match(lines[i])
    if match is None:
        raise UsageError(f"patch {source}: malformed hunk header {lines[i].rstrip()!r}")
    old_count = int(match[2]) if match[2] is not None else 1
    new_count = int(match[4]) if match[4] is not None else 1
    old: list[str] = []
    new: list[str] = []
    i += 1
    while i < len(lines):
        line = lines[i]
        if line.startswith("\\"):  # "\ No newline at end of file": the line before has no newline
            previous = lines[i - 1][:1]
            for side, tags in ((old, " -"), (new, " +")):
                if previous in tags and side:
                    side[-1] = side[-1].rstrip("\r\n")
            i += 1
            continue
        if len(old) >= old_count and len(new) >= new_count:
            break
        tag = line[:1]
        if tag == " " or line in ("\n", "\r\n"):  # some editors drop the space of an empty context line
            body = line[1:] if tag == " " else line
            old.append(body)
            new.append(body)
        elif tag == "-":
            old.append(line[1:])
        elif tag == "+":
            new.append(line[1:])
        else:
            break
        i += 1
    if (len(old), len(new)) != (old_count, new_count):
        raise UsageError(
            f"patch {source}: hunk at line {match[1]} has {len(old)}/{len(new)} lines, its header says "
            f"{old_count}/{new_count}"
        )
    return Hunk(int(match[1]), tuple(old), tuple(new)), i


def changed_files(
    patches: Sequence[FilePatch], tree: Path, *, name: str, pending: dict[Path, str] | None = None
) -> dict[Path, str]:
    """The new content of every file the patch edits, computed in memory; raises before anything is written.

    ``pending`` holds files already changed in memory by earlier patches: fixes chain without touching disk.
    """
    results: dict[Path, str] = dict(pending or {})
    for file_patch in patches:
        path = tree / file_patch.path
        if not path.is_file():
            raise PatchDoesNotApplyError(
                f"compat fix {name} does not apply: {file_patch.path} is not in the source",
                hint=NOT_FOR_THIS_SOURCE,
            )
        text = results[path] if path in results else path.read_text(encoding="utf-8", errors="surrogateescape")
        results[path] = _apply(file_patch, text, name=name)
    return results


def write_files(results: dict[Path, str]) -> None:
    """Write what ``changed_files`` computed, each file replaced by a rename."""
    for path, text in results.items():
        _replace(path, text)


def _apply(file_patch: FilePatch, text: str, *, name: str) -> str:
    lines = text.splitlines(keepends=True)
    offset = 0
    floor = 0  # hunks apply in order: a later one never matches before an earlier one
    for number, hunk in enumerate(file_patch.hunks, start=1):
        expected = hunk.old_start - 1 + offset if hunk.old else hunk.old_start + offset
        at = _find(lines, hunk.old, expected, floor)
        if at < 0:
            applied = _find(lines, hunk.new, expected, floor) >= 0 and hunk.new != hunk.old
            why = "its change is already there (applied twice?)" if applied else "the lines it changes are not there"
            raise PatchDoesNotApplyError(
                f"compat fix {name} does not apply to {file_patch.path}: hunk #{number} (at line {hunk.old_start}) "
                f"does not match: {why}",
                hint=NOT_FOR_THIS_SOURCE,
            )
        lines[at : at + len(hunk.old)] = list(hunk.new)
        offset = at - (hunk.old_start - 1) + len(hunk.new) - len(hunk.old)
        floor = at + len(hunk.new)
    return "".join(lines)


def _find(lines: Sequence[str], wanted: Sequence[str], expected: int, floor: int) -> int:
    """The start nearest ``expected`` (not before ``floor``) where ``wanted`` matches exactly, else -1."""
    size = len(wanted)
    last = len(lines) - size
    for distance in range(max(expected - floor, last - expected, 0) + 1):
        for at in (expected - distance, expected + distance) if distance else (expected,):
            if floor <= at <= last and all(lines[at + k] == wanted[k] for k in range(size)):
                return at
    return -1


def _replace(path: Path, text: str) -> None:
    """Write through a temp file beside ``path`` and rename, keeping its mode."""
    mode = path.stat().st_mode & 0o7777
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".patched")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", errors="surrogateescape", newline="") as handle:
            handle.write(text)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
