"""Guest: b. the in-tree i915 swapped out and back; e. kill -9 mid-apply, then run/unload; f. missing firmware."""

from __future__ import annotations

import shutil
import signal
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import guest_node as node
from vm import guest

TREE, RECIPE = sys.argv[1], sys.argv[2]
ARGS = ("--driver-tree", TREE, "--recipe", RECIPE, "--listen", f"127.0.0.1:{node.PORT}")
FAULT = "INTEL_GPU_AGENT_FAULT"

node.setup()
node.report_logs_at_exit()

# --- b. swap: Debian's in-tree i915 (with its drm stack) is replaced, then loaded again ---------
guest.report("b.modprobe_i915", guest.run(["modprobe", "i915"], timeout=300))
guest.report("b.before", node.node_state())
agent = node.start("run", *ARGS, log="b.log")
node.wait_http("/readyz", 200, process=agent)
guest.report("b.loaded", node.node_state())
guest.report("b.stop", node.stop(agent))
guest.report("b.after", node.node_state())
guest.report("b.i915_version", guest.read("/sys/module/i915/version"))
guest.report("b.log", node.log_events("b.log"))
guest.run(["modprobe", "-r", "i915"], timeout=300)
guest.report("b.cleaned", node.node_state())

# --- e. crash mid-apply (kill -9 by the fault hook) → the next run finishes; unload cleans -----
crashed = node.start("run", *ARGS, env={FAULT: "after:module_loaded"}, log="e1.log")
guest.report("e.crash_exit", crashed.wait(timeout=300))
guest.report("e.crashed", node.node_state())
agent = node.start("run", *ARGS, log="e2.log")
node.wait_http("/readyz", 200, process=agent)
guest.report("e.recovered", node.node_state())
guest.report("e.recovered_log", node.log_events("e2.log"))
guest.report("e.stop", node.stop(agent))
guest.report("e.after_run", node.node_state())

guest.report(
    "e.load_crash", node.run("load", "--driver-tree", TREE, "--recipe", RECIPE, env={FAULT: "intent:firmware_file#2"})
)
guest.report("e.crashed2", node.node_state())
guest.report("e.unload", node.run("unload"))
guest.report("e.after_unload", node.node_state())

# --- f. a firmware file missing from the tree → refused before any host change -------------------
broken = Path("/run/broken-tree")  # the guest's own tmpfs, not the host's /tmp
shutil.copytree(TREE, broken)
(broken / "firmware/testgpu/testgpu_huc_1.0.bin").unlink()
guest.report("f.load", node.run("load", "--driver-tree", str(broken), "--recipe", RECIPE))
guest.report("f.after", node.node_state())
guest.report("done", True)
del signal
