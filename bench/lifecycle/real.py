#!/usr/bin/env python3
"""Benchmark of the REAL LTS driver's lifecycle on Debian's 6.1 kernel (one VM boot, TCG, side by side).

Targets (issue 10): the agent's own cold apply in process (preflight to verified) / a shell script making
the same host changes <= 1.3, with the whole-process figures beside it; SIGTERM to exit in a running
process (real driver unloaded, in-tree i915 back) / the same undo by shell <= 1.2; warm restart in process
<= 25 % of a cold apply, with zero host writes.

Builds (or reuses) the real tree with tests/realdriver.py, boots the newest installed 6.1 kernel and runs
bench/lifecycle/real_guest.py there. Prints a Markdown table; --write records it in RESULTS-real.md.

Usage: .venv/bin/python bench/lifecycle/real.py [--runs 3] [--write]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests"))

from realdriver import real_tree  # noqa: E402
from vm.kernel import find_kernel  # noqa: E402
from vm.machine import Vm  # noqa: E402

LTS = "i915-2350.145"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(REPO / "agent"), str(REPO / "tests")], check=True)
    kernel = find_kernel(series="6.1")
    tree = real_tree(LTS, kernel.release)
    vm = Vm(kernel=kernel)
    started = time.monotonic()
    result = vm.run(
        vm.python(str(REPO / "bench/lifecycle/real_guest.py"), str(tree), LTS, str(args.runs)), timeout=5400
    )
    got = result.records()
    if result.returncode != 0 or not got.get("done"):
        raise SystemExit(result.describe())
    med = {k: statistics.median(v) for k, v in got.items() if isinstance(v, list) and v and not isinstance(v[0], bool)}
    rows = [
        ("in process: cold apply, preflight to verified (step sums)", f"{med['run_cold_apply']:.2f} s", ""),
        ("the same host changes by a shell script", f"{med['shell_cold']:.2f} s", ""),
        ("ratio agent in process / shell", f"{med['run_cold_apply'] / med['shell_cold']:.2f}", "<= 1.3"),
        ("whole process: `load` start to exit", f"{med['agent_load_process']:.2f} s", ""),
        ("whole process: `run` start to /readyz 200", f"{med['run_cold_to_ready']:.2f} s", ""),
        ("bare interpreter start (`python -S -c pass`)", f"{med['interpreter']:.2f} s", ""),
        ("SIGTERM to exit in a running `run` (unload, in-tree i915 back)", f"{med['sigterm_to_exit']:.2f} s", ""),
        ("the same undo by a shell script", f"{med['shell_undo']:.2f} s", ""),
        ("ratio SIGTERM to exit / shell undo", f"{med['sigterm_to_exit'] / med['shell_undo']:.2f}", "<= 1.2"),
        ("whole process: `unload` start to exit", f"{med['agent_unload_process']:.2f} s", ""),
        ("in process: warm restart (preflight, verify)", f"{med['run_warm_apply']:.2f} s", ""),
        ("warm / cold apply in process", f"{med['run_warm_apply'] / med['run_cold_apply']:.0%}", "<= 25%"),
        ("host writes on a warm restart", "none" if not any(got["warm_wrote_something"]) else "SOME", "none"),
        ("whole process: warm `run` start to /readyz 200", f"{med['run_warm_to_ready']:.2f} s", ""),
    ]
    table = f"| measure (median of {args.runs}) | value | target |\n| --- | --- | --- |\n" + "\n".join(
        f"| {a} | {b} | {c} |" for a, b, c in rows
    )
    raw = "\n".join(
        f"- {k}: {', '.join(f'{x:.2f}' if isinstance(x, float) else str(x) for x in v)}"
        for k, v in got.items()
        if isinstance(v, list)
    )
    text = (
        f"{table}\n\nRaw runs (seconds), interleaved round by round:\n{raw}\n\n{LTS} for {kernel.release} under qemu "
        f"TCG, 1 vCPU, {time.monotonic() - started:.0f} s for the whole boot.\n"
    )
    print(text)
    if args.write:
        header = (
            "# Lifecycle benchmark with the real LTS driver (real kernel in a VM)\n\nCommand: "
            f"`.venv/bin/python bench/lifecycle/real.py --runs {args.runs} --write`\n\n"
        )
        results = REPO / "bench/lifecycle/RESULTS-real.md"
        previous = results.read_text() if results.exists() else ""
        reading = previous[previous.index("\n## Reading") :] if "\n## Reading" in previous else ""
        results.write_text(header + text + reading)


if __name__ == "__main__":
    main()
