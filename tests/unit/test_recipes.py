"""Recipe loading: every shipped recipe is well formed; broken files give precise errors."""

from __future__ import annotations

import csv
import re
from pathlib import Path

import pytest

from agent.errors import RecipeError, UsageError
from agent.recipes.loader import RELEASES_DIR, load_recipe, load_recipes

SHIPPED = sorted(RELEASES_DIR.glob("*.toml"))
GOOD = (RELEASES_DIR / "i915-2350.145.toml").read_text()


def test_the_three_required_releases_are_shipped() -> None:
    tags = {r.driver_tag: r.firmware_tag for r in load_recipes().recipes}
    assert tags == {
        "I915_25WW14.3_803.145_23.10.90_231129.99": "25WW14.3_803.145",
        "I915_25WW12.2_1099.12_25.1.15_250113.14": "25WW18.2_1099.17",
        "I915_24WW24.5_803.63_23.10.49_231129.51": "24WW20.5_881.12",
    }


@pytest.mark.parametrize("path", SHIPPED, ids=[p.stem for p in SHIPPED])
def test_shipped_recipe_is_well_formed(path: Path) -> None:
    recipe = load_recipe(path)
    assert recipe.source.url.startswith("https://") and recipe.firmware.url.startswith("https://")
    assert re.fullmatch(r"[0-9a-f]{64}", recipe.source.sha256)
    assert re.fullmatch(r"[0-9a-f]{64}", recipe.firmware.sha256)
    platforms = {p for f in recipe.firmware_files for p in f.platforms}
    assert platforms == {"DG2", "PVC"}, "firmware for both Flex (DG2/ATS-M) and Max (PVC)"
    for fw in recipe.firmware_files:
        assert re.fullmatch(r"i915/(dg2|pvc)_[\w.]+\.bin", fw.name), fw.name
        assert fw.bytes > 0
    guc = [f.name for f in recipe.firmware_files if "_guc_" in f.name]
    assert len(guc) == 2, "one GuC per platform, never optional on these cards"
    assert recipe.main_module == "i915" and recipe.load_order[0] == "i915"
    assert set(recipe.replaces) >= {"i915", "intel_vsec"}
    assert {"56c0", "56c1", "0bd5"} <= recipe.device_ids and "4905" not in recipe.device_ids
    assert any(k.os == "ubuntu" and k.variant == "server" for k in recipe.kernels)


def test_pci_table_matches_what_recipes_name() -> None:
    table = Path(__file__).resolve().parents[2] / "agent/data/pci_ids.csv"
    with table.open() as f:
        ids = {row["device_id"] for row in csv.DictReader(f)}
    for recipe in load_recipes().recipes:
        assert recipe.device_ids <= ids


def write(tmp_path: Path, text: str, name: str = "r.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("old", "new", "key", "problem"),
    [
        ('name = "i915-2350.145"\n', "", "name", "missing"),
        ('stream = "lts"\n', 'stream = "lts"\ncolour = "blue"\n', "colour", "unknown key"),
        ('released = "2025-04-03"', "released = 2025", "released", "expected a string, got an integer"),
        ('sha256 = "c92c2ef1', 'sha256 = "C92C2EF1', "source.sha256", "not a sha256"),
        ("bytes = 22488", 'bytes = "22488"', "firmware.files[0].bytes", "expected an integer"),
        ('stream = "lts"', 'stream = "beta"', "stream", "must be one of lts, rolling, test"),
        (
            'url = "https://github.com/intel-gpu/intel-gpu-i915',
            'url = "http://github.com/intel-gpu/intel-gpu-i915',
            "source.url",
            "plain http is not allowed",
        ),
        ('main = "i915"', 'main = "xe"', "modules.main", "'xe' is not in modules.files"),
        ("optional = false", 'optional = "no"', "modules.files[0].optional", "expected true/false"),
        ("schema = 1", "schema = 7", "schema", "unsupported schema 7"),
    ],
)
def test_broken_recipe_names_file_key_and_problem(tmp_path: Path, old: str, new: str, key: str, problem: str) -> None:
    assert old in GOOD
    path = write(tmp_path, GOOD.replace(old, new, 1))
    with pytest.raises(RecipeError) as caught:
        load_recipe(path)
    error = caught.value
    assert (error.path, error.key) == (str(path), key)
    assert problem in error.problem
    assert error.exit_code == 2
    assert str(error).startswith(f"recipe {path}: {key}: ")


def test_toml_syntax_error(tmp_path: Path) -> None:
    with pytest.raises(RecipeError, match=r"\(syntax\)"):
        load_recipe(write(tmp_path, "name = \n"))


def test_one_broken_recipe_does_not_hide_the_others(tmp_path: Path) -> None:
    write(tmp_path, GOOD, "good.toml")
    write(
        tmp_path,
        GOOD.replace('name = "i915-2350.145"', 'name = "other"').replace("schema = 1", "schema = 2"),
        "broken.toml",
    )
    found = load_recipes([tmp_path])
    assert [r.name for r in found.recipes] == ["i915-2350.145"]
    assert len(found.errors) == 1 and "broken.toml" in found.errors[0].path
    with pytest.raises(RecipeError):
        found.by_name("broken")
    with pytest.raises(UsageError, match=r"no recipe named 'nope' .known: i915-2350\.145"):
        found.by_name("nope")


def test_local_folder_sources_may_omit_sha256(tmp_path: Path) -> None:
    recipe = load_recipe(RELEASES_DIR / "i915-2350.145.toml")
    pinned = f'url = "{recipe.source.url}"\nsha256 = "{recipe.source.sha256}"'
    assert pinned in GOOD
    text = GOOD.replace(pinned, 'url = "../src"\nsha256 = ""')
    recipe = load_recipe(write(tmp_path, text))
    assert recipe.source.sha256 == "" and recipe.resolve(recipe.source.url) == str((tmp_path / "../src").resolve())
    with pytest.raises(RecipeError, match=r"source\.sha256: not a sha256"):
        load_recipe(
            write(tmp_path, text.replace('url = "../src"', 'url = "https://example.invalid/x.tgz"'), "remote.toml")
        )


# --- what issue 10 added: fixes, the firmware mapping, not-needed firmware, the release line ----------
REFERENCE_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "reference" / "data"


def test_committed_recipes_are_the_generators_output(tmp_path: Path) -> None:
    """build/releases/*.toml and agent/data/pci_ids.csv are exactly what scripts/gen-data.py writes."""
    import subprocess
    import sys

    repo = Path(__file__).resolve().parents[2]
    if not REFERENCE_DATA.is_dir():
        pytest.fail(f"the shared reference data is not at {REFERENCE_DATA}: the generator's input")
    done = subprocess.run(
        [sys.executable, str(repo / "scripts/gen-data.py"), str(REFERENCE_DATA), "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    generated = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*") if p.is_file())
    assert [str(p) for p in generated] == [
        "agent/data/pci_ids.csv",
        "build/releases/i915-1099.12.toml",
        "build/releases/i915-2350.145.toml",
        "build/releases/i915-2350.63.toml",
    ]
    for relative in generated:
        assert (tmp_path / relative).read_text() == (repo / relative).read_text(), f"{relative}: run gen-data.py"


@pytest.mark.parametrize("path", SHIPPED, ids=[p.stem for p in SHIPPED])
def test_shipped_recipe_maps_firmware_to_the_flat_repository_layout(path: Path) -> None:
    recipe = load_recipe(path)
    assert recipe.firmware.files_url == (
        "https://raw.githubusercontent.com/intel-gpu/intel-gpu-firmware/{tag}/firmware/{file}"
    )
    for fw in recipe.firmware_files:
        assert fw.file and fw.name == f"i915/{fw.file}", fw
    assert [u.name for u in recipe.firmware_not_needed] == ["i915/default_iaf.pscbin"]
    assert recipe.source.release is not None and recipe.source.release.file == "versions"
    dii, psb = recipe.driver_tag.split("_")[3:]
    assert recipe.source.release.line == f'BACKPORTS_RELEASE_TAG="I915_{dii}_PSB_{psb}"'


def test_shipped_compat_fixes_are_pinned_and_parse() -> None:
    import hashlib

    from agent.build.fixes import patch_file, read_patch

    wanted = {
        "i915-2350.145": ["pci-resize-resource-exclude-bars"],
        "i915-1099.12": ["pci-resize-resource-exclude-bars", "copy-from-user-inatomic-nocache", "page-table-sync-mask"],
        "i915-2350.63": [],
    }
    for recipe in load_recipes().recipes:
        assert [f.name for f in recipe.compat_fixes] == wanted[recipe.name]
        for fix in recipe.compat_fixes:
            path = patch_file(recipe, fix)
            assert path.parent == RELEASES_DIR.parent / "fixes" and path.name == f"{fix.name}.patch"
            assert hashlib.sha256(path.read_bytes()).hexdigest() == fix.sha256
            assert read_patch(recipe, fix)
            assert fix.why and fix.probe.describe()


@pytest.mark.parametrize(
    ("old", "new", "key", "problem"),
    [
        (
            'files_url = "https://raw',
            'files_url = "http://raw',
            "firmware.files_url",
            "must be an https:// URL",
        ),
        ("/firmware/{file}", "/firmware/{name}", "firmware.files_url", "must contain {file}"),
        ('file = "dg2_dmc_ver2_07.bin"', 'file = "../dg2_dmc_ver2_07.bin"', "firmware.files[0].file", "relative path"),
        ('kind = "parameter"', 'kind = "version"', "compat_fixes[0].probe.kind", "must be one of parameter, absent"),
        ('header = "include/linux/pci.h"', 'header = "include/linux/pci.c"', "compat_fixes[0].probe.header", ".h"),
        (
            'function = "pci_resize_resource"',
            'function = "pci resize"',
            "compat_fixes[0].probe.function",
            "C identifier",
        ),
        ('patch = "../fixes/', 'patch = "/etc/fixes/', "compat_fixes[0].patch", "relative to the recipe's folder"),
        (
            'name = "pci-resize-resource-exclude-bars"\n',
            'name = "pci-resize-resource-exclude-bars"\ncolour = "red"\n',
            "compat_fixes[0].colour",
            "unknown key",
        ),
        (
            'name = "i915/default_iaf.pscbin"',
            'name = "i915/dg2_dmc_ver2_07.bin"',
            "firmware.not_needed[0].name",
            "also in firmware.files",
        ),
        ("line = 'BACKPORTS", "lines = 'BACKPORTS", "source.release.line", "missing"),
    ],
)
def test_broken_new_fields_name_file_key_and_problem(
    tmp_path: Path, old: str, new: str, key: str, problem: str
) -> None:
    assert old in GOOD, old
    path = write(tmp_path, GOOD.replace(old, new, 1))
    with pytest.raises(RecipeError) as caught:
        load_recipe(path)
    assert caught.value.key == key
    assert problem in caught.value.problem


def test_recipes_without_the_new_fields_still_load() -> None:
    """The test recipes have no fixes, no per-file URL and no release line: nothing of it is required."""
    recipe = load_recipe(Path(__file__).resolve().parents[1] / "recipes" / "testgpu.toml")
    assert recipe.compat_fixes == () and recipe.firmware.files_url == "" and recipe.source.release is None
    assert all(f.source_file == f.name for f in recipe.firmware_files)
