"""Compat fixes: header probes against Debian's real 6.1 and 6.12 headers and small fake ones, the patch applier,
fix plans, and a fix that applies or does not in a real build of the test driver."""

from __future__ import annotations

import hashlib
import json
import tarfile
from pathlib import Path

import pytest
from realdriver import find_kernel_by_series, real_inputs

from agent.build.fixes import FixPlan, apply_fixes, header_roots, plan_fixes, read_patch
from agent.build.headers import find_headers
from agent.build.patches import PatchDoesNotApplyError, changed_files, parse_patch, write_files
from agent.build.probes import ProbeError, answer
from agent.cli import main
from agent.errors import IntegrityError, UsageError
from agent.host.paths import HostPaths
from agent.recipes.loader import RELEASES_DIR, load_recipe
from agent.recipes.model import ABSENT, MACRO_CALL, PARAMETER, HeaderProbe
from build.buildlib import RECIPES

LTS = load_recipe(RELEASES_DIR / "i915-2350.145.toml")
ROLLING = load_recipe(RELEASES_DIR / "i915-1099.12.toml")
PCI = HeaderProbe(PARAMETER, ("include/linux/pci.h",), "pci_resize_resource", "exclude_bars")
NOCACHE = HeaderProbe(
    ABSENT, ("include/linux/uaccess.h", "arch/x86/include/asm/uaccess_64.h"), "__copy_from_user_inatomic_nocache"
)
SYNC_MASK = HeaderProbe(MACRO_CALL, ("arch/x86/include/asm/pgtable_64_types.h",), "ARCH_PAGE_TABLE_SYNC_MASK")


def _headers(series: str):  # type: ignore[no-untyped-def]
    return find_headers(HostPaths(Path("/")), find_kernel_by_series(series))


# --- probes against the real headers -------------------------------------------------------------
@pytest.mark.parametrize(
    ("series", "pci", "nocache", "sync_mask"),
    [("6.1", True, False, True), ("6.12", True, True, True)],
)
def test_probes_against_debians_real_header_trees(series: str, pci: bool, nocache: bool, sync_mask: bool) -> None:
    headers = _headers(series)
    # Debian splits the headers: the probes must find include/linux/pci.h in the -common tree.
    assert not (headers.path / "include/linux/pci.h").exists()
    assert [d.name for d in headers.source_dirs] == [headers.path.name.replace("-amd64", "-common")]
    roots = header_roots(headers)
    found = answer(PCI, roots)
    assert found.holds is pci
    assert found.evidence.startswith("include/linux/pci.h:")
    assert "int exclude_bars" in found.evidence
    assert answer(NOCACHE, roots).holds is nocache
    mask = answer(SYNC_MASK, roots)
    assert mask.holds is sync_mask
    assert "pgtable_l5_enabled()" in mask.evidence


def test_fix_plans_of_the_shipped_recipes_on_both_kernels() -> None:
    old, new = _headers("6.1"), _headers("6.12")
    assert plan_fixes(LTS, old).names == ("pci-resize-resource-exclude-bars",)
    assert plan_fixes(LTS, new).names == ("pci-resize-resource-exclude-bars",)
    assert plan_fixes(ROLLING, new).names == (
        "pci-resize-resource-exclude-bars",
        "copy-from-user-inatomic-nocache",
        "page-table-sync-mask",
    )
    assert plan_fixes(ROLLING, old).names == ("pci-resize-resource-exclude-bars", "page-table-sync-mask")
    off = plan_fixes(ROLLING, new, enabled=False)
    assert off.applied == () and len(off.withheld) == 3
    assert off.digest_value() == "off"
    assert plan_fixes(LTS, old).digest_value() == f"pci-resize-resource-exclude-bars:{LTS.compat_fixes[0].sha256}"


def test_the_shipped_fixes_apply_to_the_real_sources(tmp_path: Path) -> None:
    """Each recipe's patches apply to its published source, in the order the recipe lists them."""
    for recipe in (LTS, ROLLING):
        tarball, _ = real_inputs(recipe.name)
        touched = {f.path for fix in recipe.compat_fixes for f in read_patch(recipe, fix)}
        top = recipe.source.top_folder
        with tarfile.open(tarball) as archive:
            archive.extractall(tmp_path, members=[archive.getmember(f"{top}/{p}") for p in touched], filter="data")
        tree = tmp_path / top
        before = {p: (tree / p).read_text() for p in touched}
        plan = FixPlan(decisions=tuple(_needed(fix) for fix in recipe.compat_fixes))
        applied = apply_fixes(plan, recipe, tree)
        assert [a.name for a in applied] == [f.name for f in recipe.compat_fixes]
        for path in touched:
            assert (tree / path).read_text() != before[path], path
    assert (
        "pci_resize_resource(pdev, resno, bar_size, 0);"
        in (tmp_path / LTS.source.top_folder / "drivers/gpu/drm/i915/i915_driver.c").read_text()
    )


def _needed(fix):  # type: ignore[no-untyped-def]
    from agent.build.fixes import FixDecision

    return FixDecision(fix=fix, needed=True, evidence="test")


# --- probes against small fake headers -----------------------------------------------------------
def _tree(tmp_path: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return tmp_path


@pytest.mark.parametrize(
    ("text", "holds"),
    [
        ("int pci_resize_resource(struct pci_dev *dev, int i, int size,\n\t\tint exclude_bars);\n", True),
        ("int __must_check pci_resize_resource(struct pci_dev *dev, int i, int size);\n", False),
        ("/* pci_resize_resource(dev, i, size, exclude_bars) one day */\nint pci_resize_resource(int i);\n", False),
        ("int pci_release_resource(struct pci_dev *dev, int resno);\n", False),
        ("int pci_resize_resource(struct pci_dev *dev, int (*cb)(int exclude_bars), int size);\n", True),
    ],
)
def test_parameter_probe_reads_the_declaration(tmp_path: Path, text: str, holds: bool) -> None:
    roots = [_tree(tmp_path, {"include/linux/pci.h": text})]
    assert answer(PCI, roots).holds is holds


def test_absent_probe_ignores_comments_and_needs_every_header(tmp_path: Path) -> None:
    build, common = tmp_path / "build", tmp_path / "common"
    _tree(common, {"include/linux/uaccess.h": "/* __copy_from_user_inatomic_nocache was here */\nint x;\n"})
    with pytest.raises(ProbeError) as caught:
        answer(NOCACHE, [build, common])
    assert "arch/x86/include/asm/uaccess_64.h" in str(caught.value)
    assert str(build) in str(caught.value) and str(common) in str(caught.value)
    assert caught.value.exit_code == 5
    _tree(build, {"arch/x86/include/asm/uaccess_64.h": "static inline long __copy_from_user_inatomic(void);\n"})
    found = answer(NOCACHE, [build, common])
    assert found.holds
    _tree(build, {"arch/x86/include/asm/uaccess_64.h": "long\n__copy_from_user_inatomic_nocache(void *dst);\n"})
    found = answer(NOCACHE, [build, common])
    assert not found.holds
    assert found.evidence == "arch/x86/include/asm/uaccess_64.h:2: __copy_from_user_inatomic_nocache(void *dst);"


@pytest.mark.parametrize(
    ("text", "holds"),
    [
        (
            "#define ARCH_PAGE_TABLE_SYNC_MASK \\\n"
            "\t(pgtable_l5_enabled() ? PGTBL_PGD_MODIFIED : PGTBL_P4D_MODIFIED)\n",
            True,
        ),
        ("#define ARCH_PAGE_TABLE_SYNC_MASK\t(SHARED_KERNEL_PMD ? 0 : PGTBL_PMD_MODIFIED)\n", False),
        ("#define ARCH_PAGE_TABLE_SYNC_MASK PGTBL_PMD_MODIFIED\n", False),
        ("# define ARCH_PAGE_TABLE_SYNC_MASK_OTHER f()\n", False),
        ("#define ARCH_PAGE_TABLE_SYNC_MASK(x) f(x)\n", False),  # function-like: another macro
        ("/* #define ARCH_PAGE_TABLE_SYNC_MASK f() */\n", False),
        ("int pgdir_shift;\n", False),
    ],
)
def test_macro_call_probe_reads_the_definition(tmp_path: Path, text: str, holds: bool) -> None:
    roots = [_tree(tmp_path, {"arch/x86/include/asm/pgtable_64_types.h": text})]
    assert answer(SYNC_MASK, roots).holds is holds


# --- the patch applier ---------------------------------------------------------------------------
SOURCE = "".join(f"line {n}\n" for n in range(1, 21))
PATCH = """Description text is ignored.

--- a/src/file.c
+++ b/src/file.c
@@ -4,3 +4,3 @@
 line 4
-line 5
+line five
 line 6
@@ -14,3 +14,4 @@
 line 14
 line 15
+line 15.5
 line 16
"""


def _source(tmp_path: Path, text: str = SOURCE) -> Path:
    (tmp_path / "src").mkdir(parents=True, exist_ok=True)
    (tmp_path / "src/file.c").write_text(text)
    return tmp_path


def test_a_patch_applies_with_an_offset_like_patch_does(tmp_path: Path) -> None:
    tree = _source(tmp_path, "header 1\nheader 2\n" + SOURCE)
    patches = parse_patch(PATCH, source="t.patch")
    assert [(p.path, len(p.hunks)) for p in patches] == [("src/file.c", 2)]
    write_files(changed_files(patches, tree, name="t"))
    lines = (tree / "src/file.c").read_text().splitlines()
    assert lines[6] == "line five" and lines[16:19] == ["line 15", "line 15.5", "line 16"]


def test_a_patch_whose_context_does_not_match_fails_naming_fix_file_and_hunk(tmp_path: Path) -> None:
    tree = _source(tmp_path, SOURCE.replace("line 15\n", "line fifteen\n"))
    with pytest.raises(PatchDoesNotApplyError) as caught:
        changed_files(parse_patch(PATCH, source="t.patch"), tree, name="my-fix")
    message = str(caught.value)
    assert caught.value.exit_code == 5
    assert "compat fix my-fix does not apply to src/file.c: hunk #2 (at line 14)" in message
    assert (tree / "src/file.c").read_text() == SOURCE.replace("line 15\n", "line fifteen\n")


def test_a_patch_applied_twice_is_refused(tmp_path: Path) -> None:
    tree = _source(tmp_path)
    patches = parse_patch(PATCH, source="t.patch")
    write_files(changed_files(patches, tree, name="t"))
    with pytest.raises(PatchDoesNotApplyError, match="already there"):
        changed_files(patches, tree, name="t")


def test_a_patch_for_a_file_the_source_lacks(tmp_path: Path) -> None:
    with pytest.raises(PatchDoesNotApplyError, match=r"src/file\.c is not in the source"):
        changed_files(parse_patch(PATCH, source="t.patch"), tmp_path, name="t")


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("just words\n", "holds no unified diff"),
        ("--- a/x.c\n+++ b/x.c\n", "no hunk for x.c"),
        ("--- a/x.c\n+++ /dev/null\n@@ -1 +0,0 @@\n-x\n", "only edits"),
        ("--- a/x.c\n+++ b/../x.c\n@@ -1 +1 @@\n-x\n+y\n", "inside the source tree"),
        ("--- a/x.c\n+++ b/x.c\n@@ -1,2 +1,2 @@\n-x\n+y\n", "its header says 2/2"),
    ],
)
def test_malformed_patches_are_usage_errors(text: str, problem: str) -> None:
    with pytest.raises(UsageError, match=problem):
        parse_patch(text, source="t.patch")


def test_no_newline_at_end_of_file_is_kept(tmp_path: Path) -> None:
    (tmp_path / "x.c").write_text("a\nb")
    patch = (
        "--- a/x.c\n+++ b/x.c\n@@ -1,2 +1,2 @@\n a\n-b\n\\ No newline at end of file\n"
        "+c\n\\ No newline at end of file\n"
    )
    write_files(changed_files(parse_patch(patch, source="t.patch"), tmp_path, name="t"))
    assert (tmp_path / "x.c").read_text() == "a\nc"


# --- fixes in a build of the test driver ---------------------------------------------------------
RESIZE_FIX = """The test driver's own "API change": testgpu_resize_bar takes two arguments.

--- a/testgpu.c
+++ b/testgpu.c
@@ -121,7 +121,7 @@
 \t\tTESTGPU_VERSION_STRING, testgpu_compat_backport_tag());
 #ifdef TESTGPU_BROKEN_SOURCE
 \t/* Mirrors the real breakage seen on newer stable kernels: a changed signature. */
-\tret = testgpu_resize_bar(0);
+\tret = testgpu_resize_bar(0, 0);
 #endif
 #ifdef TESTGPU_BROKEN_SYMBOL
 \tret = testgpu_missing_symbol();
""".replace("\\t", "\t")


PROBE = (
    '{ kind = "parameter", header = "include/linux/pci.h", function = "pci_resize_resource", '
    'parameter = "exclude_bars" }'
)


def _recipe_with_fix(tmp_path: Path, patch: str, *, pin: str | None = None) -> Path:
    """testgpu-broken-source plus one compat fix whose probe holds on Debian's 6.1 and 6.12 headers."""
    (tmp_path / "fix.patch").write_text(patch)
    sha = pin or hashlib.sha256(patch.encode()).hexdigest()
    driver = RECIPES.parent / "driver"
    text = (RECIPES / "testgpu-broken-source.toml").read_text().replace('"../driver', f'"{driver}')
    text += f"""
[[compat_fixes]]
name = "testgpu-resize-bar"
patch = "fix.patch"
sha256 = "{sha}"
why = "the test driver's resize call lost an argument"
probe = {PROBE}
"""
    path = tmp_path / "testgpu-with-fix.toml"
    path.write_text(text)
    return path


def _build(tmp_path: Path, recipe: Path, kernel: str, *extra: str) -> int:
    return main(
        [
            "build",
            "--recipe",
            str(recipe),
            "--kernel",
            kernel,
            "--out",
            str(tmp_path / "out"),
            "--cache-dir",
            str(tmp_path / "cache"),
            "--jobs",
            "2",
            *extra,
        ]
    )


@pytest.mark.real_commands
def test_a_needed_fix_is_applied_recorded_and_named(
    tmp_path: Path, kernel: str, capsys: pytest.CaptureFixture[str]
) -> None:
    recipe = _recipe_with_fix(tmp_path, RESIZE_FIX)
    assert _build(tmp_path, recipe, kernel) == 0
    out = capsys.readouterr().out
    assert "compat fix testgpu-resize-bar  (testgpu.c): include/linux/pci.h:" in out
    manifest = json.loads((tmp_path / "out/manifest.json").read_text())
    assert [f["name"] for f in manifest["compat_fixes"]] == ["testgpu-resize-bar"]
    assert manifest["compat_fixes"][0]["files"] == ["testgpu.c"]
    assert "exclude_bars" in manifest["compat_fixes"][0]["evidence"]
    assert manifest["inputs"]["compat_fixes"].startswith("testgpu-resize-bar:")
    log = next((tmp_path / "cache/build").glob("*/*/*/make.log")).read_text()
    assert "# compat fix testgpu-resize-bar applied to testgpu.c" in log
    # The fix changed the per-kernel build copy only, never the source.
    assert "testgpu_resize_bar(0);" in (RECIPES.parent / "driver/testgpu.c").read_text()


@pytest.mark.real_commands
def test_without_fixes_the_build_fails_at_the_first_compiler_error_and_names_the_withheld_fix(
    tmp_path: Path, kernel: str, capsys: pytest.CaptureFixture[str]
) -> None:
    recipe = _recipe_with_fix(tmp_path, RESIZE_FIX)
    assert _build(tmp_path, recipe, kernel, "--no-compat-fixes") == 5
    err = capsys.readouterr().err
    assert "testgpu.c:124: error: too few arguments to function 'testgpu_resize_bar'" in err
    assert "call for compat fixes testgpu-resize-bar, turned off by --no-compat-fixes" in err
    assert not (tmp_path / "out").exists()


def test_a_fix_that_does_not_apply_fails_the_build_with_exit_5(
    tmp_path: Path, kernel: str, capsys: pytest.CaptureFixture[str]
) -> None:
    stale = RESIZE_FIX.replace("testgpu_resize_bar(0);", "testgpu_resize_bar(0, 1, 2);")
    assert _build(tmp_path, _recipe_with_fix(tmp_path, stale), kernel) == 5
    err = capsys.readouterr().err
    assert "compat fix testgpu-resize-bar does not apply to testgpu.c: hunk #1 (at line 121)" in err
    assert not (tmp_path / "out").exists()
    assert not list((tmp_path / "cache/build").glob("*/*/*/build/*.o"))


def test_a_fix_whose_patch_differs_from_its_pin_is_refused(tmp_path: Path, kernel: str) -> None:
    recipe = load_recipe(_recipe_with_fix(tmp_path, RESIZE_FIX, pin="0" * 64))
    with pytest.raises(IntegrityError) as caught:
        read_patch(recipe, recipe.compat_fixes[0])
    assert f"{tmp_path / 'fix.patch'} has sha256 {hashlib.sha256(RESIZE_FIX.encode()).hexdigest()}" in str(caught.value)
    assert "pins " + "0" * 64 in str(caught.value)
    (tmp_path / "fix.patch").unlink()
    with pytest.raises(UsageError, match=r"cannot read its patch .*fix\.patch"):
        read_patch(recipe, recipe.compat_fixes[0])


def test_turning_fixes_off_changes_the_inputs_digest(tmp_path: Path, kernel: str) -> None:
    from build.buildlib import make_builder

    recipe = load_recipe(_recipe_with_fix(tmp_path, RESIZE_FIX))
    common = {"headers_dir": None, "source": None, "source_sha256": None, "firmware": None, "firmware_sha256": None}
    on = make_builder(tmp_path / "c")._inputs(recipe, kernel, **common)
    off = make_builder(tmp_path / "c", compat_fixes=False)._inputs(recipe, kernel, **common)
    assert on.values["compat_fixes"].startswith("testgpu-resize-bar:") and off.values["compat_fixes"] == "off"
    assert on.digest != off.digest
