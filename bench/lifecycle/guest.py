"""Runs INSIDE the VM: cold `load` vs a shell script making the same host changes, warm restart, SIGTERM, RSS."""

from __future__ import annotations

import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests/scenarios"))
import guest_node as node  # noqa: E402
from vm import guest  # noqa: E402

TREE, RECIPE, RUNS = sys.argv[1], sys.argv[2], int(sys.argv[3])
KERNEL = os.uname().release
ARGS = ("--driver-tree", TREE, "--recipe", RECIPE)
# The same host changes as the agent, and nothing more: firmware, path, in-tree out, modprobe from the tree.
SHELL = f"""set -e
mkdir -p /var/lib/firmware/testgpu
cp {TREE}/firmware/testgpu/testgpu_guc_1.0.bin {TREE}/firmware/testgpu/testgpu_huc_1.0.bin /var/lib/firmware/testgpu/
printf %s /var/lib/firmware > /sys/module/firmware_class/parameters/path
if grep -q '^i915 ' /proc/modules; then rmmod i915; fi
modprobe -d {TREE}/opt -S {KERNEL} testgpu enable_guc=3
"""
SHELL_UNDO = """set -e
rmmod testgpu testgpu_vsec testgpu_compat
rm -rf /var/lib/firmware/testgpu
printf '\\000' > /sys/module/firmware_class/parameters/path
"""


def timed(argv: list[str]) -> float:
    started = time.monotonic()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.monotonic() - started


def in_tree() -> None:
    subprocess.run(["modprobe", "i915"], check=True)


node.setup()
node.report_logs_at_exit()
subprocess.run(node.agent_argv("--help"), check=True, stdout=subprocess.DEVNULL)  # warm the page cache
agent_cold, shell_cold, shell_undo, interpreter, interpreter_pathlib = [], [], [], [], []
for _ in range(RUNS):
    in_tree()
    shell_cold.append(timed(["sh", "-c", SHELL]))
    shell_undo.append(timed(["sh", "-c", SHELL_UNDO + "modprobe i915\n"]))
    agent_cold.append(timed(node.agent_argv("load", *ARGS)))
    subprocess.run(node.agent_argv("unload"), check=True, stdout=subprocess.DEVNULL)
    interpreter.append(timed([sys.executable, "-S", "-c", "pass"]))
    interpreter_pathlib.append(timed([sys.executable, "-S", "-c", "import pathlib"]))
guest.report("shell_cold", shell_cold)
guest.report("shell_undo_with_restore", shell_undo)
guest.report("agent_cold", agent_cold)
guest.report("interpreter", interpreter)
guest.report("interpreter_pathlib", interpreter_pathlib)

STEPS = ("preflight", "firmware", "remove_in_tree", "modprobe", "verify")


def step_seconds() -> dict[str, float]:
    """The run's own step durations (its step_duration_seconds histogram sums)."""
    text = node.http("/metrics")[1]
    out = {}
    for step in STEPS:
        value = node.metric(text, f'intel_gpu_driver_step_duration_seconds_sum{{step="{step}"}}')
        out[step] = value or 0.0
    return out


warm, stop, stop_bare, restore, rss, cold_run, cold_apply, warm_apply = [], [], [], [], [], [], [], []
for _ in range(RUNS):
    started = time.monotonic()
    agent = node.start("run", *ARGS, "--listen", f"127.0.0.1:{node.PORT}", log="cold.log")
    node.wait_http("/readyz", 200, process=agent)
    cold_run.append(time.monotonic() - started)
    cold_apply.append(sum(step_seconds().values()))
    node.stop(agent, signal.SIGKILL)
    started = time.monotonic()
    agent = node.start("run", *ARGS, "--listen", f"127.0.0.1:{node.PORT}", log="warm.log")
    node.wait_http("/readyz", 200, process=agent)
    warm.append(time.monotonic() - started)
    warm_apply.append(sum(step_seconds().values()))
    for _ in range(5):  # steady state: a few scrapes later
        node.http("/metrics")
    status = Path(f"/proc/{agent.pid}/status").read_text()
    rss.append(int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS:"))) / 1024)
    code, seconds = node.stop(agent)
    assert code == 0 and not Path("/sys/module/testgpu").exists() and Path("/sys/module/i915").exists()
    stop.append(seconds)
    # The same stop on a node without an in-tree i915 to load back: only our modules and files to remove.
    subprocess.run(["rmmod", "i915"], check=True)
    agent = node.start("run", *ARGS, "--listen", f"127.0.0.1:{node.PORT}", log="bare.log")
    node.wait_http("/readyz", 200, process=agent)
    code, seconds = node.stop(agent)
    assert code == 0 and not Path("/sys/module/testgpu").exists() and not Path("/sys/module/i915").exists()
    stop_bare.append(seconds)
    restore.append(timed(["modprobe", "i915"]))  # what the swap case's stop spends loading i915 back
guest.report("run_cold_to_ready", cold_run)
guest.report("run_warm_to_ready", warm)
guest.report("sigterm_to_exit", stop)
guest.report("sigterm_to_exit_nothing_to_restore", stop_bare)
guest.report("modprobe_i915", restore)
guest.report("rss_mb", rss)
guest.report("run_cold_apply", cold_apply)
guest.report("run_warm_apply", warm_apply)
guest.report("median", {k: statistics.median(v) for k, v in (("shell", shell_cold), ("agent", agent_cold))})
guest.report("done", True)
