"""Helpers every test folder may import (a plain module: `conftest` names clash across folders)."""

from __future__ import annotations

import os
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
