"""Runs INSIDE the VM: the REAL LTS driver's cold apply vs a shell script making the same host changes,
warm restart, SIGTERM to exit vs the same undo by shell, side by side and interleaved (issue 10's targets).

argv: TREE RECIPE RUNS. The node has Debian's in-tree i915 (and intel_vsec) loaded before every round,
as on a node where the backport replaces them.
"""

from __future__ import annotations

import os
import signal
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
ARGS = ("--driver-tree", TREE, "--recipe", RECIPE, "--listen", f"127.0.0.1:{node.PORT}")
IN_TREE = ("i915", "intel_vsec")
# The same host changes as the agent's apply: firmware, path, in-tree modules out, modprobe from the tree.
SHELL = f"""set -e
mkdir -p /var/lib/firmware/i915
cp {TREE}/firmware/i915/*.bin /var/lib/firmware/i915/
printf %s /var/lib/firmware > /sys/module/firmware_class/parameters/path
loaded=""
for m in i915 intel_vsec mei_gsc mei_me; do grep -q "^$m " /proc/modules && loaded="$loaded $m"; done
[ -z "$loaded" ] || rmmod $loaded
modprobe -d {TREE}/opt -S {KERNEL} i915
modprobe -d {TREE}/opt -S {KERNEL} mei-gsc
"""
# ... and the same undo: our modules out, firmware and path back, the in-tree modules loaded again.
SHELL_UNDO = f"""set -e
modprobe -r -d {TREE}/opt -S {KERNEL} mei-gsc i915
rm -rf /var/lib/firmware/i915
printf '\\000' > /sys/module/firmware_class/parameters/path
modprobe -a {" ".join(IN_TREE)}
"""
STEPS = ("preflight", "firmware", "remove_in_tree", "modprobe", "verify")


def timed(argv: list[str]) -> float:
    started = time.monotonic()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.monotonic() - started


def step_seconds() -> float:
    """The running agent's own apply: the sum of its step_duration_seconds histograms."""
    text = node.http("/metrics")[1]
    return sum(node.metric(text, f'intel_gpu_driver_step_duration_seconds_sum{{step="{s}"}}') or 0.0 for s in STEPS)


def is_backport() -> bool:
    return "backported" in (guest.read("/sys/module/i915/version") or "")


node.setup(driver="i915")
node.report_logs_at_exit()
subprocess.run(["modprobe", "-a", *IN_TREE], check=True)
subprocess.run(node.agent_argv("--help"), check=True, stdout=subprocess.DEVNULL)  # warm the page cache
got: dict[str, list[float]] = {
    k: []
    for k in (
        "shell_cold", "shell_undo", "agent_load_process", "agent_unload_process", "run_cold_to_ready",
        "run_cold_apply", "run_warm_to_ready", "run_warm_apply", "sigterm_to_exit", "interpreter",
    )
}  # fmt: skip
writes_on_warm: list[bool] = []
for _ in range(RUNS):
    got["shell_cold"].append(timed(["sh", "-c", SHELL]))
    assert is_backport()
    got["shell_undo"].append(timed(["sh", "-c", SHELL_UNDO]))
    assert not is_backport()

    got["agent_load_process"].append(timed(node.agent_argv("load", "--driver-tree", TREE, "--recipe", RECIPE)))
    assert is_backport()
    got["agent_unload_process"].append(timed(node.agent_argv("unload")))
    assert not is_backport()

    started = time.monotonic()
    agent = node.start("run", *ARGS, log="cold.log")
    node.wait_http("/readyz", 200, process=agent, timeout=600)
    got["run_cold_to_ready"].append(time.monotonic() - started)
    got["run_cold_apply"].append(step_seconds())
    stamps = node.stamps()
    node.stop(agent, signal.SIGKILL)
    started = time.monotonic()
    agent = node.start("run", *ARGS, log="warm.log")
    node.wait_http("/readyz", 200, process=agent, timeout=600)
    got["run_warm_to_ready"].append(time.monotonic() - started)
    got["run_warm_apply"].append(step_seconds())
    writes_on_warm.append(node.stamps() != stamps)
    code, seconds = node.stop(agent)
    assert code == 0 and not is_backport() and Path("/sys/module/i915").exists(), "in-tree i915 back"
    got["sigterm_to_exit"].append(seconds)
    got["interpreter"].append(timed([sys.executable, "-S", "-c", "pass"]))
for name, values in got.items():
    guest.report(name, values)
guest.report("warm_wrote_something", writes_on_warm)
guest.report("done", True)
