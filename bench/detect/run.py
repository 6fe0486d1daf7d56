#!/usr/bin/env python3
"""Benchmark: `intel-gpu-agent detect --json` as a whole process (targets: median <= 100 ms, peak RSS <= 40 MB).

Runs, interleaved in one session so they share the machine's state: the bare interpreter, `detect
--json` on this machine, and `detect --json` on a fake Flex node (three GPUs, modules, firmware path).
Prints a Markdown table and, with --write, records it in bench/detect/RESULTS.md.

Usage: .venv/bin/python bench/detect/run.py [--runs 20] [--write]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests"))

from fakehost import ubuntu_2204_flex  # noqa: E402


def measure(argv: list[str]) -> tuple[float, float]:
    """Wall seconds and peak RSS (MB) of one run of ``argv``."""
    started = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{argv} failed")
    return elapsed, usage.ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()
    agent = str(REPO / ".venv/bin/intel-gpu-agent")
    # Measure the agent as installed: compiled once (PYTHONDONTWRITEBYTECODE would recompile each run).
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(REPO / "agent")], check=True)
    with tempfile.TemporaryDirectory() as tmp:
        ubuntu_2204_flex(Path(tmp))
        cases = {
            "python -c pass (interpreter alone)": [sys.executable, "-c", "pass"],
            "python -c 'import click' (the CLI library alone)": [sys.executable, "-c", "import click"],
            "intel-gpu-agent detect --json (this machine)": [agent, "detect", "--json"],
            "intel-gpu-agent detect --json (fake Flex node)": [agent, "--host-root", tmp, "detect", "--json"],
        }
        for argv in cases.values():  # warm the page cache
            measure(argv)
        samples: dict[str, list[tuple[float, float]]] = {name: [] for name in cases}
        for _ in range(args.runs):
            for name, argv in cases.items():
                samples[name].append(measure(argv))
    base = statistics.median(t for t, _ in samples["python -c pass (interpreter alone)"])
    rows = []
    for name, values in samples.items():
        median = statistics.median(t for t, _ in values)
        rss = max(r for _, r in values)
        rows.append(f"| {name} | {median * 1000:.1f} | {median / base:.2f} | {rss:.1f} |")
    table = "\n".join(
        ["| command | median ms | ratio to interpreter | peak RSS MB |", "| --- | ---: | ---: | ---: |", *rows]
    )
    print(table)
    if args.write:
        when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
        text = (
            "# detect benchmark\n\n"
            "Command: `.venv/bin/python bench/detect/run.py --runs "
            f"{args.runs} --write` ({args.runs} interleaved runs each, {when}, "
            f"{platform.python_implementation()} {platform.python_version()}, {os.cpu_count()} CPUs).\n\n"
            "Targets: median <= 100 ms, peak RSS <= 40 MB. The target assumed an interpreter start of ~10 ms;\n"
            "compare the ratios when the machine is slower or busier than that.\n\n" + table + "\n"
        )
        (REPO / "bench/detect/RESULTS.md").write_text(text)


if __name__ == "__main__":
    main()
