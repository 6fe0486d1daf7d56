"""The demo, host side: build the test driver for the installed kernel, boot it in a VM, show the lifecycle."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests"))

from vm.kernel import find_kernel  # noqa: E402
from vm.machine import Vm  # noqa: E402

RECIPE = REPO / "tests/recipes/testgpu.toml"
BOLD, RESET = ("\033[1m", "\033[0m") if sys.stdout.isatty() else ("", "")


def step(title: str, body: str = "") -> None:
    print(f"\n{BOLD}== {title}{RESET}")
    if body:
        print(body.rstrip())


def main() -> int:
    kernel = find_kernel()
    out = REPO / ".cache/demo" / f"tree-{kernel.release}"
    step(f"build: the test driver for the installed kernel {kernel.release} (the machine runs another one)")
    agent = str(REPO / ".venv/bin/intel-gpu-agent")
    build = [
        agent,
        "--log-format",
        "console",
        "build",
        "--recipe",
        str(RECIPE),
        "--kernel",
        kernel.release,
        "--out",
        str(out),
        "--headers",
        str(kernel.headers),
        "--cache-dir",
        str(REPO / ".cache/demo/cache"),
        "--work-dir",
        str(REPO / ".cache/demo/work"),
    ]
    print("$ " + " ".join(build))
    done = subprocess.run(build, check=False)
    if done.returncode != 0:
        step("build failed", f"exit {done.returncode}")
        return done.returncode
    step("boot: Debian's real kernel under qemu; the agent runs there from this checkout")
    vm = Vm(kernel=kernel)
    script = vm.script((REPO / "scripts/demo.d/guest.py").read_text(), name="demo_guest.py")
    result = vm.run(vm.python(str(script), str(out), str(RECIPE)), timeout=1200)
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
