"""The test driver of tests/driver/ on the host: building it for a kernel and reading its modinfo."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

DRIVER = Path(__file__).resolve().parents[1] / "driver"
FIRMWARE = DRIVER / "firmware"
RECIPES = Path(__file__).resolve().parents[1] / "recipes"
MODULES = ("testgpu_compat", "testgpu_vsec", "testgpu")
FIRMWARE_NAMES = ("testgpu/testgpu_guc_1.0.bin", "testgpu/testgpu_huc_1.0.bin")


def copy_sources(dest: Path) -> Path:
    """Copy the driver's sources (not its firmware or build products) into ``dest``; ``dest``."""
    dest.mkdir(parents=True, exist_ok=True)
    for path in DRIVER.iterdir():
        if path.suffix in (".c", ".h") or path.name in ("Kbuild", "Makefile"):
            shutil.copy2(path, dest / path.name)  # keeps mtimes: a rebuild in place compiles nothing
    return dest


def build(
    headers: Path,
    dest: Path,
    make_vars: Sequence[str] = (),
    env: dict[str, str] | None = None,
    make: str = "make",
) -> subprocess.CompletedProcess[str]:
    """Copy the sources to ``dest`` and run kbuild there: `make -C <headers> M=<dest> -jN [VAR=1 ...] modules`.

    Returns the finished process (the caller checks it); messages are in the C locale so tests can
    match compiler output.
    """
    copy_sources(dest)
    argv = [make, "-C", str(headers), f"M={dest}", f"-j{os.cpu_count() or 1}", *make_vars, "modules"]
    # The kernel's Makefile unexports LC_ALL, so LANG and LC_* carry the locale to the compiler.
    run_env = {k: v for k, v in os.environ.items() if not k.startswith("LC_")}
    run_env.update(LANG="C", **(env or {}))
    return subprocess.run(argv, capture_output=True, text=True, env=run_env, timeout=600, check=False)


def modinfo(module: Path, tool: str = "modinfo") -> dict[str, list[str]]:
    """Every field modinfo prints for a module file, each as the list of its values."""
    done = subprocess.run([tool, str(module)], capture_output=True, text=True, check=True)
    fields: dict[str, list[str]] = {}
    for line in done.stdout.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            fields.setdefault(key.strip(), []).append(value.strip())
    return fields
