"""Structured logs: structlog configured once, JSON when not on a terminal, imported only when used.

structlog pulls in asyncio (~100 ms here); a one-shot `detect` that has nothing to log must not pay
for it, so modules get a lazy proxy that imports and configures structlog on first use.
"""

from __future__ import annotations

import sys
from typing import Any

LEVELS = ("debug", "info", "warning", "error")
_NUMBERS = {"debug": 10, "info": 20, "warning": 30, "error": 40}
FORMATS = ("auto", "json", "console")

_settings: dict[str, str] = {"format": "auto", "level": "info"}
_state = {"configured": False}


def configure(*, fmt: str = "auto", level: str = "info") -> None:
    """Record the wanted format and level; structlog itself is set up on the first log call."""
    _settings["format"] = fmt
    _settings["level"] = level
    _state["configured"] = False


def _setup() -> None:
    import logging

    import structlog

    fmt = _settings["format"]
    if fmt == "auto":
        fmt = "console" if sys.stderr.isatty() else "json"
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(getattr(logging, _settings["level"].upper())),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )
    _state["configured"] = True


def _enabled(level: str) -> bool:
    return _NUMBERS[level] >= _NUMBERS[_settings["level"]]


class LazyLogger:
    """A logger that becomes a structlog bound logger on first use."""

    def __init__(self, name: str) -> None:
        self._name = name

    def _logger(self) -> Any:
        if not _state["configured"]:
            _setup()
        import structlog

        return structlog.get_logger(self._name)

    def debug(self, event: str, **kw: Any) -> None:
        # Checked before structlog is touched: a build logs every make line at debug.
        if _enabled("debug"):
            self._logger().debug(event, **kw)

    def info(self, event: str, **kw: Any) -> None:
        if _enabled("info"):
            self._logger().info(event, **kw)

    def warning(self, event: str, **kw: Any) -> None:
        if _enabled("warning"):
            self._logger().warning(event, **kw)

    def error(self, event: str, **kw: Any) -> None:
        self._logger().error(event, **kw)

    def exception(self, event: str, **kw: Any) -> None:
        self._logger().exception(event, **kw)


def get_logger(name: str) -> LazyLogger:
    """The logger for a module: ``log = get_logger(__name__)``."""
    return LazyLogger(name)
