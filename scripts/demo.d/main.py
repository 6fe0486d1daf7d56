"""The demo, host side: build the REAL LTS driver for Debian's 6.1 kernel, boot that kernel in a VM, show the lifecycle.

`scripts/demo` shows what users run: the published i915 backport release (recipe i915-2350.145) with its
firmware, built by `intel-gpu-agent build` (with the project's compat fix for Debian's current 6.1 headers)
and loaded by `intel-gpu-agent run` on the real kernel. The published artifacts come from
../shared/real-driver when that folder is there (no network needed), else from the recipe's pinned URLs.
`scripts/demo --test-driver` runs the same walk with the project's small test driver (seconds to build).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests"))

from vm.kernel import find_kernel  # noqa: E402
from vm.machine import Vm  # noqa: E402

TEST_RECIPE = REPO / "tests/recipes/testgpu.toml"
LTS = "i915-2350.145"
SHARED = Path(os.environ.get("INTEL_GPU_REAL_DRIVER", str(REPO.parent / "shared" / "real-driver")))
LTS_SOURCE = SHARED / "sources/I915_25WW14.3_803.145_23.10.90_231129.99.tar.gz"
LTS_FIRMWARE = SHARED / "firmware/intel-gpu-firmware-25WW14.3_803.145"
BOLD, RESET = ("\033[1m", "\033[0m") if sys.stdout.isatty() else ("", "")


def step(title: str, body: str = "") -> None:
    print(f"\n{BOLD}== {title}{RESET}", flush=True)
    if body:
        print(body.rstrip(), flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--test-driver", action="store_true", help="the project's small test driver instead")
    args = parser.parse_args()
    kernel = find_kernel(series="6.1")
    recipe, driver = (str(TEST_RECIPE), "testgpu") if args.test_driver else (LTS, "i915")
    out = REPO / ".cache/demo" / f"tree-{Path(recipe).stem}-{kernel.release}"
    agent = str(REPO / ".venv/bin/intel-gpu-agent")
    build = [agent, "--log-format", "console", "build", "--recipe", recipe, "--kernel", kernel.release]
    build += ["--out", str(out), "--headers", str(kernel.headers)]
    build += ["--cache-dir", str(REPO / ".cache/demo/cache"), "--work-dir", str(REPO / ".cache/demo/work")]
    if not args.test_driver and LTS_SOURCE.is_file() and LTS_FIRMWARE.is_dir():
        build += ["--source", str(LTS_SOURCE), "--firmware", str(LTS_FIRMWARE)]  # a local copy of the release
    what = "the project's test driver" if args.test_driver else f"the real {LTS} release (LTS)"
    step(f"build: {what} for Debian's kernel {kernel.release} (the machine itself runs another one)")
    print("$ " + " ".join(build), flush=True)
    done = subprocess.run(build, check=False)
    if done.returncode != 0:
        step("build failed", f"exit {done.returncode}")
        return done.returncode
    step("boot: Debian's real kernel under qemu; the agent runs there from this checkout")
    vm = Vm(kernel=kernel)
    script = vm.script((REPO / "scripts/demo.d/guest.py").read_text(), name="demo_guest.py")
    result = vm.run(vm.python(str(script), str(out), recipe, driver), timeout=1800)
    records = result.records()
    for name, value in records.items():
        if name != "done":
            step(name[3:], value if isinstance(value, str) else repr(value))
    if result.returncode != 0 or not records.get("done"):
        step("the demo did not finish", result.describe())
        return 1
    step(f"done in {result.seconds:.0f} s of VM time")
    return 0


if __name__ == "__main__":
    sys.exit(main())
