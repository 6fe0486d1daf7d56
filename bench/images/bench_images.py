"""Image sizes and build times of Dockerfile.loader and Dockerfile.builder, cold and with cached layers.

    .venv/bin/python bench/images/bench_images.py [--rounds N]

Same tools and local base image as tests/images (buildah, chroot isolation, overlay storage; a Debian 12
minbase from debootstrap standing in for debian:bookworm-slim). The builder builds the test driver
(tests/recipes/testgpu.toml) for the installed Debian kernel headers.

- cold: `--no-cache`, every step runs again (apt downloads from the Debian mirror, pip from PyPI);
- cached layers: the same build again once its layers are cached, every layer reused;
- code change: one line of the agent changed, so the context COPY and every later step run again.
`--real` adds the builder with the real LTS release (i915-2350.145), its published source and firmware
(../shared/real-driver) served on loopback through DRIVER_SOURCE/DRIVER_FIRMWARE, as the KMM tests do.
Prints a Markdown table (sizes as `podman images` counts them, uncompressed).
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import statistics
import sys
import tempfile
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests"))

from images import imagelib  # noqa: E402

LTS = "i915-2350.145"

CONTEXT = (
    "pyproject.toml", "README.md", "LICENSE", "agent", "build/releases", "build/fixes", "scripts/deps/pip-agent.lock",
    "tests/recipes", "tests/driver",
)  # fmt: skip


def tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        sys.exit(f"{name} is not installed: run scripts/install-deps")
    return found


def snapshot(into: Path, *, change: bool = False) -> Path:
    """A copy of the build context (others may edit the checkout meanwhile); ``change``: one agent line changed."""
    for name in (*CONTEXT, ".dockerignore"):
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, into / name, ignore=shutil.ignore_patterns("__pycache__"))
        elif source.exists():
            (into / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, into / name)
    if change:
        init = into / "agent/__init__.py"
        init.write_text(init.read_text() + "# benchmark: a code change\n")
    return into


def seconds(buildah: str, dockerfile: Path, context: Path, tag: str, args: dict[str, str], **kw: bool) -> float:
    return imagelib.build(buildah, dockerfile, context, tag, args, **kw).seconds


def timed(rounds: int, one: Callable[[], float]) -> str:
    seconds = [one() for _ in range(rounds)]
    text = f"{statistics.median(seconds):.1f} s"
    return text + (f" (min {min(seconds):.1f}, max {max(seconds):.1f}, n={rounds})" if rounds > 1 else "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=1, help="builds per figure (median)")
    parser.add_argument("--real", action="store_true", help=f"also the builder with the real {LTS} release")
    options = parser.parse_args()
    buildah, podman = tool("buildah"), tool("podman")
    base = imagelib.ensure_base_image(podman, tool("debootstrap"))
    kernel = imagelib.installed_kernel()
    images = {
        "loader": (REPO / "Dockerfile.loader", "localhost/intel-gpu-driver-agent:bench", {"BASE_IMAGE": base}),
        "builder": (
            REPO / "Dockerfile.builder",
            "localhost/intel-gpu-driver:bench",
            {"BASE_IMAGE": base, "KERNEL_FULL_VERSION": kernel, "RECIPE": "tests/recipes/testgpu.toml"},
        ),
    }
    rows = []
    with contextlib.ExitStack() as stack:
        if options.real:
            images[f"builder ({LTS})"] = (
                REPO / "Dockerfile.builder",
                "localhost/intel-gpu-driver:bench-real",
                {"BASE_IMAGE": base, "KERNEL_FULL_VERSION": kernel, "RECIPE": LTS} | stack.enter_context(real_inputs()),
            )
        for label, (dockerfile, tag, args) in images.items():
            rows.append(measure(buildah, podman, options.rounds, label, dockerfile, tag, args))
    base_size = imagelib.image_size(podman, base)
    load = Path("/proc/loadavg").read_text().split()[0]
    print(f"kernel {kernel}; base image {base} {base_size / 1e6:.0f} MB; load average at the end {load}\n")
    print("| image | size | cold build | cached layers | agent code change |")
    print("| --- | --- | --- | --- | --- |")
    for row in rows:
        print("| " + " | ".join(row) + " |")


@contextlib.contextmanager
def real_inputs() -> Iterator[dict[str, str]]:
    """The real release's source and firmware on a loopback mirror; the build args that name it."""
    import tomllib

    from realdriver import real_inputs as shared

    recipe = tomllib.loads((REPO / "build/releases" / f"{LTS}.toml").read_text())
    source, firmware = shared(LTS)
    with tempfile.TemporaryDirectory(prefix="igd-bench-real-") as served:
        (Path(served) / source.name).symlink_to(source)
        sha = imagelib.tarball_of(firmware, recipe["firmware"]["top_folder"], Path(served) / "firmware.tar.gz")
        with imagelib.http_server(Path(served), imagelib.stable_port("bench-real")) as address:
            yield {
                "DRIVER_SOURCE": f"http://{address}/{source.name}",
                "DRIVER_SOURCE_SHA256": recipe["source"]["sha256"],
                "DRIVER_FIRMWARE": f"http://{address}/firmware.tar.gz",
                "DRIVER_FIRMWARE_SHA256": sha,
            }


def measure(
    buildah: str, podman: str, rounds: int, label: str, dockerfile: Path, tag: str, args: dict[str, str]
) -> tuple[str, ...]:
    """One image's row: size, cold build, cached layers, an agent code change."""
    with tempfile.TemporaryDirectory(prefix="igd-bench-") as work:
        same = snapshot(Path(work) / "same")
        cold = timed(rounds, partial(seconds, buildah, dockerfile, same, tag, args, no_cache=True))
        # buildah keeps no layers of a --no-cache build: one build fills the cache, then measure.
        seconds(buildah, dockerfile, same, tag, args)
        cached = timed(rounds, partial(seconds, buildah, dockerfile, same, tag, args))
        changed = snapshot(Path(work) / "changed", change=True)
        change = timed(1, partial(seconds, buildah, dockerfile, changed, tag, args))
    size = imagelib.image_size(podman, tag)
    return (label, f"{size / 1e6:.0f} MB", cold, cached, change)


if __name__ == "__main__":
    main()
