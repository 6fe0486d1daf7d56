"""Hostile recipe files (issue 11 F4, F11 non-UTF-8, F13): refused with the file and the key, nothing touched."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from build.buildlib import DRIVER, RECIPES, headers_kernel

from agent.errors import RecipeError
from agent.recipes.loader import RELEASES_DIR, load_recipe, load_recipes

GOOD = (RELEASES_DIR / "i915-2350.145.toml").read_text()
TEST_RECIPE = (RECIPES / "testgpu.toml").read_text()


def write(folder: Path, text: str, name: str = "r.toml") -> Path:
    path = folder / name
    path.write_text(text)
    return path


def _replace(text: str, old: str, new: str) -> str:
    assert old in text, old
    return text.replace(old, new, 1)


# --- F4: every field that becomes a path follows the name rules ---------------------------------------------
TAG = 'driver_tag = "I915_25WW14.3_803.145_23.10.90_231129.99"'
FW_TAG = 'tag = "25WW14.3_803.145"'
FW_NAME = 'name = "i915/dg2_dmc_ver2_07.bin"'
MODULE_PATH = 'path = "compat/i915-compat.ko"'
TOP = 'top_folder = "intel-gpu-i915-backports-I915_25WW14.3_803.145_23.10.90_231129.99"'
SUBDIR = 'subdir = "firmware"'
REPLACES = 'replaces = ["i915"'


@pytest.mark.parametrize(
    ("old", "new", "key"),
    [
        (TAG, 'driver_tag = "../../victim"', "driver_tag"),
        (TAG, 'driver_tag = "/tmp/victim"', "driver_tag"),
        (TAG, 'driver_tag = ".."', "driver_tag"),
        (TAG, 'driver_tag = "a/b"', "driver_tag"),
        (TAG, 'driver_tag = ""', "driver_tag"),
        (TAG, 'driver_tag = "tag\\nwith-newline"', "driver_tag"),
        (FW_TAG, 'tag = "../x"', "firmware.tag"),
        (FW_NAME, 'name = "/etc/evil.conf"', "firmware.files[0].name"),
        (FW_NAME, 'name = "i915/../../etc/evil.conf"', "firmware.files[0].name"),
        (FW_NAME, 'name = "i915//x.bin"', "firmware.files[0].name"),
        (FW_NAME, 'name = "./i915/x.bin"', "firmware.files[0].name"),
        (FW_NAME, 'name = "i915/"', "firmware.files[0].name"),
        (MODULE_PATH, 'path = "../../etc/i915-compat.ko"', "modules.files[0].path"),
        (MODULE_PATH, 'path = "compat/./i915-compat.ko"', "modules.files[0].path"),
        (MODULE_PATH, 'path = "/lib/modules/i915-compat.ko"', "modules.files[0].path"),
        (TOP, 'top_folder = "../../outside"', "source.top_folder"),
        (TOP, 'top_folder = "/etc"', "source.top_folder"),
        (SUBDIR, 'subdir = "../.."', "firmware.subdir"),
        (REPLACES, 'replaces = ["../../../etc"', "modules.replaces[0]"),
    ],
)
def test_a_path_field_that_could_leave_its_folder_is_refused(tmp_path: Path, old: str, new: str, key: str) -> None:
    path = write(tmp_path, _replace(GOOD, old, new))
    with pytest.raises(RecipeError) as caught:
        load_recipe(path)
    assert (caught.value.path, caught.value.key) == (str(path), key)
    assert caught.value.exit_code == 2


def test_names_the_real_releases_use_are_accepted() -> None:
    for recipe in load_recipes().recipes:
        assert recipe.driver_tag and recipe.firmware_tag
    assert not load_recipes().errors


@pytest.mark.real_commands
@pytest.mark.parametrize("tag", ["../../victim", "ABSOLUTE"])
def test_the_build_with_an_escaping_driver_tag_touches_nothing_outside_the_work_dir(tmp_path: Path, tag: str) -> None:
    """The probe's reproduction: the build deleted files beside --work-dir and replaced a user's `source`."""
    kernel = headers_kernel()
    victim = tmp_path / "victim"
    (victim / kernel / "build").mkdir(parents=True)
    (victim / kernel / "build" / "keep.c").write_text("user data\n")
    (victim / "source").write_text("a user's file named source\n")
    if tag == "ABSOLUTE":
        tag = str(victim)
    work = tmp_path / "cache" / "build"
    text = _replace(TEST_RECIPE, 'driver_tag = "testgpu-1.0"', f'driver_tag = "{tag}"')
    text = _replace(text, 'url = "../driver"', f'url = "{DRIVER}"')
    text = _replace(text, 'url = "../driver/firmware"', f'url = "{DRIVER / "firmware"}"')
    recipe_path = write(tmp_path, text, "evil.toml")
    before = sorted((p.relative_to(tmp_path), p.is_symlink()) for p in tmp_path.rglob("*"))
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "agent",
            "--log-format",
            "json",
            "build",
            "--recipe",
            str(recipe_path),
            "--kernel",
            kernel,
            "--out",
            str(tmp_path / "out"),
            "--cache-dir",
            str(tmp_path / "cache"),
            "--work-dir",
            str(work),
            "--jobs",
            "2",
        ],
        check=False,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
    )
    assert done.returncode == 2, done.stderr
    assert f"recipe {recipe_path}: driver_tag:" in done.stderr
    assert (victim / "source").read_text() == "a user's file named source\n"
    assert not (victim / "source").is_symlink()
    assert (victim / kernel / "build" / "keep.c").read_text() == "user data\n"
    assert sorted((p.relative_to(tmp_path), p.is_symlink()) for p in tmp_path.rglob("*")) == before


# --- F11: a recipe that is not UTF-8 ------------------------------------------------------------------------
def test_a_non_utf8_recipe_is_a_recipe_error_naming_the_byte(tmp_path: Path) -> None:
    path = tmp_path / "latin1.toml"
    path.write_bytes(GOOD.replace("the recommended release", "la r\xe9f\xe9rence").encode("latin-1"))
    with pytest.raises(RecipeError) as caught:
        load_recipe(path)
    assert caught.value.key == "(file)"
    assert "not UTF-8" in caught.value.problem and "0xe9" in caught.value.problem
    assert caught.value.exit_code == 2


def test_a_non_utf8_recipe_does_not_hide_the_others(tmp_path: Path) -> None:
    write(tmp_path, GOOD, "good.toml")
    (tmp_path / "bad.toml").write_bytes(b"schema = 1\nname = \"\xff\xfe\"\n")
    found = load_recipes([tmp_path])
    assert [r.name for r in found.recipes] == ["i915-2350.145"]
    assert [Path(e.path).name for e in found.errors] == ["bad.toml"]


def test_recipes_and_check_list_the_good_recipes_beside_a_non_utf8_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from agent.cli import main

    write(tmp_path, GOOD, "good.toml")
    (tmp_path / "bad.toml").write_bytes(b"\xff\xfe\x00")
    code = main(["--recipes-dir", str(tmp_path), "recipes"])
    captured = capsys.readouterr()
    assert code == 2
    assert "i915-2350.145" in captured.out
    assert "bad.toml" in captured.err and "not UTF-8" in captured.err
    assert "internal error" not in captured.err


def test_a_recipe_nested_too_deep_for_the_parser_is_a_recipe_error(tmp_path: Path) -> None:
    path = tmp_path / "deep.toml"
    path.write_text("x = " + "[" * 5000 + "]" * 5000 + "\n")
    with pytest.raises(RecipeError) as caught:
        load_recipe(path)
    assert caught.value.key == "(syntax)"


# --- F13: unknown keys in [firmware] (and every other table) ------------------------------------------------
@pytest.mark.parametrize(
    ("old", "new", "key"),
    [
        (SUBDIR, SUBDIR + '\ncolour = "blue"', "firmware.colour"),
        ('[source]\n', '[source]\nsubdir = "x"\n', "source.subdir"),
        ("bytes = 22488\n", 'bytes = 22488\nnote = "x"\n', "firmware.files[0].note"),
        ("[build]\n", '[build]\ncolour = "blue"\n', "build.colour"),
    ],
)
def test_an_unknown_key_is_refused_in_every_table(tmp_path: Path, old: str, new: str, key: str) -> None:
    path = write(tmp_path, _replace(GOOD, old, new))
    with pytest.raises(RecipeError) as caught:
        load_recipe(path)
    assert (caught.value.key, caught.value.problem) == (key, "unknown key")
