"""The published releases built against Debian's real kernels: the LTS on 6.1 with its fix, the rolling on 6.12
with its three; without fixes each stops at its first compiler error. Each tree is built once per run
(tests/realdriver.py) and shared with the VM scenarios and image tests."""

from __future__ import annotations

import hashlib
import subprocess
import threading
import time
from pathlib import Path

import pytest
from realdriver import CACHE, find_kernel_by_series, real_inputs, real_tree
from tooling import need_tool

from agent.cli import main
from agent.host.paths import module_key
from agent.recipes.loader import RELEASES_DIR, load_recipe
from agent.tree import load_tree

pytestmark = pytest.mark.real_commands

LTS_MODULES = {
    "i915-compat",
    "i915",
    "i915_spi",
    "iaf",
    "intel_vsec",
    "pmt_class",
    "pmt_telemetry",
    "pmt_crashlog",
    "mei",
    "mei-me",
    "mei-gsc",
    "mei-txe",
    "mei_pxp",
    "mei_hdcp",
    "mei_iaf",
    "mei_wdt",
}
CASES = {
    "i915-2350.145": ("6.1", LTS_MODULES, ["pci-resize-resource-exclude-bars"]),
    "i915-1099.12": (
        "6.12",
        LTS_MODULES | {"i915-vfio-pci"},
        ["pci-resize-resource-exclude-bars", "copy-from-user-inatomic-nocache", "page-table-sync-mask"],
    ),
}


@pytest.mark.parametrize("recipe_name", list(CASES))
def test_the_release_builds_on_its_kernel_with_its_fixes(recipe_name: str) -> None:
    series, modules, fixes = CASES[recipe_name]
    kernel = find_kernel_by_series(series)
    tree = load_tree(real_tree(recipe_name, kernel))
    manifest = tree.manifest
    assert (manifest.recipe, manifest.kernel) == (recipe_name, kernel)
    # The manifest spells modules as the kernel does (modinfo's name: mei_gsc for mei-gsc.ko).
    assert {module_key(m.name) for m in manifest.modules} == {module_key(n) for n in modules}
    assert len(manifest.modules) == len(modules)
    assert [f.name for f in manifest.compat_fixes] == fixes
    assert manifest.inputs["compat_fixes"] == ",".join(f"{f.name}:{f.sha256}" for f in manifest.compat_fixes)
    for module in manifest.modules:
        assert module.vermagic.split()[0] == kernel, module.name
        assert (tree.root / module.path).is_file()
    main_module = manifest.module("i915")
    assert main_module is not None and main_module.srcversion
    assert set(main_module.depends) >= {"i915-compat", "intel_vsec", "drm"}
    # The firmware: every file the recipe pins, byte-identical with the shared copy of the repository.
    recipe = load_recipe(RELEASES_DIR / f"{recipe_name}.toml")
    _, folder = real_inputs(recipe_name)
    assert sorted(f.name for f in manifest.firmware) == sorted(f.name for f in recipe.firmware_files)
    for firmware in manifest.firmware:
        assert firmware.path == f"firmware/{firmware.name}" and firmware.name.startswith("i915/")
        placed = (tree.root / firmware.path).read_bytes()
        assert placed == (folder / "firmware" / firmware.name.removeprefix("i915/")).read_bytes()
        assert hashlib.sha256(placed).hexdigest() == firmware.sha256
    assert not (tree.root / "firmware/i915/default_iaf.pscbin").exists()


def test_the_lts_tree_says_what_it_is(tmp_path: Path) -> None:
    modinfo = need_tool("modinfo")
    tree = real_tree("i915-2350.145", find_kernel_by_series("6.1"))
    manifest = load_tree(tree).manifest
    i915 = manifest.module("i915")
    assert i915 is not None
    version = subprocess.run(
        [modinfo, "-F", "version", str(tree / i915.path)], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert version == i915.version
    assert version.startswith("backported to 6.1") and version.endswith("using backports I915_23.10.90_PSB_231129.99")
    dep = (tree / "opt/lib/modules" / manifest.kernel / "modules.dep").read_text()
    line = next(e for e in dep.splitlines() if e.startswith("updates/drivers/gpu/drm/i915/i915.ko:"))
    assert "updates/compat/i915-compat.ko" in line


@pytest.mark.parametrize(
    ("recipe_name", "first_error"),
    [
        ("i915-2350.145", "i915_driver.c:576: error: too few arguments to function 'pci_resize_resource'"),
        ("i915-1099.12", "i915_driver.c:566: error: too few arguments to function 'pci_resize_resource'"),
    ],
)
def test_without_fixes_the_release_stops_at_its_first_compiler_error(
    recipe_name: str, first_error: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    series = CASES[recipe_name][0]
    kernel = find_kernel_by_series(series)
    source, firmware = real_inputs(recipe_name)
    argv = ["build", "--recipe", recipe_name, "--kernel", kernel, "--out", str(tmp_path / "out")]
    argv += ["--source", str(source), "--firmware", str(firmware), "--no-compat-fixes"]
    # The shared cache keeps the unpacked source; the build folder is this test's own.
    argv += ["--cache-dir", str(CACHE / "cache"), "--work-dir", str(tmp_path / "work"), "--jobs", "2"]
    assert main(argv) == 5
    err = capsys.readouterr().err
    assert first_error in err
    assert "turned off by --no-compat-fixes" in err and "pci-resize-resource-exclude-bars" in err
    assert f"support verdict for {kernel}" in err
    assert not (tmp_path / "out").exists()


def test_a_second_caller_waits_for_the_lock_and_gets_the_same_tree() -> None:
    kernel = find_kernel_by_series("6.1")
    first = real_tree("i915-2350.145", kernel)
    digest = load_tree(first).manifest.inputs_digest
    results: list[Path] = []
    lock_path = CACHE / "i915-2350.145" / kernel / ".lock"
    import fcntl

    with lock_path.open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # as if another pytest process were building
        waiter = threading.Thread(target=lambda: results.append(real_tree("i915-2350.145", kernel)))
        waiter.start()
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline and not results:
            waiter.join(0.05)
        assert results == [], "real_tree did not wait for the lock"
        fcntl.flock(lock, fcntl.LOCK_UN)
    waiter.join(120)
    assert results == [first]
    assert load_tree(first).manifest.inputs_digest == digest
