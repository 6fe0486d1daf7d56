"""Header probes: questions about the target kernel's headers, answered by reading them (not version strings)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from agent.errors import BuildError
from agent.recipes.model import ABSENT, PARAMETER, HeaderProbe

_COMMENT = re.compile(r"/\*.*?\*/|//[^\n]*", re.DOTALL)
# A call in a macro's expansion: an identifier followed by '(' (pgtable_l5_enabled()).
_CALL = re.compile(r"[A-Za-z_]\w*\s*\(")


class ProbeError(BuildError):
    """A probe cannot be answered: the headers lack a file it reads (exit 5, like the build it decides)."""


@dataclass(frozen=True)
class ProbeAnswer:
    """Whether the probe holds, and the header line that shows it (or what was looked at)."""

    holds: bool
    evidence: str


def find_header(roots: Sequence[Path], header: str) -> Path | None:
    """``header`` (include/linux/pci.h) in the first of ``roots`` that has it: kbuild's objtree, then srctree."""
    for root in roots:
        candidate = root / header
        if candidate.is_file():
            return candidate
    return None


def strip_comments(text: str) -> str:
    """C comments removed, their newlines kept, so line numbers still point into the file."""
    return _COMMENT.sub(lambda m: "\n" * m.group(0).count("\n"), text)


def answer(probe: HeaderProbe, roots: Sequence[Path]) -> ProbeAnswer:
    """Read the probe's headers under ``roots`` and answer it; a missing header raises ``ProbeError``."""
    texts = []
    for header in probe.headers:
        path = find_header(roots, header)
        if path is None:
            where = ", ".join(str(r) for r in roots) or "no header folder"
            raise ProbeError(
                f"cannot answer the probe '{probe.describe()}': the kernel headers have no {header} "
                f"(looked in {where})",
                hint="the headers package is incomplete, or the probe names a header this kernel never had",
            )
        texts.append((header, strip_comments(path.read_text(encoding="utf-8", errors="replace"))))
    if probe.kind == PARAMETER:
        return _parameter(probe, *texts[0])
    if probe.kind == ABSENT:
        return _absent(probe, texts)
    return _macro_call(probe, *texts[0])


def _line_of(text: str, offset: int) -> int:
    return text.count("\n", 0, offset) + 1


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _parameter(probe: HeaderProbe, header: str, text: str) -> ProbeAnswer:
    """Every prototype of the function in the header; the probe holds when one names the parameter."""
    found = []
    for match in re.finditer(rf"\b{re.escape(probe.symbol)}\s*\(", text):
        close = _closing_paren(text, match.end())
        if close < 0:
            continue
        arguments = text[match.end() : close]
        line = f"{header}:{_line_of(text, match.start())}: {probe.symbol}({_one_line(arguments)})"
        if re.search(rf"\b{re.escape(probe.parameter)}\b", arguments):
            return ProbeAnswer(True, line)
        found.append(line)
    if found:
        return ProbeAnswer(False, found[0])
    return ProbeAnswer(False, f"{header} does not declare {probe.symbol}()")


def _closing_paren(text: str, start: int) -> int:
    depth = 1
    for i in range(start, len(text)):
        if text[i] == "(":
            depth += 1
        elif text[i] == ")":
            depth -= 1
            if depth == 0:
                return i
    return -1


def _absent(probe: HeaderProbe, texts: Sequence[tuple[str, str]]) -> ProbeAnswer:
    word = re.compile(rf"\b{re.escape(probe.symbol)}\b")
    for header, text in texts:
        match = word.search(text)
        if match:
            start = text.rfind("\n", 0, match.start()) + 1
            end = text.find("\n", match.end())
            line = text[start : end if end >= 0 else len(text)].strip()
            return ProbeAnswer(False, f"{header}:{_line_of(text, match.start())}: {line}")
    return ProbeAnswer(True, f"no mention of {probe.symbol} in {', '.join(h for h, _ in texts)}")


def _macro_call(probe: HeaderProbe, header: str, text: str) -> ProbeAnswer:
    """The object-like #define of the macro (continuation lines joined); holds when its value calls something."""
    definition = re.compile(
        rf"^[ \t]*#[ \t]*define[ \t]+{re.escape(probe.symbol)}(?![\w(])((?:[^\n\\]|\\\n|\\)*)", re.MULTILINE
    )
    match = definition.search(text)
    if match is None:
        return ProbeAnswer(False, f"{header} does not define {probe.symbol}")
    value = _one_line(match.group(1).replace("\\\n", " "))
    evidence = f"{header}:{_line_of(text, match.start())}: #define {probe.symbol} {value}"
    return ProbeAnswer(bool(_CALL.search(value)), evidence)
