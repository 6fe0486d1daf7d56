"""The command runner with real processes: output streaming, errors, timeouts and stops kill the group."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from agent.errors import CommandError, StopRequestedError
from agent.host.runner import Runner

pytestmark = pytest.mark.real_commands


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead for our purpose.
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat.split(")")[1].split()[0] != "Z"


def wait_gone(pid: int, seconds: float = 10) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not alive(pid):
            return True
        time.sleep(0.02)
    return False


def test_output_lines_and_log_file(tmp_path: Path) -> None:
    lines: list[str] = []
    log = tmp_path / "out.log"
    done = Runner().run(["sh", "-c", "echo one; echo two >&2"], on_line=lines.append, log_file=log)
    assert done.returncode == 0 and lines == ["one", "two"]
    assert log.read_text() == "one\ntwo\n"


def test_failure_carries_argv_code_and_tail() -> None:
    with pytest.raises(CommandError) as caught:
        Runner().run(["sh", "-c", "echo first; echo 'fatal: it broke' >&2; exit 3"])
    error = caught.value
    assert error.argv == ["sh", "-c", "echo first; echo 'fatal: it broke' >&2; exit 3"]
    assert error.returncode == 3 and "fatal: it broke" in error.output_tail
    assert "exited with 3" in str(error)


def test_missing_command() -> None:
    with pytest.raises(CommandError, match="command not found"):
        Runner().run(["no-such-command-anywhere"])


def test_unchecked_failure_returns() -> None:
    assert Runner().run(["false"], check=False).returncode == 1


def test_timeout_kills_the_whole_process_group(tmp_path: Path) -> None:
    pidfile = tmp_path / "child.pid"
    with pytest.raises(CommandError, match="timed out"):
        Runner(kill_grace=0.5).run(["sh", "-c", f"sleep 60 & echo $! > {pidfile}; wait"], timeout=1)
    assert wait_gone(int(pidfile.read_text())), "the grandchild must not outlive the timeout"


def test_stop_event_kills_the_group_and_raises(tmp_path: Path) -> None:
    stop = threading.Event()
    pidfile = tmp_path / "child.pid"
    runner = Runner(stop=stop, kill_grace=0.5)
    started = threading.Event()

    def on_line(line: str) -> None:
        started.set()

    def stopper() -> None:
        started.wait(10)
        stop.set()

    thread = threading.Thread(target=stopper)
    thread.start()
    with pytest.raises(StopRequestedError):
        runner.run(["sh", "-c", f"sleep 60 & echo $! > {pidfile}; echo started; wait"], timeout=60, on_line=on_line)
    thread.join()
    assert wait_gone(int(pidfile.read_text()))
