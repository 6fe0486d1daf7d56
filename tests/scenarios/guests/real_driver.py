"""Guest: the REAL i915 backport on Debian's real kernel: a fresh node (c), the in-tree swap (a/b), warm restart (d).

argv: TREE RECIPE PHASES (comma separated: fresh, swap, warm). Everything reported is what the kernel
and the files say; the tests on the host compare it with the tree's manifest.
"""

from __future__ import annotations

import hashlib
import signal
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import guest_node as node
from vm import guest

TREE, RECIPE, PHASES = sys.argv[1], sys.argv[2], sys.argv[3].split(",")
ARGS = ("--driver-tree", TREE, "--recipe", RECIPE, "--listen", f"127.0.0.1:{node.PORT}")
# What the backport and Debian's drm stack are made of (lsmod names).
PREFIXES = ("i915", "intel_vsec", "pmt_", "mei", "drm", "ttm", "cec", "video", "i2c_algo_bit", "iaf")


def state() -> dict[str, object]:
    modules = guest.loaded_modules()
    firmware = {
        str(p): hashlib.sha256(p.read_bytes()).hexdigest()
        for base in (Path("/var/lib/firmware"), Path("/lib/firmware/updates/i915"))
        if base.exists()
        for p in sorted(base.rglob("*"))
        if p.is_file()
    }
    return {
        "modules": sorted(m for m in modules if m.startswith(PREFIXES)),
        "srcversion": {m: guest.read(f"/sys/module/{m}/srcversion") for m in modules if m.startswith(PREFIXES)},
        "taint": {m: guest.read(f"/sys/module/{m}/taint") for m in modules if m.startswith(PREFIXES)},
        "i915_version": guest.read("/sys/module/i915/version"),
        "firmware_path": guest.read(guest.FIRMWARE_PATH_PARAM),
        "firmware": firmware,
        "journal": (node.STATE / "journal.json").exists(),
        "staged": sorted(str(p) for p in (node.STATE / "modules").glob("*"))
        if (node.STATE / "modules").exists()
        else [],
    }


def lifecycle(phase: str) -> None:
    """run → /readyz 200 → SIGTERM; the state before, loaded and after, the log and the kernel log."""
    guest.report(f"{phase}.before", state())
    first = len(guest.kernel_log())
    agent = node.start("run", *ARGS, log=f"{phase}.log")
    guest.report(f"{phase}.ready_seconds", node.wait_http("/readyz", 200, process=agent, timeout=600))
    guest.report(f"{phase}.loaded", state())
    guest.report(f"{phase}.readyz", node.http("/readyz"))
    guest.report(f"{phase}.stop", node.stop(agent))
    guest.report(f"{phase}.after", state())
    guest.report(f"{phase}.log", node.log_events(f"{phase}.log"))
    guest.report(f"{phase}.kernel_log", guest.kernel_log()[first:])  # this phase's load and unload


node.setup(driver="i915")
node.report_logs_at_exit()

for phase in PHASES:
    if phase == "fresh":  # c. nothing loaded: drm comes from the node's own module folder
        lifecycle("fresh")
    elif phase == "swap":  # a./b. Debian's in-tree i915 (and intel_vsec) loaded first
        guest.report("swap.modprobe", [guest.run(["modprobe", m], timeout=300) for m in ("i915", "intel_vsec")])
        lifecycle("swap")
    elif phase == "warm":  # d. ready, SIGKILL, start again: nothing reloaded or rewritten
        agent = node.start("run", *ARGS, log="warm1.log")
        node.wait_http("/readyz", 200, process=agent, timeout=600)
        guest.report("warm.first", state())
        stamps = node.stamps()
        guest.report("warm.kill", node.stop(agent, signal.SIGKILL))
        again = node.start("run", *ARGS, log="warm2.log")
        guest.report("warm.ready_seconds", node.wait_http("/readyz", 200, process=again, timeout=600))
        guest.report("warm.second", state())
        guest.report("warm.same_stamps", node.stamps() == stamps)
        guest.report("warm.log", node.log_events("warm2.log"))
        guest.report("warm.stop", node.stop(again))
        guest.report("warm.after", state())

guest.report("done", True)
