#!/usr/bin/env python3
"""Benchmark of the lifecycle on the real kernel (one VM boot, TCG, side by side).

Targets (issue 4): cold `load` / a minimal shell script doing the same host changes <= 1.5; warm restart to
ready <= 25% of a cold load; SIGTERM to exit with the driver unloaded <= 2 s; steady-state RSS of `run` <= 45 MB.

Builds the test driver tree with `intel-gpu-agent build` (cached in .cache/scenarios), boots the installed
Debian kernel with the host root as guest root and runs bench/lifecycle/guest.py there. Prints a Markdown
table and, with --write, records it in bench/lifecycle/RESULTS.md.

Usage: .venv/bin/python bench/lifecycle/run.py [--runs 3] [--write]
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

from vm.machine import Vm  # noqa: E402

RECIPE = REPO / "tests/recipes/testgpu.toml"


def tree(kernel: str) -> Path:
    out = REPO / ".cache/scenarios" / kernel / "tree"
    subprocess.run(
        [sys.executable, "-m", "agent", "build", "--recipe", str(RECIPE), "--kernel", kernel, "--out", str(out),
         "--cache-dir", str(out.parent / "cache")],
        cwd=REPO, check=True, capture_output=True,
    )  # fmt: skip
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(REPO / "agent"), str(REPO / "tests")], check=True)
    vm = Vm()
    driver = tree(vm.kernel.release)
    started = time.monotonic()
    result = vm.run(
        vm.python(str(REPO / "bench/lifecycle/guest.py"), str(driver), str(RECIPE), str(args.runs)), timeout=3600
    )
    got = result.records()
    if result.returncode != 0 or not got.get("done"):
        raise SystemExit(result.describe())
    med = {k: statistics.median(v) for k, v in got.items() if isinstance(v, list)}
    ratio = med["agent_cold"] / med["shell_cold"]
    warm_share = med["run_warm_to_ready"] / med["agent_cold"]
    rows = [
        ("cold `load` (agent process, start to exit)", f"{med['agent_cold']:.2f} s", ""),
        ("same host changes by a shell script", f"{med['shell_cold']:.2f} s", ""),
        ("ratio agent / shell", f"{ratio:.1f}", "<= 1.5"),
        ("bare interpreter start (`python -S -c pass`)", f"{med['interpreter']:.2f} s", ""),
        ("interpreter importing pathlib (`python -S -c 'import pathlib'`)", f"{med['interpreter_pathlib']:.2f} s", ""),
        ("budget for the agent at ratio 1.5", f"{1.5 * med['shell_cold']:.2f} s", ""),
        ("cold `run` start to /readyz 200", f"{med['run_cold_to_ready']:.2f} s", ""),
        ("warm restart (`run` after SIGKILL) start to /readyz 200", f"{med['run_warm_to_ready']:.2f} s", ""),
        ("warm restart / cold load", f"{warm_share:.0%}", "<= 25%"),
        ("in process: cold apply (preflight to verified, step sums)", f"{med['run_cold_apply']:.2f} s", ""),
        ("in process: cold apply / shell script", f"{med['run_cold_apply'] / med['shell_cold']:.2f}", ""),
        ("in process: warm apply (preflight, verify)", f"{med['run_warm_apply']:.2f} s", ""),
        ("in process: warm / cold apply", f"{med['run_warm_apply'] / med['run_cold_apply']:.0%}", ""),
        ("SIGTERM to exit, driver unloaded, in-tree i915 loaded back", f"{med['sigterm_to_exit']:.2f} s", "<= 2 s"),
        ("of which the kernel's `modprobe i915` alone", f"{med['modprobe_i915']:.2f} s", ""),
        ("the same undo by a shell script", f"{med['shell_undo_with_restore']:.2f} s", ""),
        ("SIGTERM to exit, nothing in-tree to restore", f"{med['sigterm_to_exit_nothing_to_restore']:.2f} s", "<= 2"),
        ("steady-state RSS of `run`", f"{med['rss_mb']:.1f} MB", "<= 45 MB"),
    ]
    table = f"| measure (median of {args.runs}) | value | target |\n| --- | --- | --- |\n" + "\n".join(
        f"| {a} | {b} | {c} |" for a, b, c in rows
    )
    raw = "\n".join(f"- {k}: {', '.join(f'{x:.2f}' for x in v)}" for k, v in got.items() if isinstance(v, list))
    text = (
        f"{table}\n\nRaw runs (seconds, MB):\n{raw}\n\nKernel {vm.kernel.release} under qemu TCG, 1 vCPU, "
        f"{time.monotonic() - started:.0f} s for the whole boot.\n"
    )
    print(text)
    if args.write:
        header = (
            "# Lifecycle benchmark (real kernel in a VM)\n\nCommand: `.venv/bin/python bench/lifecycle/run.py "
            f"--runs {args.runs} --write`\n\n"
        )
        results = REPO / "bench/lifecycle/RESULTS.md"
        previous = results.read_text() if results.exists() else ""
        # The written reading of the figures (## Reading ...) is kept below the new table.
        reading = previous[previous.index("\n## Reading") :] if "\n## Reading" in previous else ""
        results.write_text(header + text + reading)


if __name__ == "__main__":
    main()
