"""Signal handling: SIGTERM/SIGINT only set a threading.Event that every loop waits on."""

from __future__ import annotations

import signal
import threading
from collections.abc import Sequence
from types import FrameType


def install_signal_handlers(stop: threading.Event, signals: Sequence[int] = (signal.SIGTERM, signal.SIGINT)) -> None:
    """SIGTERM/SIGINT only set ``stop`` (installed explicitly: as PID 1 in a container there is no default)."""

    def handler(signum: int, frame: FrameType | None) -> None:
        stop.set()

    for sig in signals:
        signal.signal(sig, handler)
