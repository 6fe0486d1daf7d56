"""The kinds of host change the agent makes, one module each; ``kinds()`` maps a journal kind to its class.

Adding a kind is adding one module here that defines a ``HostChange`` subclass: the journal, warm
restart, undo and status find it by its ``kind`` without any other file changing.
"""

from __future__ import annotations

import importlib
import pkgutil

from agent.lifecycle.changes.base import ChangeContext, HostChange, RecordError, host_write_error

__all__ = ["ChangeContext", "HostChange", "RecordError", "host_write_error", "kinds"]

_loaded = False


def kinds() -> dict[str, type[HostChange]]:
    """Every change kind defined in this package, by its journal name."""
    global _loaded  # noqa: PLW0603 - the modules are imported once, on first use
    if not _loaded:
        for info in pkgutil.iter_modules(__path__):
            if info.name != "base":
                importlib.import_module(f"{__name__}.{info.name}")
        _loaded = True
    return dict(HostChange.registry)
