"""Fixtures for lifecycle unit tests: a Debian node with a fake kernel, a driver tree, the engine."""

from __future__ import annotations

from pathlib import Path

import pytest
from lifecycle.fakes import Node, make_node


@pytest.fixture
def node(tmp_path: Path) -> Node:
    """Debian 12, a Flex 170 without a driver, the in-tree i915 loaded, the testgpu tree."""
    return make_node(tmp_path)
