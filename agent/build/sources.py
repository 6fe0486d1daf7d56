"""Build inputs: a URL, a tarball or a folder, pinned by sha256, cached by sha256 and extracted safely."""

from __future__ import annotations

import hashlib
import os
import stat
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from agent.errors import HostFullError, HostWriteError, IntegrityError, UsageError
from agent.host.files import CHUNK, WRITE_ERRNOS, read_optional, sha256_file, writes_under

if TYPE_CHECKING:
    import tarfile

    from agent.recipes.model import Archive, Recipe

URL = "url"
TARBALL = "tarball"
FOLDER = "folder"
LOOPBACK = ("127.0.0.1", "localhost", "::1")


@dataclass(frozen=True)
class InputSpec:
    """One build input as given: what kind, where, its pin, and the folder layout inside it."""

    what: str  # "source" or "firmware": used in messages and option names
    kind: str
    location: str
    sha256: str
    top_folder: str = ""
    subdir: str = ""

    def identity(self) -> str:
        """What pins the content: the sha256 for a pinned input, else a digest of what is there now."""
        if self.sha256:
            return self.sha256
        if self.kind == FOLDER:
            return folder_digest(Path(self.location))
        return sha256_file(Path(self.location))


def input_spec(
    recipe: Recipe, archive: Archive, *, what: str, override: str | None = None, override_sha256: str | None = None
) -> InputSpec:
    """The input to use: ``override`` (--source/--firmware) or the recipe's, with its sha256 pin.

    An explicit URL other than the recipe's must be pinned with --<what>-sha256: every download is
    checked before it is used. Plain http is only accepted for loopback mirrors (tests, a local cache):
    the sha256 pin still guards the content.
    """
    location = recipe.resolve(override) if override else recipe.resolve(archive.url)
    sha = (override_sha256 or "").strip().lower()
    if sha and (len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha)):
        raise UsageError(f"--{what}-sha256 is not a sha256 (64 hex digits): {override_sha256!r}")
    if not sha and (override is None or location == recipe.resolve(archive.url)):
        sha = archive.sha256
    if location.startswith(("https://", "http://")):
        parts = urlsplit(location)
        if parts.scheme == "http" and parts.hostname not in LOOPBACK:
            raise UsageError(f"--{what} {location}: plain http is only allowed from a loopback mirror; use https")
        if not sha:
            raise UsageError(
                f"--{what} {location} is not the recipe's {what} URL and is not pinned",
                hint=f"pass its sha256 with --{what}-sha256",
            )
        return InputSpec(what, URL, location, sha, archive.top_folder, archive.subdir)
    path = Path(location)
    if path.is_dir():
        # A folder is the unpacked input itself; a pin cannot apply to it.
        return InputSpec(what, FOLDER, str(path), "", archive.top_folder, archive.subdir)
    if path.is_file():
        return InputSpec(what, TARBALL, str(path), sha, archive.top_folder, archive.subdir)
    raise UsageError(f"{what} {location} does not exist (expected a URL, a tarball or a folder)")


def redact_url(url: str) -> str:
    """A URL without its credentials, for logs and manifests (http://user:pw@proxy:3128 → http://***@proxy:3128)."""
    scheme, sep, rest = url.partition("://")
    authority, slash, path = rest.partition("/")
    if not sep or "@" not in authority:
        return url
    return f"{scheme}://***@{authority.rsplit('@', 1)[1]}{slash}{path}"


def folder_digest(root: Path) -> str:
    """A digest of a folder's names, modes and contents (symlinks by their target), order-independent."""
    digest = hashlib.sha256()
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        base = Path(dirpath)
        for name in sorted(filenames + [d for d in dirnames if (base / d).is_symlink()]):
            path = base / name
            rel = path.relative_to(root).as_posix()
            info = path.lstat()
            if stat.S_ISLNK(info.st_mode):
                digest.update(f"L {rel} {os.readlink(path)}\0".encode())
                continue
            executable = "x" if info.st_mode & 0o111 else "-"
            digest.update(f"F {rel} {executable} {info.st_size}\0".encode())
            with path.open("rb") as handle:
                while chunk := handle.read(CHUNK):
                    digest.update(chunk)
    return digest.hexdigest()


def verify_file(path: Path, sha256: str, *, what: str) -> None:
    """Raise ``IntegrityError`` unless ``path`` has the pinned sha256 (a blank pin checks nothing)."""
    if not sha256:
        return
    actual = sha256_file(path)
    if actual != sha256:
        raise IntegrityError(
            f"{what} {path} has sha256 {actual}, expected {sha256}: refusing to use it",
            hint="the file is corrupt or not the pinned release; fetch it again or fix the pin",
        )


def check_member(member: tarfile.TarInfo, *, tarball: Path) -> None:
    """Refuse members that could write outside the extraction folder or create device nodes."""
    name = member.name
    parts = PurePosixPath(name).parts
    problem = ""
    if name.startswith("/") or (parts and parts[0].endswith(":")):
        problem = "absolute path"
    elif ".." in parts:
        problem = "'..' in path"
    elif member.isdev() or member.isfifo():
        problem = "device or fifo"
    elif member.issym():
        target = member.linkname
        if target.startswith("/"):
            problem = f"symlink to absolute path {target}"
        elif not _inside(PurePosixPath(name).parent / target):
            problem = f"symlink escaping the archive ({target})"
    elif member.islnk() and (member.linkname.startswith("/") or not _inside(PurePosixPath(member.linkname))):
        problem = f"hard link escaping the archive ({member.linkname})"
    elif not (member.isfile() or member.isdir() or member.issym() or member.islnk()):
        problem = "unsupported member type"
    if problem:
        raise IntegrityError(
            f"tarball {tarball} holds an unsafe entry {name!r} ({problem}): refusing to extract it",
            hint="the archive is malformed or malicious; use the release's own tarball",
        )


def _inside(path: PurePosixPath) -> bool:
    """Whether a relative archive path stays inside the archive once '..' parts are applied."""
    depth = 0
    for part in path.parts:
        if part == "..":
            depth -= 1
        elif part not in (".", ""):
            depth += 1
        if depth < 0:
            return False
    return True


def safe_extract(tarball: Path, dest: Path) -> None:
    """Extract ``tarball`` into the new folder ``dest`` after checking every member; all or nothing.

    The staging folder is locked while it is filled, so that the staging folders of killed
    extractions (SIGKILL, the memory limit) are removed by the next one, and a live one never.
    """
    import tarfile

    from agent.build.leftovers import held_folder, sweep

    with writes_under(dest.parent):
        dest.parent.mkdir(parents=True, exist_ok=True)
        sweep(dest.parent, ".*.extract-*")
        with held_folder(dest.parent, prefix=f".{dest.name}.extract-") as staging:
            try:
                with tarfile.open(tarball, "r:*") as archive:
                    members = archive.getmembers()
                    for member in members:
                        check_member(member, tarball=tarball)
                    # The data filter re-checks every member; it is the second lock on the same door.
                    # Python before 3.11.4 (Debian 12's 3.11.2, the driver image's) has no filters.
                    if hasattr(tarfile, "data_filter"):
                        archive.extractall(staging, members=members, filter="data")
                    else:
                        archive.extractall(staging, members=members)  # noqa: S202 - every member checked above
            except (tarfile.TarError, EOFError, OSError) as e:
                if isinstance(e, IntegrityError | HostWriteError | HostFullError) or (
                    isinstance(e, OSError) and e.errno in WRITE_ERRNOS
                ):
                    raise
                raise UsageError(
                    f"cannot extract {tarball}: {e}", hint="is it a tar archive (.tar, .tar.gz, .tar.xz)?"
                ) from e
            try:
                os.replace(staging, dest)
            except OSError:
                if not dest.is_dir():
                    raise
                # Another build unpacked the same sha256 first: theirs is as good as ours (ours goes on exit).


def content_root(folder: Path, spec: InputSpec) -> Path:
    """The folder holding the input's content: the top folder if the archive has it, then the subdir."""
    root = folder
    if spec.top_folder and (folder / spec.top_folder).is_dir():
        root = folder / spec.top_folder
    elif spec.kind != FOLDER:
        entries = [p for p in folder.iterdir() if not p.name.startswith(".")] if folder.is_dir() else []
        # An override tarball made from another tag unpacks to another single top folder.
        if len(entries) == 1 and entries[0].is_dir():
            root = entries[0]
    if spec.subdir and (root / spec.subdir).is_dir():
        root = root / spec.subdir
    return root


class WrongReleaseError(UsageError):
    """The source is another release than the recipe's (a --source of another tag): exit 2, nothing built."""


def check_release(recipe: Recipe, root: Path, spec: InputSpec) -> None:
    """The source tree must say it is the recipe's release (its ``versions`` file), before anything compiles."""
    marker = recipe.source.release
    if marker is None:
        return
    text = read_optional(root / marker.file)
    lines = [line.strip() for line in (text or "").splitlines()]
    if marker.line in lines:
        return
    said = next((line for line in lines if line.startswith(marker.key + "=")), None)
    if said is not None:
        found = f"its {marker.file} says {said}"
    elif text is None:
        found = f"it has no {marker.file}"
    else:
        found = f"its {marker.file} has no {marker.key}"
    raise WrongReleaseError(
        f"{spec.what} {redact_url(spec.location)} is not the release recipe {recipe.name} builds "
        f"({recipe.driver_tag}): {found}, expected {marker.line}",
        hint=f"pass that release's source with --{spec.what} (or none: the recipe's own), "
        "or build the recipe of the release you have",
    )
