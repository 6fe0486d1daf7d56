"""Runner: the one way the agent runs an external command (argv only, timeout, process group)."""

from __future__ import annotations

import collections
import contextlib
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from agent.errors import CommandError, StopRequestedError
from agent.logs import get_logger

log = get_logger(__name__)

TAIL_LINES = 20

# Tests replace this to catch real commands started by unit tests.
popen = subprocess.Popen


@dataclass(frozen=True)
class Completed:
    """What a finished command gave: its argv, exit code, output lines and duration."""

    argv: list[str]
    returncode: int
    output: str
    seconds: float


class Runner:
    """Runs commands as argv lists in their own process group, streaming output line by line.

    ``stop`` is an event the daemon sets on SIGTERM: a running command's whole process group is
    then killed (a ``make -j`` leaves no compiler behind) and ``StopRequested`` is raised.
    """

    def __init__(self, *, stop: threading.Event | None = None, kill_grace: float = 2.0) -> None:
        self._stop = stop or threading.Event()
        self._kill_grace = kill_grace

    @property
    def stop_event(self) -> threading.Event:
        return self._stop

    def run(
        self,
        argv: Sequence[str],
        *,
        timeout: float = 60.0,
        cwd: Path | None = None,
        env: Mapping[str, str] | None = None,
        check: bool = True,
        on_line: Callable[[str], None] | None = None,
        log_file: Path | None = None,
        quiet: bool = False,
    ) -> Completed:
        """Run ``argv`` to completion; raise ``CommandError`` on failure when ``check``.

        Output (stdout and stderr merged) goes to ``on_line`` and ``log_file`` as it comes, and to
        the debug log unless ``quiet``. The tail is kept for error messages.
        """
        args = [str(a) for a in argv]
        if not args:
            raise ValueError("empty argv")
        started = time.monotonic()
        full_env = None if env is None else {**os.environ, **env}
        lines: list[str] = []
        tail: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)
        # Line-buffered: `tail -f` follows a build, and a killed one keeps its log.
        log_handle = log_file.open("a", encoding="utf-8", buffering=1) if log_file else None
        try:
            proc = popen(
                args,
                cwd=cwd,
                env=full_env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                text=True,
                errors="replace",
            )
        except FileNotFoundError as e:
            if log_handle:
                log_handle.close()
            raise CommandError(args, 127, f"{args[0]}: command not found") from e
        timed_out = threading.Event()
        watchdog = threading.Thread(target=self._watch, args=(proc, started + timeout, timed_out), daemon=True)
        watchdog.start()
        try:
            assert proc.stdout is not None
            for raw in proc.stdout:
                line = raw.rstrip("\n")
                lines.append(line)
                tail.append(line)
                if log_handle:
                    log_handle.write(raw)
                if on_line:
                    on_line(line)
                if not quiet:
                    log.debug("command_output", command=args[0], line=line)
            proc.wait()
        finally:
            if proc.poll() is None:
                self._kill_group(proc)
            if log_handle:
                log_handle.close()
        watchdog.join()
        seconds = time.monotonic() - started
        if self._stop.is_set() and proc.returncode != 0:
            raise StopRequestedError(f"stopped while running {' '.join(args)}")
        if timed_out.is_set():
            raise CommandError(args, proc.returncode, "\n".join(tail), timed_out=True)
        if check and proc.returncode != 0:
            raise CommandError(args, proc.returncode, "\n".join(tail))
        return Completed(args, proc.returncode, "\n".join(lines), seconds)

    def _watch(self, proc: subprocess.Popen[str], deadline: float, timed_out: threading.Event) -> None:
        """Kill the command's process group on timeout or when a stop is requested."""
        while proc.poll() is None:
            if self._stop.wait(0.05):
                self._kill_group(proc)
                return
            if time.monotonic() > deadline:
                timed_out.set()
                self._kill_group(proc)
                return

    def _kill_group(self, proc: subprocess.Popen[str]) -> None:
        """SIGTERM the whole group, then SIGKILL what is left after the grace period."""
        for sig, grace in ((signal.SIGTERM, self._kill_grace), (signal.SIGKILL, 5.0)):
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                return
            try:
                proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                continue
            # The leader is gone; children that ignored SIGTERM may still hold the group.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            return
