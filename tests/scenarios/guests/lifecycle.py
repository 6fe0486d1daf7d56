"""Guest: a. run → ready → SIGTERM → clean; d. SIGKILL after ready → restart changes nothing; c. busy unload."""

from __future__ import annotations

import signal
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import guest_node as node
from vm import guest

TREE, RECIPE = sys.argv[1], sys.argv[2]
ARGS = ("--driver-tree", TREE, "--recipe", RECIPE, "--listen", f"127.0.0.1:{node.PORT}")

node.setup()
guest.report("before", node.node_state())
node.report_logs_at_exit()

# --- a. run: load from the tree, firmware through the path, metrics, SIGTERM → clean -------------
started = time.monotonic()
agent = node.start("run", *ARGS, log="a.log")
guest.report("a.ready_seconds", node.wait_http("/readyz", 200, process=agent))
guest.report("a.start_to_ready", round(time.monotonic() - started, 2))
guest.report("a.loaded", node.node_state())
guest.report("a.metrics", node.http("/metrics")[1])
guest.report("a.kernel_log", node.kernel_log_since("TESTGPU COMPAT BACKPORTED INIT"))
guest.report("a.stop", node.stop(agent))
guest.report("a.after", node.node_state())
guest.report("a.log", node.log_events("a.log"))

# --- d. warm restart: SIGKILL after ready, start again → nothing reloaded or rewritten ---------
agent = node.start("run", *ARGS, log="d1.log")
node.wait_http("/readyz", 200, process=agent)
loaded = node.node_state()
stamps = node.stamps()
kernel_log_lines = len(guest.kernel_log())
guest.report("d.kill", node.stop(agent, signal.SIGKILL))
started = time.monotonic()
agent = node.start("run", *ARGS, log="d2.log")
guest.report("d.ready_seconds", node.wait_http("/readyz", 200, process=agent))
guest.report("d.start_to_ready", round(time.monotonic() - started, 2))
guest.report("d.same_state", node.node_state() == loaded)
guest.report("d.same_stamps", node.stamps() == stamps)
guest.report("d.new_kernel_log", guest.kernel_log()[kernel_log_lines:])
guest.report("d.metrics", node.http("/metrics")[1])
guest.report("d.stop", node.stop(agent))
guest.report("d.after", node.node_state())

# --- c. busy: a process holds /dev/testgpu → unload refused, named; exit 4; released → unload --
agent = node.start("run", *ARGS, "--unload-deadline", "6", log="c.log")
node.wait_http("/readyz", 200, process=agent)
with guest.holding_open("/dev/testgpu") as holder:
    guest.report("c.holder_pid", holder.pid)
    agent.send_signal(signal.SIGTERM)
    guest.wait_for(
        lambda: node.metric(node.http("/metrics")[1], "intel_gpu_driver_unload_blocked") == 1.0,
        timeout=60,
        interval=0.1,
        what="unload_blocked exported",
    )
    guest.report("c.blocked_metrics", node.http("/metrics")[1])
    guest.report("c.exit", agent.wait(timeout=120))
    guest.report("c.held_state", node.node_state())
guest.report("c.log", node.log_events("c.log"))
guest.report("c.unload", node.run("unload"))
guest.report("c.after", node.node_state())
guest.report("done", True)
