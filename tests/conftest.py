"""Shared test fixtures: no surprise subprocesses, tools that must exist, the checkout's paths."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from tooling import REPO, need_tool

__all__ = ["REPO", "need_tool"]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "real_commands: the test runs real external commands through the agent's Runner"
    )


@pytest.fixture(autouse=True)
def _no_unexpected_commands(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Fail any real command the agent's Runner starts, unless the test is marked real_commands."""
    if request.node.get_closest_marker("real_commands") is None:
        import agent.host.runner as runner_module

        def refuse(argv: object, *args: object, **kwargs: object) -> None:
            raise AssertionError(f"unexpected real command in a unit test: {argv!r}")

        monkeypatch.setattr(runner_module, "popen", refuse)
    yield


@pytest.fixture
def repo() -> Path:
    """The checkout's root."""
    return REPO
