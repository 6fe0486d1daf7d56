"""Runs INSIDE the test VM: turns the guest into a GPU "node" and drives the agent from the checkout.

qemu cannot emulate an Intel GPU, so the node's PCI view gets one fake Flex 170: a tmpfs over
/sys/bus/pci/devices holding one device folder, already bound to the test driver with a render node.
Everything else the agent touches is the real kernel: modules, the firmware loader and its path,
/proc/modules, /sys/module, /dev/kmsg, process file descriptors.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from vm import guest

REPO = Path(__file__).resolve().parents[2]
PCI = Path("/sys/bus/pci/devices")
GPU = "0000:00:05.0"
STATE = Path("/var/lib/intel-gpu-driver")
PORT = 9480
MODULES = ("testgpu", "testgpu_compat", "testgpu_vsec")
# The guest's own fresh tmpfs: its /tmp shows the host's /tmp, where other runs leave files of the same names.
LOGS = Path("/run/scenario-logs")


def setup(*, gpu: bool = True, driver: str = "testgpu") -> None:
    """Loopback up (the agent serves on it) and, unless ``gpu`` is False, the fake GPU bound to ``driver``."""
    subprocess.run(["ip", "link", "set", "lo", "up"], check=False)
    if not gpu:
        return
    subprocess.run(["mount", "-t", "tmpfs", "-o", "mode=0755", "fakepci", str(PCI)], check=True)
    device = PCI / GPU
    (device / "drm/card0").mkdir(parents=True)
    (device / "drm/renderD128").mkdir(parents=True)
    for name, value in (("vendor", "0x8086"), ("device", "0x56c0"), ("class", "0x038000"), ("numa_node", "-1")):
        (device / name).write_text(value + "\n")
    bound = PCI / ".drivers" / driver
    bound.mkdir(parents=True)
    (bound / "module").symlink_to(f"/sys/module/{driver}")
    (device / "driver").symlink_to(bound)


def agent_argv(command: str, *args: str) -> list[str]:
    """The agent from the checkout, with this interpreter's flags (``-S`` saves a second under emulation)."""
    flags = ["-S"] if sys.flags.no_site else []
    return [sys.executable, *flags, "-m", "agent", "--log-format", "json", command, *args]


def start(
    command: str, *args: str, env: dict[str, str] | None = None, log: str = "agent.log"
) -> subprocess.Popen[bytes]:
    """Start the agent in the background; its JSON log goes to LOGS/<log>."""
    LOGS.mkdir(exist_ok=True)
    out = open(LOGS / log, "ab")  # noqa: SIM115 - lives as long as the process
    return subprocess.Popen(
        agent_argv(command, *args), cwd=REPO, stdout=out, stderr=out, env={**os.environ, **(env or {})}
    )


def run(command: str, *args: str, env: dict[str, str] | None = None, timeout: float = 300) -> dict[str, Any]:
    """Run a one-shot agent command to its end."""
    started = time.monotonic()
    done = subprocess.run(
        agent_argv(command, *args),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        check=False,
    )
    return {
        "rc": done.returncode,
        "stdout": done.stdout,
        "stderr": done.stderr,
        "seconds": round(time.monotonic() - started, 2),
    }


def http(path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{PORT}{path}", timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()
    except OSError as e:
        return 0, str(e)


def wait_http(path: str, code: int, *, process: subprocess.Popen[bytes], timeout: float = 240) -> float:
    """Poll until ``path`` answers ``code``; the seconds it took. Fails if the agent exits first."""
    started = time.monotonic()

    def answered() -> bool:
        if process.poll() is not None:
            raise RuntimeError(f"the agent exited with {process.returncode} before {path} answered {code}")
        return http(path)[0] == code

    guest.wait_for(answered, timeout=timeout, interval=0.1, what=f"{path} answering {code}")
    return round(time.monotonic() - started, 2)


def stop(process: subprocess.Popen[bytes], sig: int = signal.SIGTERM, timeout: float = 120) -> tuple[int, float]:
    """Send ``sig``; (exit code, seconds to exit)."""
    started = time.monotonic()
    process.send_signal(sig)
    code = process.wait(timeout=timeout)
    return code, round(time.monotonic() - started, 2)


def metric(text: str, name: str) -> float | None:
    """One sample from an exposition text (``name`` with its labels, exactly as exposed)."""
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.rsplit(" ", 1)[1])
    return None


def node_state() -> dict[str, Any]:
    """What the kernel and the host say: loaded modules, srcversion, firmware path and files, parameters."""
    files = sorted(
        str(p)
        for base in (Path("/var/lib/firmware"), Path("/lib/firmware/updates/testgpu"))
        if base.exists()
        for p in base.rglob("*")
        if p.is_file()
    )
    modules = guest.loaded_modules()
    return {
        "modules": {m: modules[m] for m in modules if m.startswith(("testgpu", "i915", "drm"))},
        "srcversion": guest.read("/sys/module/testgpu/srcversion"),
        "version": guest.read("/sys/module/testgpu/version"),
        "fw_loaded": guest.read("/sys/module/testgpu/parameters/fw_loaded"),
        "fw_status": guest.read("/sys/module/testgpu/parameters/fw_status"),
        "enable_guc": guest.read("/sys/module/testgpu/parameters/enable_guc"),
        "firmware_path": guest.read(guest.FIRMWARE_PATH_PARAM),
        "firmware_files": files,
        "journal": json.loads((STATE / "journal.json").read_text()) if (STATE / "journal.json").exists() else None,
    }


def stamps() -> dict[str, list[int]]:
    """inode and mtime of each placed firmware file and the journal: proof that nothing was rewritten."""
    paths = [p for p in Path("/var/lib/firmware").rglob("*") if p.is_file()] + [STATE / "journal.json"]
    return {str(p): [p.stat().st_ino, p.stat().st_mtime_ns] for p in paths if p.exists()}


def kernel_log_since(marker: str) -> list[str]:
    lines = guest.kernel_log()
    for i in range(len(lines) - 1, -1, -1):
        if marker in lines[i]:
            return lines[i:]
    return lines


def log_events(log: str = "agent.log") -> list[dict[str, Any]]:
    """The agent's JSON log lines."""
    out = []
    for line in (LOGS / log).read_text().splitlines():
        if line.startswith("{"):
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
    return out


def report_logs_at_exit() -> None:
    """On any exit of the guest script, send the agent's logs (LOGS/*.log) to the host for the failure message."""
    import atexit

    def send() -> None:
        for path in sorted(LOGS.glob("*.log")):
            guest.report(f"log:{path.name}", path.read_text()[-6000:])

    atexit.register(send)
