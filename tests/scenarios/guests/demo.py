"""Guest side of the demo: the node's lifecycle step by step, in words, on the results port."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import guest_node as node
from vm import guest

TREE, RECIPE = sys.argv[1], sys.argv[2]
OUT = open(os.environ.get("VM_RESULTS", "/dev/ttyS1"), "w", buffering=1)  # noqa: SIM115
T0 = time.monotonic()


def say(text: str = "") -> None:
    OUT.write(f"[{time.monotonic() - T0:6.1f}s] {text}\n" if text else "\n")


def show_node(title: str) -> None:
    s = node.node_state()
    say(f"{title}:")
    say(f"    modules loaded      {', '.join(sorted(s['modules'])) or '(none of testgpu/i915/drm)'}")
    say(f"    firmware path       {s['firmware_path']!r}")
    say(f"    firmware files      {', '.join(s['firmware_files']) or '(none)'}")
    if s["srcversion"]:
        say(f"    testgpu srcversion  {s['srcversion']}  version {s['version']!r}")
        say(f"    firmware loaded     {s['fw_loaded']} (fw_status {s['fw_status']})")
    say(f"    journal             {'phase ' + s['journal']['phase'] if s['journal'] else '(none)'}")


node.setup()
say(f"Kernel {os.uname().release} booted under qemu; the guest's PCI view has one Flex 170 (8086:56c0).")
subprocess_modprobe = guest.run(["modprobe", "i915"], timeout=300)
say(
    "Debian's in-tree i915 loaded first, as on a node before the agent: "
    + ("ok" if not subprocess_modprobe["rc"] else "failed")
)
show_node("The node before")
say()
say(f"$ intel-gpu-agent run --driver-tree {TREE} --recipe {RECIPE}")
agent = node.start(
    "run", "--driver-tree", TREE, "--recipe", RECIPE, "--listen", f"127.0.0.1:{node.PORT}", log="demo.log"
)
node.wait_http("/readyz", 200, process=agent)
for event in node.log_events("demo.log"):
    detail = " ".join(f"{k}={v}" for k, v in event.items() if k not in ("event", "level", "timestamp"))
    say(f"  agent: {event.get('event', '?'):<24} {detail}"[:160])
say(f"GET /readyz → {node.http('/readyz')}")
show_node("The node, driver ready")
say()
say("$ intel-gpu-agent status")
for line in node.run("status")["stdout"].splitlines():
    say("  " + line)
say()
say("GET /metrics (excerpt)")
for line in node.http("/metrics")[1].splitlines():
    if line.startswith(
        (
            "intel_gpu_driver_state{",
            "intel_gpu_driver_ready",
            "intel_gpu_driver_host_changes",
            "intel_gpu_driver_step_duration_seconds_sum",
            "intel_gpu_driver_node_info",
        )
    ) and (not line.endswith(" 0.0") or "ready" in line):
        say("  " + line)
say()
seen = len(node.log_events("demo.log"))
say("SIGTERM → the agent puts the node back")
code, seconds = node.stop(agent, signal.SIGTERM)
for event in node.log_events("demo.log")[seen:]:
    detail = " ".join(f"{k}={v}" for k, v in event.items() if k not in ("event", "level", "timestamp"))
    say(f"  agent: {event.get('event', '?'):<24} {detail}"[:160])
say(f"exit code {code} after {seconds}s")
show_node("The node after")
OUT.write("demo-done\n")
