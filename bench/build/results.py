"""bench/build/RESULTS.md holds one section per benchmark script; each script replaces only its own."""

from __future__ import annotations

from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"
TITLE = "# Build benchmarks\n"


def write_section(name: str, text: str, *, path: Path = RESULTS) -> None:
    """Replace the section ``name`` (between its markers) with ``text``, keeping the other sections."""
    begin, end = f"<!-- {name} -->\n", f"<!-- /{name} -->\n"
    current = path.read_text() if path.is_file() else TITLE
    if begin in current and end in current:
        head, rest = current.split(begin, 1)
        tail = rest.split(end, 1)[1]
    else:
        head, tail = current.rstrip("\n") + "\n\n", ""
    path.write_text(f"{head}{begin}{text.rstrip()}\n{end}{tail}")
