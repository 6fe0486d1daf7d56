#!/usr/bin/env python3
"""The lifecycle, shown: build the test driver for the installed kernel, boot it as a VM "node", run the agent.

Prints each lifecycle step, the status and a metrics excerpt, then stops the agent with SIGTERM and shows
the node clean. Needs what scripts/install-deps installs (kernel image and headers, qemu, busybox, gcc).

Usage: .venv/bin/python tests/scenarios/demo.py
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests"))

from vm.machine import Vm  # noqa: E402

RECIPE = REPO / "tests/recipes/testgpu.toml"


def main() -> int:
    vm = Vm()
    out = REPO / ".cache/scenarios" / vm.kernel.release / "tree"
    print(f"$ intel-gpu-agent build --recipe {RECIPE.relative_to(REPO)} --kernel {vm.kernel.release} --out {out}")
    subprocess.run(
        [sys.executable, "-m", "agent", "build", "--recipe", str(RECIPE), "--kernel", vm.kernel.release,
         "--out", str(out), "--cache-dir", str(out.parent / "cache")],
        cwd=REPO, check=True,
    )  # fmt: skip
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(REPO / "agent"), str(REPO / "tests")], check=True)
    print(f"\nBooting {vm.kernel.release} under qemu (TCG) with this machine's root as the guest's root ...\n")
    result = vm.run(vm.python(str(REPO / "tests/scenarios/guests/demo.py"), str(out), str(RECIPE)), timeout=900)
    print(result.results.replace("demo-done\n", ""))
    if result.returncode != 0 or "demo-done" not in result.results:
        print(result.describe())
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
