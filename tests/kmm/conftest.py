"""Fixtures of the KMM replay: the chart's Module as a worker spec, the driver image, its copy-out, a VM.

The driver image is built by buildah from Dockerfile.builder on the local Debian 12 base of the image
tests (tests/images/imagelib.py), for the VM's kernel. Copies out of it are made by the image itself
(its /bin/sh and cp, as KMM's init container does) into host folders the guest sees over 9p.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from images import imagelib
from realdriver import real_inputs
from tooling import need_tool
from vm.conftest import tool, vm, vm_kernel  # noqa: F401 - the VM harness's fixtures, shared
from vm.kernel import Kernel

from agent.recipes.loader import load_recipe
from agent.recipes.model import Recipe

from .kmmlib import WorkerSpec, chart_values_for, rendered, worker_spec

REPO = Path(__file__).resolve().parents[2]
TEST_RECIPE = "tests/recipes/testgpu.toml"
LTS = "i915-2350.145"


@dataclass(frozen=True)
class DriverImage:
    """A driver image built for the VM's kernel, and what it took."""

    tag: str
    recipe: Recipe
    kernel: str
    build_seconds: float


@dataclass(frozen=True)
class Copied:
    """The image's files out on the host: the worker pod's /tmp and the agent's tree; the copy's wall time."""

    worker_tmp: Path
    image_tree: Path
    copy_seconds: float


def build_driver_image(kernel: str, recipe_arg: str, tag: str, extra: dict[str, str] | None = None) -> DriverImage:
    base = imagelib.ensure_base_image(need_tool("podman"), need_tool("debootstrap"))
    args = {"BASE_IMAGE": base, "KERNEL_FULL_VERSION": kernel, "RECIPE": recipe_arg, **(extra or {})}
    built = imagelib.build(need_tool("buildah"), REPO / "Dockerfile.builder", REPO, tag, args, timeout=3600)
    recipe = (
        load_recipe(REPO / recipe_arg)
        if recipe_arg.endswith(".toml")
        else load_recipe(REPO / "build/releases" / f"{recipe_arg}.toml")
    )
    return DriverImage(tag=tag, recipe=recipe, kernel=kernel, build_seconds=round(built.seconds, 1))


def copy_out(image: DriverImage, spec: WorkerSpec, folder: Path) -> Copied:
    """Run KMM's init container command in the image with a host folder as its /tmp; the tree for the agent."""
    podman = need_tool("podman")
    worker_tmp, image_tree = folder / "worker-tmp", folder / "image-tree"
    worker_tmp.mkdir(parents=True)
    image_tree.mkdir()
    started = time.monotonic()
    script = spec.init_container_script(image.kernel)
    done = imagelib.podman_run(podman, image.tag, "-c", script, entrypoint="/bin/sh", volumes={str(worker_tmp): "/tmp"})
    seconds = round(time.monotonic() - started, 2)
    assert done.returncode == 0, done.stdout + done.stderr
    # The agent's view of the same image: its manifest with the tree it describes.
    tree_script = "set -e; cp -R /manifest.json /opt /firmware /tree/"
    done = imagelib.podman_run(
        podman, image.tag, "-c", tree_script, entrypoint="/bin/sh", volumes={str(image_tree): "/tree"}
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return Copied(worker_tmp=worker_tmp, image_tree=image_tree, copy_seconds=seconds)


@pytest.fixture(scope="session")
def test_driver_image(vm_kernel: Kernel) -> DriverImage:  # noqa: F811 - the harness's fixture
    """Dockerfile.builder with the test driver's recipe, for the VM's kernel."""
    return build_driver_image(vm_kernel.release, TEST_RECIPE, imagelib.checkout_tag("igd-kmm-replay"))


@pytest.fixture(scope="session")
def real_driver_image(vm_kernel: Kernel, tmp_path_factory: pytest.TempPathFactory) -> DriverImage:  # noqa: F811
    """Dockerfile.builder with the real LTS release for the VM's kernel (Debian 12's 6.1).

    The published source and firmware (../shared/real-driver) are served on loopback, as a mirror of the
    recipe's URLs would be (DRIVER_SOURCE, DRIVER_FIRMWARE); a port fixed per checkout keeps the build
    args, and so buildah's cached layers, the same from one run to the next.
    """
    recipe = load_recipe(REPO / "build/releases" / f"{LTS}.toml")
    source, firmware = real_inputs(LTS)
    served = tmp_path_factory.mktemp("real-served")
    (served / source.name).symlink_to(source)
    firmware_sha = imagelib.tarball_of(firmware, recipe.firmware.top_folder, served / "firmware.tar.gz")
    with imagelib.http_server(served, imagelib.stable_port("real-driver")) as address:
        extra = {
            "DRIVER_SOURCE": f"http://{address}/{source.name}",
            "DRIVER_SOURCE_SHA256": recipe.source.sha256,
            "DRIVER_FIRMWARE": f"http://{address}/firmware.tar.gz",
            "DRIVER_FIRMWARE_SHA256": firmware_sha,
        }
        return build_driver_image(vm_kernel.release, LTS, imagelib.checkout_tag("igd-kmm-real"), extra)


@pytest.fixture(scope="session")
def real_image_without_host_link(real_driver_image: DriverImage) -> DriverImage:
    """The real image as Dockerfile.builder made it before the host link: depmod over the driver's own modules."""
    buildah = need_tool("buildah")
    tag = imagelib.checkout_tag("igd-kmm-real-nolink")
    container = imagelib.run([buildah, *imagelib.STORAGE, "from", "--pull-never", real_driver_image.tag]).stdout.strip()
    try:
        kernel = real_driver_image.kernel
        script = f"set -e; rm /opt/lib/modules/{kernel}/host; depmod -b /opt {kernel}"
        imagelib.run([buildah, *imagelib.STORAGE, "run", "--isolation", "chroot", container, "--", "sh", "-c", script])
        imagelib.run([buildah, *imagelib.STORAGE, "commit", "-q", container, tag])
    finally:
        imagelib.run([buildah, *imagelib.STORAGE, "rm", container], check=False)
    return DriverImage(tag=tag, recipe=real_driver_image.recipe, kernel=real_driver_image.kernel, build_seconds=0.0)


@pytest.fixture(scope="session")
def spec_for(tmp_path_factory: pytest.TempPathFactory) -> Callable[[Recipe], WorkerSpec]:
    """The worker spec of the chart in kmm mode, for a recipe's values."""

    def make(recipe: Recipe) -> WorkerSpec:
        return worker_spec(rendered(tmp_path_factory.mktemp("chart"), chart_values_for(recipe)))

    return make


@pytest.fixture(scope="session")
def api_certs(tmp_path_factory: pytest.TempPathFactory) -> imagelib.LocalCa:
    """A CA and server certificate for the guest's stand-in API server (the agent's node label)."""
    return imagelib.make_local_ca(need_tool("openssl"), tmp_path_factory.mktemp("api-ca"))


@pytest.fixture
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    folder = tmp_path_factory.mktemp("kmm")
    yield folder
    shutil.rmtree(folder, ignore_errors=True)
