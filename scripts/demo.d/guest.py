"""The demo's node: runs INSIDE the VM (a real Debian kernel) and walks the agent's whole lifecycle.

Each step is reported to the host (vm.guest.report) and printed there in order. qemu has no Intel GPU,
so the node gets one fake Flex 170 in sysfs (the scenario tests' fake), bound to the driver; everything
else is the real kernel: Debian's in-tree i915 loaded first, module swap, firmware loader and path,
SIGTERM unload. argv: TREE RECIPE DRIVER (i915 for the real release, testgpu for the test driver).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from scenarios.guest_node import setup
from vm import guest

TREE, RECIPE, DRIVER = sys.argv[1], sys.argv[2], sys.argv[3]
LISTEN = "127.0.0.1:9480"
FIRMWARE_DIR = Path("/var/lib/firmware")


def agent(*args: str) -> str:
    done = guest.run_agent("--log-format", "console", *args)
    return f"$ intel-gpu-agent {' '.join(args)}   (exit {done['rc']})\n{done['stdout']}{done['stderr']}"


def node_state() -> str:
    modules = guest.loaded_modules()
    ours = {m: v for m, v in modules.items() if m.startswith(("testgpu", "i915", "drm", "intel_vsec", "mei"))}
    firmware = sorted(str(p) for p in FIRMWARE_DIR.rglob("*") if p.is_file()) if FIRMWARE_DIR.exists() else []
    lines = [
        f"  {m:<16} refcount {v['refcount']}  used by {','.join(v['users']) or '-'}" for m, v in sorted(ours.items())
    ]
    return "\n".join(
        [
            "modules (i915/drm/intel_vsec/mei/testgpu):",
            *(lines or ["  (none)"]),
            f"i915 version:   {guest.read('/sys/module/i915/version') or '(none: the in-tree i915 has no version)'}",
            f"firmware path:  {guest.read('/sys/module/firmware_class/parameters/path')!r}",
            f"firmware files: {firmware or '(none)'}",
        ]
    )


def main() -> None:
    setup(driver=DRIVER)
    guest.report(
        "01 the node before: Debian's in-tree i915 is loaded",
        guest.run(["modprobe", "i915"])["rc"] == 0 and node_state(),
    )
    guest.report("02 detect", agent("detect"))
    guest.report("03 check", agent("check", "--recipe", RECIPE))
    started = time.monotonic()
    daemon = guest.start_agent(
        "--log-format", "console", "run", "--driver-tree", TREE, "--recipe", RECIPE, "--listen", LISTEN
    )
    guest.wait_for_http(f"http://{LISTEN}/readyz", 200, timeout=900)
    guest.report("04 run: ready", f"/readyz answered 200 after {time.monotonic() - started:.1f} s (emulated CPU)")
    guest.report("05 the node while running", node_state())
    guest.report("06 status", agent("status"))
    _, metrics = guest.http_get(f"http://{LISTEN}/metrics")
    excerpt = [
        line
        for line in metrics.splitlines()
        if line.startswith("intel_gpu_driver_")
        and "_bucket{" not in line
        and "_created" not in line
    ]
    guest.report("07 metrics excerpt", "\n".join(excerpt[:30]))
    stopped = guest.stop(daemon, timeout=120)
    log = str(stopped["output"]).splitlines()
    guest.report(
        "08 SIGTERM",
        f"exit {stopped['rc']} after {stopped['seconds']} s\nagent log (last lines):\n" + "\n".join(log[-14:]),
    )
    guest.report("09 the node after: driver gone, firmware and path restored, in-tree i915 back", node_state())
    guest.report("done", True)


if __name__ == "__main__":
    main()
