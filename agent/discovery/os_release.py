"""The host operating system, from the host's os-release file."""

from __future__ import annotations

import shlex
from dataclasses import dataclass

from agent.host.files import read_optional
from agent.host.paths import HostPaths


@dataclass(frozen=True)
class OsInfo:
    """ID, VERSION_ID and a name for people; ``problems`` lists lines that could not be parsed."""

    id: str
    version_id: str
    pretty_name: str
    id_like: tuple[str, ...] = ()
    problems: tuple[str, ...] = ()

    def is_like(self, name: str) -> bool:
        return self.id == name or name in self.id_like


UNKNOWN = OsInfo(id="unknown", version_id="", pretty_name="unknown OS")


def parse_os_release(text: str, *, source: str = "os-release") -> OsInfo:
    """Parse os-release (KEY=value, shell quoting); malformed lines are reported, not fatal."""
    values: dict[str, str] = {}
    problems: list[str] = []
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        key, sep, raw = stripped.partition("=")
        if not sep or not key.isidentifier():
            problems.append(f"{source} line {number} is not KEY=value: {stripped[:60]!r}")
            continue
        try:
            parts = shlex.split(raw)
        except ValueError:
            problems.append(f"{source} line {number} has unbalanced quotes: {stripped[:60]!r}")
            continue
        values[key] = " ".join(parts)
    if "ID" not in values:
        problems.append(f"{source} has no ID line")
    os_id = values.get("ID", "unknown").lower()
    version = values.get("VERSION_ID", "")
    return OsInfo(
        id=os_id,
        version_id=version,
        pretty_name=values.get("PRETTY_NAME") or f"{os_id} {version}".strip(),
        id_like=tuple(values.get("ID_LIKE", "").split()),
        problems=tuple(problems),
    )


def detect_os(host: HostPaths) -> OsInfo:
    """The host's OS; an absent os-release gives "unknown" with the reason in ``problems``."""
    path = host.os_release
    text = read_optional(path)
    if text is None:
        return OsInfo(id="unknown", version_id="", pretty_name="unknown OS", problems=(f"cannot read {path}",))
    return parse_os_release(text, source=str(path))
