#!/usr/bin/env python3
"""Which release builds on which kernel, with and without the compat fixes: the table in build/README.md.

Builds each shipped real release (LTS i915-2350.145, rolling i915-1099.12) from ../shared/real-driver
against the newest installed Debian 6.1 and 6.12 headers, once with the fixes its probes call for and
once with --no-compat-fixes, and reports the modules built or the first compiler error. Builds with
fixes go where tests/realdriver.py keeps them (a tree already built from the same inputs is reused:
the agent's own no-op); builds without fixes go to a temporary folder.

Usage: .venv/bin/python bench/build/matrix.py [--jobs N] [--write]   (--write updates build/README.md)
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import pytest  # noqa: E402
from realdriver import RELEASES, build_command, find_kernel_by_series, real_tree  # noqa: E402
from results import write_section  # noqa: E402

README = REPO / "build" / "README.md"
FIRST_ERROR = re.compile(r"the build failed at (?P<error>[^;]+?: error: [^;]+?)(?: \(built with [^)]*\))?;")


def first_error(text: str) -> str:
    match = FIRST_ERROR.search(text)
    if match:
        return match["error"].strip()
    lines = [line for line in text.splitlines() if line.startswith("error:")]
    return lines[-1][:200] if lines else text.strip().splitlines()[-1][:200]


def with_fixes(recipe: str, kernel: str, jobs: int) -> tuple[str, str, float]:
    """(result, fixes applied, seconds) of the default build, in the shared real-driver cache."""
    started = time.monotonic()
    try:
        tree = real_tree(recipe, kernel, jobs=jobs)
    except pytest.fail.Exception as e:
        # The failed build's plan: which fixes its probes chose, from the same headers.
        return f"fails: `{first_error(str(e))}`", _planned_fixes(recipe, kernel), time.monotonic() - started
    manifest = json.loads((tree / "manifest.json").read_text())
    fixes = ", ".join(f["name"] for f in manifest["compat_fixes"]) or "none needed"
    return f"builds: {len(manifest['modules'])} modules", fixes, time.monotonic() - started


def _planned_fixes(recipe: str, kernel: str) -> str:
    from agent.build.fixes import plan_fixes
    from agent.build.headers import find_headers
    from agent.host.paths import HostPaths
    from agent.recipes.loader import RELEASES_DIR, load_recipe

    plan = plan_fixes(load_recipe(RELEASES_DIR / f"{recipe}.toml"), find_headers(HostPaths(Path("/")), kernel))
    return ", ".join(plan.names) or "none needed"


def without_fixes(recipe: str, kernel: str, jobs: int, base: Path) -> tuple[str, float]:
    started = time.monotonic()
    work = base / f"{recipe}-{kernel}"
    argv = build_command(
        recipe, kernel, work / "tree", jobs=jobs, extra=("--no-compat-fixes", "--work-dir", str(work / "work"))
    )
    env = {**os.environ, "INTEL_GPU_AGENT_LOG_LEVEL": "warning"}
    done = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, check=False)
    seconds = time.monotonic() - started
    if done.returncode == 0:
        modules = len(json.loads((work / "tree/manifest.json").read_text())["modules"])
        return f"builds: {modules} modules", seconds
    return f"fails: `{first_error(done.stderr)}`", seconds


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()
    kernels = [find_kernel_by_series(s) for s in ("6.1", "6.12")]
    rows = []
    with tempfile.TemporaryDirectory(prefix="build-matrix-") as tmp:
        for recipe in RELEASES:
            for kernel in kernels:
                fixed, fixes, fixed_s = with_fixes(recipe, kernel, args.jobs)
                print(f"{recipe} {kernel} with fixes ({fixes}): {fixed} [{fixed_s:.0f} s]", flush=True)
                plain, plain_s = without_fixes(recipe, kernel, args.jobs, Path(tmp))
                print(f"{recipe} {kernel} without fixes: {plain} [{plain_s:.0f} s]", flush=True)
                rows.append((recipe, kernel, fixes, fixed, plain))
    table = render(rows, jobs=args.jobs)
    print(table)
    if args.write:
        write_section("build-matrix", table, path=README)


def render(rows: list[tuple[str, str, str, str, str]], *, jobs: int) -> str:
    lines = [
        "## Which release builds on which kernel (measured)",
        "",
        f"Measured {datetime.datetime.now(datetime.UTC):%Y-%m-%d} with `.venv/bin/python bench/build/matrix.py "
        f"--jobs {jobs} --write`: the published tarballs and firmware (../shared/real-driver) against Debian 12's "
        "kernel headers, with the fixes the probes choose and with `--no-compat-fixes`. Builds only: loading is "
        "tested in the VM scenarios.",
        "",
        "| release | kernel (Debian 12 headers) | fixes the probes choose | with fixes | without fixes |",
        "| --- | --- | --- | --- | --- |",
    ]
    for recipe, kernel, fixes, fixed, plain in rows:
        lines.append(f"| `{recipe}` | `{kernel}` | {fixes} | {fixed} | {plain} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
