"""Fixtures of the chart tests: one chart copy with stand-in dependencies per session, renders cached by case."""

from __future__ import annotations

from pathlib import Path

import pytest

from .cases import CASES
from .chartlib import Doc, make_chart_copy, render


@pytest.fixture(scope="session")
def chart(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The chart with stand-ins of its dependencies, in a temporary folder."""
    return make_chart_copy(tmp_path_factory.mktemp("chart"))


@pytest.fixture(scope="session")
def rendered(chart: Path) -> dict[str, list[Doc]]:
    """Renders of every case, made once."""
    return {name: render(chart, values) for name, values in CASES.items()}
