"""The test driver builds for the installed kernel's headers, and its break-on-purpose knobs break it."""

from __future__ import annotations

import hashlib
import tomllib
from collections.abc import Callable
from pathlib import Path

import pytest

from vm.kernel import Kernel
from vm.testdriver import FIRMWARE, FIRMWARE_NAMES, MODULES, RECIPES, build, modinfo

pytestmark = pytest.mark.vm


def test_modules_are_built_for_the_installed_kernel(vm_kernel: Kernel, testgpu_modules: dict[str, Path]) -> None:
    info = {name: modinfo(path) for name, path in testgpu_modules.items()}
    for name in MODULES:
        assert info[name]["vermagic"][0].split()[0] == vm_kernel.release
        assert info[name]["name"] == [name]
        assert info[name]["srcversion"][0]
    main = info["testgpu"]
    assert main["depends"][0].split(",") == ["testgpu_compat", "testgpu_vsec"]
    assert sorted(main["firmware"]) == sorted(FIRMWARE_NAMES)
    assert main["version"] == [f"1.0.0 backported to {vm_kernel.release} using backports testgpu-1.0"]
    assert [p.split(":")[0] for p in main["parm"]] == ["enable_guc", "fw_status", "fw_size", "fw_loaded"]
    assert info["testgpu_compat"]["depends"] == [""]


@pytest.mark.slow
def test_broken_source_fails_with_a_compiler_error(
    vm_kernel: Kernel, tool: Callable[[str], str], tmp_path: Path
) -> None:
    done = build(vm_kernel.headers, tmp_path, ["TESTGPU_BROKEN_SOURCE=1"], make=tool("make"))
    assert done.returncode != 0
    assert "testgpu.c:" in done.stderr
    assert "error: too few arguments to function 'testgpu_resize_bar'" in done.stderr


@pytest.mark.slow
def test_unresolved_symbol_warns_like_the_backport_or_fails_modpost(
    vm_kernel: Kernel, tool: Callable[[str], str], tmp_path: Path
) -> None:
    lenient = build(
        vm_kernel.headers, tmp_path, ["TESTGPU_BROKEN_SYMBOL=1"], env={"KBUILD_MODPOST_WARN": "1"}, make=tool("make")
    )
    assert lenient.returncode == 0, lenient.stderr
    assert 'WARNING: modpost: "testgpu_missing_symbol"' in lenient.stderr
    assert (tmp_path / "testgpu.ko").exists()
    # Again in the same folder without KBUILD_MODPOST_WARN: nothing recompiles, modpost now fails.
    strict = build(vm_kernel.headers, tmp_path, ["TESTGPU_BROKEN_SYMBOL=1"], make=tool("make"))
    assert strict.returncode != 0
    assert 'ERROR: modpost: "testgpu_missing_symbol"' in strict.stderr
    assert " CC " not in strict.stdout


def test_recipe_describes_the_driver_and_its_firmware(vm_kernel: Kernel) -> None:
    recipe = tomllib.loads((RECIPES / "testgpu.toml").read_text())
    assert recipe["name"] == "testgpu-1.0" and recipe["stream"] == "test"
    assert (RECIPES / recipe["source"]["url"]).resolve() == (RECIPES.parent / "driver").resolve()
    assert {m["name"] for m in recipe["modules"]["files"]} == set(MODULES)
    files = {f["name"]: f for f in recipe["firmware"]["files"]}
    assert sorted(files) == sorted(FIRMWARE_NAMES)
    for name, entry in files.items():
        blob = (FIRMWARE / name).read_bytes()
        assert entry["sha256"] == hashlib.sha256(blob).hexdigest(), name
        assert entry["bytes"] == len(blob), name
    # The kernel CI installs is of a series the recipe names, so the verdict is never "unsupported"; a newer
    # Debian point release than the one listed is "at-risk", which still loads (CI must not break on it).
    series = [".".join(k["kernel"].split(".")[:2]) for k in recipe["support"]["kernels"] if k["os"] == "debian"]
    installed = ".".join(vm_kernel.upstream_version().split(".")[:2])
    assert installed in series, f"tests/recipes/testgpu*.toml: add a {installed} kernel (installed {vm_kernel.release})"


def test_broken_recipes_differ_only_in_their_knob() -> None:
    base = tomllib.loads((RECIPES / "testgpu.toml").read_text())
    for variant, knob in (("broken-source", "TESTGPU_BROKEN_SOURCE=1"), ("broken-symbol", "TESTGPU_BROKEN_SYMBOL=1")):
        recipe = tomllib.loads((RECIPES / f"testgpu-{variant}.toml").read_text())
        assert recipe["name"] == f"testgpu-{variant}"
        assert knob in recipe["build"]["steps"][0]
        assert recipe["modules"] == base["modules"] and recipe["firmware"] == base["firmware"]
