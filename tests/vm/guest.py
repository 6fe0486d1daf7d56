"""Helpers for scripts that run INSIDE the test VM: report results, run commands, read what the kernel says.

Standard library only, and cheap to import: Python under emulation is ~25 times slower than on the host.
A guest script imports it as ``from vm import guest`` (the harness puts the checkout's tests/ on PYTHONPATH).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

RESULTS = os.environ.get("VM_RESULTS", "/dev/ttyS1")
FIRMWARE_PATH_PARAM = Path("/sys/module/firmware_class/parameters/path")


def report(name: str, value: object) -> None:
    """Send one named value to the host (a JSON line on the results port; ``VmResult.records()`` reads it)."""
    with open(RESULTS, "a", encoding="utf-8") as out:
        out.write(json.dumps({"name": name, "value": value}, default=str) + "\n")


def run(argv: Sequence[str], *, timeout: float = 120.0) -> dict[str, object]:
    """Run a command; its exit code and output as a dict ready to report."""
    done = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout, check=False)
    return {"argv": list(argv), "rc": done.returncode, "stdout": done.stdout, "stderr": done.stderr}


def agent_argv(*args: str) -> list[str]:
    """argv of the agent from this checkout, run by this interpreter (with its flags, e.g. ``-S``)."""
    return [sys.executable, *(["-S"] if sys.flags.no_site else []), "-m", "agent", *args]


def run_agent(*args: str, timeout: float = 300.0) -> dict[str, object]:
    """Run one agent command (e.g. ``run_agent("load", "--driver-tree", tree)``); its result dict."""
    return run(agent_argv(*args), timeout=timeout)


def start_agent(*args: str) -> subprocess.Popen[str]:
    """Start a long-running agent command (``run``) in the background; stop it with ``stop``."""
    return subprocess.Popen(agent_argv(*args), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def stop(process: subprocess.Popen[str], *, timeout: float = 30.0) -> dict[str, object]:
    """SIGTERM a background process, wait for it; its exit code, output and seconds to exit."""
    started = time.monotonic()
    process.terminate()
    output, _ = process.communicate(timeout=timeout)
    return {"rc": process.returncode, "output": output, "seconds": round(time.monotonic() - started, 3)}


def read(path: str | Path) -> str | None:
    """A sysfs/procfs/file value without its trailing newline; None when it does not exist."""
    try:
        return Path(path).read_text().rstrip("\n")
    except (FileNotFoundError, NotADirectoryError):
        return None


def kernel_log() -> list[str]:
    """The kernel log lines (dmesg)."""
    return subprocess.run(["dmesg"], capture_output=True, text=True, check=True).stdout.splitlines()


def loaded_modules() -> dict[str, dict[str, object]]:
    """/proc/modules: name → refcount and the modules using it."""
    out: dict[str, dict[str, object]] = {}
    for line in Path("/proc/modules").read_text().splitlines():
        name, _size, refcount, users, *_ = line.split()
        out[name] = {"refcount": int(refcount), "users": [u for u in users.split(",") if u and u != "-"]}
    return out


def set_firmware_path(value: str) -> None:
    """Write the firmware search path; never with a trailing newline (the kernel would keep it)."""
    FIRMWARE_PATH_PARAM.write_text(value)


def install_module_tree(tree: Path, kernel: str, modules: Sequence[Path], folder: str = "updates") -> None:
    """A private module tree ``tree/lib/modules/<kernel>/<folder>/*.ko`` with its modules.dep.

    `modprobe -d tree` then loads from it; depmod over a one-driver tree takes milliseconds where the
    whole /lib/modules tree takes ~25 s under emulation.
    """
    target = tree / "lib" / "modules" / kernel / folder
    target.mkdir(parents=True, exist_ok=True)
    for module in modules:
        shutil.copy(module, target / module.name)
    subprocess.run(["depmod", "-b", str(tree), kernel], check=True)


def wait_for(
    condition: Callable[[], bool], *, timeout: float = 10.0, interval: float = 0.02, what: str = "condition"
) -> None:
    """Poll ``condition()`` until it is true; raise TimeoutError naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not met within {timeout}s")
        time.sleep(interval)


def http_get(url: str, *, timeout: float = 5.0) -> tuple[int, str]:
    """Status and body of a GET (an error status is returned, not raised); (0, reason) when unreachable."""
    # Imported here: costly under emulation, and only scripts that talk HTTP need it.
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.read().decode(errors="replace")
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(errors="replace")
    except OSError as e:
        return 0, str(e)


def wait_for_http(url: str, status: int = 200, *, timeout: float = 60.0) -> str:
    """Poll ``url`` until it answers ``status`` (e.g. the agent's /readyz); the body."""
    last: list[tuple[int, str]] = []

    def answered() -> bool:
        last[:] = [http_get(url)]
        return last[0][0] == status

    try:
        wait_for(answered, timeout=timeout, interval=0.1, what=f"{url} answering {status}")
    except TimeoutError as e:
        raise TimeoutError(f"{e}; last answer: {last[0] if last else None}") from None
    return last[0][1]


def _holds(pid: int, path: Path) -> bool:
    fds = Path(f"/proc/{pid}/fd")
    with contextlib.suppress(OSError):
        return any(os.readlink(fd) == str(path) for fd in fds.iterdir())
    return False


@contextlib.contextmanager
def holding_open(path: str | Path) -> Iterator[subprocess.Popen[bytes]]:
    """A separate process that keeps ``path`` open until the block ends; yields that process.

    The holder is a shell (cheap to start under emulation) with the file on fd 3, waiting on stdin.
    """
    target = Path(path)
    holder = subprocess.Popen(["sh", "-c", 'exec 3<"$1"; read -r _ || :', "holder", str(target)], stdin=subprocess.PIPE)
    try:
        wait_for(lambda: _holds(holder.pid, target) or holder.poll() is not None, what=f"a process opening {target}")
        if holder.poll() is not None:
            raise RuntimeError(f"the holder process could not open {target} (exit {holder.returncode})")
        yield holder
    finally:
        if holder.stdin is not None:
            holder.stdin.close()
        holder.wait(timeout=10)
