"""Guest: g. a node without a supported GPU (load exits 3, run stays up not ready) or h. signatures enforced."""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import guest_node as node
from vm import guest

TREE, RECIPE, WHICH = sys.argv[1], sys.argv[2], sys.argv[3]
ARGS = ("--driver-tree", TREE, "--recipe", RECIPE)

node.setup(gpu=WHICH != "unsupported")
node.report_logs_at_exit()
guest.report("before", node.node_state())
guest.report("load", node.run("load", *ARGS))
guest.report("after_load", node.node_state())
if WHICH == "unsupported":
    agent = node.start("run", *ARGS, "--listen", f"127.0.0.1:{node.PORT}", log="g.log")
    node.wait_http("/metrics", 200, process=agent)
    guest.wait_for(
        lambda: node.metric(node.http("/metrics")[1], 'intel_gpu_driver_state{state="unsupported"}') == 1.0,
        timeout=120,
        interval=0.1,
        what="state unsupported",
    )
    time.sleep(2)  # still up a while later: no crash loop (a deliberate pause, not a wait for a condition)
    guest.report("alive", agent.poll() is None)
    guest.report("readyz", node.http("/readyz"))
    guest.report("metrics", node.http("/metrics")[1])
    guest.report("stop", node.stop(agent))
    guest.report("after_run", node.node_state())
guest.report("kernel_log", guest.kernel_log()[-30:])
guest.report("done", True)
