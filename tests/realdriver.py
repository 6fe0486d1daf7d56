"""The real i915 backport built once per CI run and shared by every test that needs it.

``real_tree("i915-2350.145", find_kernel_by_series("6.1"))`` builds the published release from
../shared/real-driver/ (source as --source tarball, firmware as --firmware folder) with
`intel-gpu-agent build` into ``<checkout>/.cache/real-driver/``, and returns the driver tree.
A later call, in this process or another pytest process, gets the same tree back at once: the
agent's own inputs digest says it is current, and a lock file makes concurrent callers wait for
the one that builds. A missing shared folder fails the test (it never skips).
"""

from __future__ import annotations

import fcntl
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from tooling import REPO

# The published artifacts (test inputs, not part of the project): <checkout>/../shared/real-driver.
REAL_DRIVER = Path(os.environ.get("INTEL_GPU_REAL_DRIVER", str(REPO.parent / "shared" / "real-driver")))
CACHE = REPO / ".cache" / "real-driver"
BUILD_TIMEOUT = 3600.0  # a real build takes 2-5 minutes at -j2 on the shared machine; this is a hang guard

# recipe -> (source tarball, firmware folder) under REAL_DRIVER
RELEASES = {
    "i915-2350.145": (
        "sources/I915_25WW14.3_803.145_23.10.90_231129.99.tar.gz",
        "firmware/intel-gpu-firmware-25WW14.3_803.145",
    ),
    "i915-1099.12": (
        "sources/I915_25WW12.2_1099.12_25.1.15_250113.14.tar.gz",
        "firmware/intel-gpu-firmware-25WW18.2_1099.17",
    ),
}


def real_driver() -> Path:
    """The shared folder; its absence fails the calling test with what to do."""
    if not (REAL_DRIVER / "sources").is_dir() or not (REAL_DRIVER / "firmware").is_dir():
        pytest.fail(
            f"the real driver artifacts are not at {REAL_DRIVER} (sources/, firmware/): CI provides "
            "../shared/real-driver beside the checkout; set INTEL_GPU_REAL_DRIVER to use another copy"
        )
    return REAL_DRIVER


def real_inputs(recipe: str) -> tuple[Path, Path]:
    """The source tarball and the firmware folder of a shipped recipe, in the shared folder."""
    if recipe not in RELEASES:
        pytest.fail(f"no real artifacts for recipe {recipe!r} (known: {', '.join(RELEASES)})")
    source, firmware = (real_driver() / p for p in RELEASES[recipe])
    for path in (source, firmware):
        if not path.exists():
            pytest.fail(f"{path} is missing from the shared real-driver folder")
    return source, firmware


def _version_key(release: str) -> tuple[int, ...]:
    return tuple(int(n) for n in re.findall(r"\d+", release))


def find_kernel_by_series(series: str, *, root: Path = Path("/")) -> str:
    """The newest installed kernel release of ``series`` ("6.1", "6.12") that has its headers.

    Debian's point releases move, so tests name a series, never a release and never "the newest".
    """
    modules = root / "lib" / "modules"
    pattern = re.compile(rf"^{re.escape(series)}[.-]")
    found = (
        [p.name for p in modules.iterdir() if pattern.match(p.name) and (p / "build" / "Makefile").is_file()]
        if modules.is_dir()
        else []
    )
    if not found:
        pytest.fail(
            f"no kernel of series {series} with headers in {modules}: install linux-headers for it "
            "(scripts/install-deps installs Debian's 6.1 and 6.12)"
        )
    return max(found, key=_version_key)


def build_command(
    recipe: str, kernel_release: str, out: Path, *, jobs: int | None = None, extra: tuple[str, ...] = ()
) -> list[str]:
    """`intel-gpu-agent build` of the real ``recipe`` from the shared folder (what real_tree runs)."""
    source, firmware = real_inputs(recipe)
    return [
        sys.executable,
        "-m",
        "agent",
        "--log-format",
        "json",
        "build",
        "--recipe",
        recipe,
        "--kernel",
        kernel_release,
        "--out",
        str(out),
        "--source",
        str(source),
        "--firmware",
        str(firmware),
        "--cache-dir",
        str(CACHE / "cache"),
        "--jobs",
        str(jobs or len(os.sched_getaffinity(0))),
        *extra,
    ]


def real_tree(recipe: str, kernel_release: str, *, jobs: int | None = None) -> Path:
    """The driver tree of ``recipe`` for ``kernel_release``, built with `intel-gpu-agent build` once.

    The tree lives in ``.cache/real-driver/<recipe>/<kernel>/tree``; the agent rebuilds it only when
    its inputs (recipe, headers, source, firmware, fixes) changed. Callers in several processes wait
    on one lock per (recipe, kernel) while the first of them builds.
    """
    folder = CACHE / recipe / kernel_release
    folder.mkdir(parents=True, exist_ok=True)
    tree = folder / "tree"
    argv = build_command(recipe, kernel_release, tree, jobs=jobs)
    with (folder / ".lock").open("a") as lock:
        started = time.monotonic()
        fcntl.flock(lock, fcntl.LOCK_EX)  # blocks while another process builds the same tree
        waited = time.monotonic() - started
        env = {**os.environ, "INTEL_GPU_AGENT_LOG_LEVEL": "warning"}
        for name in ("INTEL_GPU_AGENT_NO_COMPAT_FIXES", "INTEL_GPU_AGENT_FIRMWARE_FILES_URL"):
            env.pop(name, None)  # the shared tree is always the default build
        try:
            done = subprocess.run(
                argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=BUILD_TIMEOUT, check=False
            )
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    if done.returncode != 0:
        pytest.fail(
            f"building the real {recipe} for {kernel_release} failed (exit {done.returncode}, waited "
            f"{waited:.0f} s for the lock):\n{done.stderr[-4000:]}"
        )
    return tree
