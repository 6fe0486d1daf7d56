"""Helpers every test folder may import (a plain module: `conftest` names clash across folders)."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def need_tool(name: str) -> str:
    """The path of a tool the test needs; a missing tool fails the test (it never skips)."""
    found = shutil.which(name) or shutil.which(name, path=str(REPO / ".venv/bin"))
    if found is None:
        pytest.fail(f"{name} is not installed: run scripts/install-deps (CI={os.environ.get('CI', '')})")
    return found


def locked_packages() -> dict[str, tuple[str, list[str]]]:
    """scripts/deps/pip-agent.lock: name → (version, the sha256 hashes allowed for its files)."""
    lock = REPO / "scripts/deps/pip-agent.lock"
    out: dict[str, tuple[str, list[str]]] = {}
    name = ""
    for line in lock.read_text().splitlines():
        pin = re.match(r"^([A-Za-z0-9_.-]+)==(\S+) \\$", line)
        if pin:
            name = pin[1].lower()
            out[name] = (pin[2], [])
        elif line.strip().startswith("--hash=sha256:"):
            out[name][1].append(line.strip().removeprefix("--hash=sha256:").rstrip(" \\"))
        elif line.strip() and not line.lstrip().startswith("#"):
            raise AssertionError(f"{lock}: unexpected line {line!r}")
    return out
