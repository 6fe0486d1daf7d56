#!/usr/bin/env python3
"""Benchmark: the real LTS release (i915-2350.145) built by `intel-gpu-agent build` vs the same steps by hand,
and the bytes a node downloads when it builds that release for itself.

Targets (issue 10): agent / hand ratio of the median wall times <= 1.03; bytes downloaded <= 10 MB.

Both sides run interleaved in one session (the order alternates per round) against Debian's newest 6.1
headers, each from scratch:
- by hand: `tar xzf` the source tarball, `patch -p1 --forward --batch` with the recipe's compat fix,
  then the recipe's steps (`cp defconfigs/i915 .config`, `make ... olddefconfig`, `make -jN ...`);
- the agent, as a node building for itself, with a fresh cache: it downloads the source tarball and the
  recipe's firmware files one by one from a local HTTP server laid out like GitHub (the archive URL and
  raw.githubusercontent.com's <tag>/firmware/<file>), checks every pin, unpacks, copies the source,
  applies the fix, runs the same steps, then strips, inspects, depmods, places the firmware, writes the manifest.
The server counts the bytes it sends. The firmware tarball path is not run here (the 197 MB tarball is
not kept on this machine): its figure is the size the recipe pins (reference data, release_tarballs.csv).

Usage: .venv/bin/python bench/build/real.py [--runs 3] [--jobs N] [--write]
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import http.server
import os
import platform
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from results import write_section  # noqa: E402

from agent.recipes.loader import RELEASES_DIR, load_recipe  # noqa: E402

RECIPE = load_recipe(RELEASES_DIR / "i915-2350.145.toml")
SHARED = Path(os.environ.get("INTEL_GPU_REAL_DRIVER", str(REPO.parent / "shared" / "real-driver")))
SOURCE = SHARED / "sources" / f"{RECIPE.driver_tag}.tar.gz"
FIRMWARE = SHARED / "firmware" / f"intel-gpu-firmware-{RECIPE.firmware_tag}" / "firmware"
FIRMWARE_TARBALL_BYTES = 197_188_159  # release_tarballs.csv, the pinned 25WW14.3_803.145 tarball
TARGET_RATIO = 1.03
TARGET_BYTES = 10 * 1000 * 1000


def newest_kernel(series: str) -> str:
    found = [
        p.name
        for p in Path("/lib/modules").iterdir()
        if p.name.startswith(series + ".") and (p / "build" / "Makefile").is_file()
    ]
    if not found:
        raise SystemExit(f"no {series} kernel headers in /lib/modules/*/build")
    return max(found, key=lambda name: [int(n) for n in re.findall(r"\d+", name)])


class Mirror:
    """GitHub's archive and raw-file URLs on 127.0.0.1, counting the bytes sent."""

    def __init__(self, files: dict[str, Path]) -> None:
        self.files = files
        self.sent = 0
        mirror = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = mirror.files.get(self.path.lstrip("/"))
                if path is None:
                    self.send_error(404)
                    return
                data = path.read_bytes()
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                mirror.sent += len(data)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/{path}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def run_steps(steps: list[tuple[list[str], Path]], env: dict[str, str]) -> tuple[float, float]:
    """Wall and CPU seconds (user + sys of every process started, compilers included) of running ``steps``
    (argv, cwd) one after the other; any failure stops the benchmark. CPU time is what other jobs on the
    shared machine disturb least."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    for argv, cwd in steps:
        done = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise SystemExit(f"{' '.join(argv)} failed ({done.returncode}):\n{(done.stdout + done.stderr)[-3000:]}")
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def by_hand(base: Path, kernel: str, jobs: int) -> tuple[float, float]:
    """The recipe's steps by hand in a fresh folder, with the recipe's fixes applied by `patch`."""
    work = base / "hand"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    headers = str(Path(f"/lib/modules/{kernel}/build").resolve())
    klib = work / "klib"
    klib.mkdir()
    (klib / "build").symlink_to(headers)
    src = work / RECIPE.source.top_folder
    env = {**os.environ, "LC_ALL": "C", "LANG": "C", **dict(RECIPE.build_env)}
    steps: list[tuple[list[str], Path]] = [(["tar", "xzf", str(SOURCE), "-C", str(work)], work)]
    for fix in RECIPE.compat_fixes:
        patch = Path(RECIPE.resolve(fix.patch))
        steps.append((["patch", "-p1", "--forward", "--batch", "--quiet", "-i", str(patch)], src))
    values = {"klib": str(klib), "headers": headers, "jobs": str(jobs), "kernel": kernel, "src": str(src)}
    for step in RECIPE.build_steps:
        steps.append(([re.sub(r"\{([a-z_]+)\}", lambda m: values[m.group(1)], a) for a in step], src))
    return run_steps(steps, env)


def by_agent(base: Path, kernel: str, jobs: int, mirror: Mirror) -> tuple[tuple[float, float], int]:
    """`intel-gpu-agent build` of the recipe as a node building for itself (fresh cache): (wall, CPU) s, bytes."""
    work = base / "agent"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    sent = mirror.sent
    argv = [
        str(REPO / ".venv/bin/intel-gpu-agent"),
        "build",
        "--recipe",
        RECIPE.name,
        "--kernel",
        kernel,
        "--out",
        str(work / "tree"),
        "--cache-dir",
        str(work / "cache"),
        "--jobs",
        str(jobs),
        "--source",
        mirror.url(f"source/{SOURCE.name}"),
        "--source-sha256",
        RECIPE.source.sha256,
        "--firmware-files-url",
        mirror.url("{tag}/firmware/{file}"),
    ]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["INTEL_GPU_AGENT_LOG_LEVEL"] = "warning"
    seconds = run_steps([(argv, REPO)], env)
    fetched = mirror.sent - sent
    firmware = sorted(p.name for p in (work / "tree/firmware/i915").iterdir())
    if firmware != sorted(f.file for f in RECIPE.firmware_files):
        raise SystemExit(f"the agent's tree has other firmware than the recipe's: {firmware}")
    return seconds, fetched


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--jobs", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()
    if not SOURCE.is_file() or not FIRMWARE.is_dir():
        raise SystemExit(f"the real driver artifacts are not in {SHARED}")
    if hashlib.sha256(SOURCE.read_bytes()).hexdigest() != RECIPE.source.sha256:
        raise SystemExit(f"{SOURCE} is not the recipe's source")
    kernel = newest_kernel("6.1")
    files = {f"source/{SOURCE.name}": SOURCE}
    files |= {f"{RECIPE.firmware_tag}/firmware/{f.file}": FIRMWARE / f.file for f in RECIPE.firmware_files}
    mirror = Mirror(files)
    hand: list[tuple[float, float]] = []
    agent: list[tuple[float, float]] = []
    fetched: list[int] = []
    started = time.monotonic()
    try:
        with tempfile.TemporaryDirectory(prefix="bench-real-build-") as tmp:
            base = Path(tmp)
            for n in range(args.runs):
                order = ("hand", "agent") if n % 2 == 0 else ("agent", "hand")
                for side in order:
                    if side == "hand":
                        hand.append(by_hand(base, kernel, args.jobs))
                    else:
                        seconds, sent = by_agent(base, kernel, args.jobs, mirror)
                        agent.append(seconds)
                        fetched.append(sent)
                    wall, cpu = (hand if side == "hand" else agent)[-1]
                    print(f"round {n + 1} {side}: {wall:.1f} s wall, {cpu:.1f} s CPU", flush=True)
    finally:
        mirror.close()
    report = render(
        hand, agent, fetched, kernel=kernel, jobs=args.jobs, runs=args.runs, minutes=(time.monotonic() - started) / 60
    )
    print(report)
    if args.write:
        write_section("real-lts", report)


def render(
    hand: list[tuple[float, float]],
    agent: list[tuple[float, float]],
    fetched: list[int],
    *,
    kernel: str,
    jobs: int,
    runs: int,
    minutes: float,
) -> str:
    def med(samples: list[tuple[float, float]], index: int = 0) -> float:
        return statistics.median(s[index] for s in samples)

    ratio = med(agent) / med(hand)
    cpu_ratio = med(agent, 1) / med(hand, 1)
    per_round = [a[0] / h[0] for a, h in zip(agent, hand, strict=True)]
    source_bytes = SOURCE.stat().st_size
    firmware_bytes = sum(f.bytes for f in RECIPE.firmware_files)
    bytes_now = statistics.median(fetched)
    load = os.getloadavg()
    fixes = ", ".join(f.name for f in RECIPE.compat_fixes)
    lines = [
        "## The real LTS release: `build` against the same steps by hand, and the bytes a node downloads",
        "",
        f"Command: `.venv/bin/python bench/build/real.py --runs {runs} --jobs {jobs} --write`",
        "",
        f"Recorded {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC on {platform.node()} "
        f"({len(os.sched_getaffinity(0))} CPUs available, shared with other engineers' jobs; load average "
        f"{load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} at the end), kernel headers {kernel}, -j{jobs}, "
        f"{runs} interleaved rounds (order alternating), {minutes:.0f} minutes in all. Each real build takes "
        "minutes, so the rounds are few.",
        "",
        "| case | median wall | median CPU | samples (wall, s) |",
        "| --- | --- | --- | --- |",
        f"| by hand: `tar xzf`, `patch -p1` ({fixes}), the recipe's `cp` + `make olddefconfig` + `make -j{jobs}` "
        f"| {med(hand):.1f} s | {med(hand, 1):.1f} s | {', '.join(f'{s[0]:.1f}' for s in hand)} |",
        "| `intel-gpu-agent build`, fresh cache: download and check the source and 8 firmware files, unpack, "
        "copy, fix, the same make steps, strip, modinfo, depmod, firmware, manifest "
        f"| {med(agent):.1f} s | {med(agent, 1):.1f} s | {', '.join(f'{s[0]:.1f}' for s in agent)} |",
        "",
        f"- agent / hand (median wall): **{ratio:.3f}** ({'meets' if ratio <= TARGET_RATIO else 'misses'} the "
        f"target <= {TARGET_RATIO}); CPU ratio {cpu_ratio:.3f}; per-round wall ratios "
        f"{', '.join(f'{r:.3f}' for r in per_round)}.",
        f"- bytes downloaded by a node building {RECIPE.name} for itself: **{bytes_now / 1e6:.2f} MB** "
        f"({'meets' if bytes_now <= TARGET_BYTES else 'misses'} the target <= 10 MB): the source tarball "
        f"{source_bytes / 1e6:.2f} MB + the recipe's 8 firmware files {firmware_bytes / 1e6:.2f} MB, counted by the "
        f"server in each round ({', '.join(str(b) for b in fetched)} bytes). With the firmware tarball instead "
        f"(`--firmware <tarball URL>`, the only way before): {(source_bytes + FIRMWARE_TARBALL_BYTES) / 1e6:.1f} MB "
        f"(the tarball's pinned size, {FIRMWARE_TARBALL_BYTES:,} bytes; not downloaded here).",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
