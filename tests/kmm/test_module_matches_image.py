"""The KMM Module the chart renders names what the image Dockerfile.builder makes really holds (issue 15 item 3).

For the test driver (its recipe's values) and the real LTS release (the chart's defaults): `moduleName`,
`modulesLoadingOrder` and `firmwarePath` are checked against the image's tree (its manifest, its
modules.dep and the files) and against the recipe.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from images import imagelib
from tooling import need_tool

from agent.host.paths import module_key
from agent.tree import load_tree

from .conftest import DriverImage
from .kmmlib import WorkerSpec

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module", params=["test_driver_image", "real_driver_image"])
def image(request: pytest.FixtureRequest) -> DriverImage:
    built: DriverImage = request.getfixturevalue(request.param)
    return built


@pytest.fixture(scope="module")
def image_root(image: DriverImage) -> Iterator[Path]:
    with imagelib.mounted(need_tool("buildah"), image.tag) as root:
        yield root


@pytest.fixture(scope="module")
def spec(spec_for: Callable[[Any], WorkerSpec], image: DriverImage) -> WorkerSpec:
    return spec_for(image.recipe)


def dep_entries(root: Path, dir_name: str, kernel: str) -> dict[str, str]:
    """modules.dep of the image: module name → its path relative to the kernel folder."""
    dep = root / dir_name.lstrip("/") / "lib/modules" / kernel / "modules.dep"
    entries: dict[str, str] = {}
    for line in dep.read_text().splitlines():
        path = line.split(":", 1)[0]
        name = module_key(path.rsplit("/", 1)[-1].split(".ko", 1)[0])
        if path.startswith("updates/") or name not in entries:  # depmod's priority: updates first
            entries[name] = path
    return entries


def test_module_name_is_the_recipes_main_module_in_the_images_tree(
    spec: WorkerSpec, image: DriverImage, image_root: Path
) -> None:
    manifest = load_tree(image_root).manifest
    assert spec.module_name == image.recipe.main_module
    main = manifest.module(spec.module_name)
    assert main is not None, f"{spec.module_name} is not in the image's manifest"
    entries = dep_entries(image_root, spec.dir_name, image.kernel)
    assert entries[module_key(spec.module_name)] == str(Path(main.path).relative_to(f"opt/lib/modules/{image.kernel}"))


def test_every_module_of_the_loading_order_is_the_drivers_own(
    spec: WorkerSpec, image: DriverImage, image_root: Path
) -> None:
    """modulesLoadingOrder starts with moduleName (KMM's rule) and each entry resolves to the image's updates/."""
    order = spec.modules_loading_order or (spec.module_name,)
    assert order[0] == spec.module_name
    assert tuple(order) == image.recipe.load_order
    entries = dep_entries(image_root, spec.dir_name, image.kernel)
    shipped = {module_key(m.name) for m in load_tree(image_root).manifest.modules}
    for name in order:
        assert module_key(name) in shipped, f"{name} is not a module of the image"
        assert entries[module_key(name)].startswith("updates/"), f"{name} would load Debian's, not the driver's"


def test_firmware_path_holds_exactly_the_firmware_the_recipe_names(
    spec: WorkerSpec, image: DriverImage, image_root: Path
) -> None:
    folder = image_root / spec.firmware_path.lstrip("/")
    files = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())
    manifest = load_tree(image_root).manifest
    assert files == sorted(f.name for f in manifest.firmware)
    assert {f.name for f in image.recipe.firmware_files} <= set(files)
    # What the modules request resolves there (a file no release ships, like iaf's default_iaf.pscbin,
    # is the recipe's known exception).
    requested = {name for m in manifest.modules for name in m.firmware}
    assert {f.name for f in image.recipe.firmware_files} & requested, "the main module requests the firmware"


def test_in_tree_modules_to_remove_are_the_recipes_replaced_modules(spec: WorkerSpec, image: DriverImage) -> None:
    assert spec.in_tree_modules_to_remove == image.recipe.replaces
