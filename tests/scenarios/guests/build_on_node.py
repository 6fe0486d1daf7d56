"""Guest: i. no tree for the running kernel → run builds into the host cache and loads; a restart uses the cache."""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import guest_node as node
from vm import guest

RECIPE = sys.argv[1]
ARGS = ("--recipe", RECIPE, "--listen", f"127.0.0.1:{node.PORT}")

node.setup()
node.report_logs_at_exit()
started = time.monotonic()
agent = node.start("run", *ARGS, log="i1.log")
guest.report("first_ready", node.wait_http("/readyz", 200, process=agent, timeout=1200))
guest.report("first_seconds", round(time.monotonic() - started, 1))
guest.report("loaded", node.node_state())
guest.report("first_log", node.log_events("i1.log"))
guest.report("stop1", node.stop(agent))
started = time.monotonic()
agent = node.start("run", *ARGS, log="i2.log")
guest.report("second_ready", node.wait_http("/readyz", 200, process=agent, timeout=600))
guest.report("second_seconds", round(time.monotonic() - started, 1))
guest.report("second_log", node.log_events("i2.log"))
guest.report("stop2", node.stop(agent))
guest.report("after", node.node_state())
guest.report("cache", sorted(str(p) for p in (node.STATE / "cache/trees").rglob("manifest.json")))
guest.report("done", True)
