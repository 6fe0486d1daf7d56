"""Driver trees: the manifest parsed strictly, every path it names kept inside the tree (issue 11 F7, F8, F11)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from treelib import KERNEL, make_tree, manifest_dict, write_manifest

from agent.errors import AgentError, UsageError
from agent.tree import DriverTree, load_tree


def _load_error(root: Path) -> AgentError:
    with pytest.raises(AgentError) as caught:
        load_tree(root)
    assert caught.value.exit_code == 2
    assert str(root) in str(caught.value), "the error names the tree"
    return caught.value


def test_a_whole_tree_loads_with_its_modules_and_firmware(tmp_path: Path) -> None:
    make_tree(tmp_path)
    tree = load_tree(tmp_path)
    assert isinstance(tree, DriverTree)
    assert tree.manifest.kernel == KERNEL
    assert [m.name for m in tree.manifest.modules] == ["testgpu_compat", "testgpu_vsec", "testgpu"]
    assert tree.manifest.module("testgpu") is not None
    assert tree.manifest.module("testgpu").depends == ("testgpu_compat", "testgpu_vsec")  # type: ignore[union-attr]
    assert [f.name for f in tree.manifest.firmware] == ["testgpu/testgpu_guc_1.0.bin", "testgpu/testgpu_huc_1.0.bin"]


def test_the_manifest_round_trips(tmp_path: Path) -> None:
    make_tree(tmp_path)
    tree = load_tree(tmp_path)
    (tmp_path / "manifest.json").write_text(tree.manifest.to_json())
    assert load_tree(tmp_path).manifest == tree.manifest


# --- F11: a manifest of the wrong shape -----------------------------------------------------------------------
@pytest.mark.parametrize(
    ("document", "problem"),
    [
        ([], "a JSON object"),
        ("tree", "a JSON object"),
        (None, "a JSON object"),
        (3, "a JSON object"),
    ],
)
def test_a_manifest_that_is_not_an_object_is_a_usage_error(tmp_path: Path, document: object, problem: str) -> None:
    write_manifest(tmp_path, document)
    error = _load_error(tmp_path)
    assert isinstance(error, UsageError)
    assert problem in str(error)


@pytest.mark.parametrize(
    ("mutate", "entry"),
    [
        (lambda d: d.update(modules={"a": 1}), "modules"),
        (lambda d: d["modules"].append("i915"), "modules[3]"),
        (lambda d: d["modules"][0].update(name=7), "modules[0].name"),
        (lambda d: d["modules"][0].update(depends="drm"), "modules[0].depends"),
        (lambda d: d["modules"][0].update(depends=[1]), "modules[0].depends"),
        (lambda d: d["modules"][0].update(signed="yes"), "modules[0].signed"),
        (lambda d: d["modules"][0].update(colour="blue"), "modules[0].colour"),
        (lambda d: d["modules"][0].pop("sha256"), "modules[0].sha256"),
        (lambda d: d["modules"][0].update(sha256="abc"), "modules[0].sha256"),
        (lambda d: d["firmware"][0].update(bytes="512"), "firmware[0].bytes"),
        (lambda d: d["firmware"][0].update(bytes=True), "firmware[0].bytes"),
        (lambda d: d.update(kernel=["6.1"]), "kernel"),
        (lambda d: d.update(inputs=[]), "inputs"),
        (lambda d: d.update(inputs={"a": 1}), "inputs.a"),
        (lambda d: d.update(signed=1), "signed"),
        (lambda d: d.update(schema="1"), "schema"),
        (lambda d: d.pop("recipe"), "recipe"),
    ],
)
def test_a_wrong_type_or_key_is_named(tmp_path: Path, mutate: Any, entry: str) -> None:
    data = manifest_dict(tmp_path)
    mutate(data)
    write_manifest(tmp_path, data)
    error = _load_error(tmp_path)
    assert f": {entry}: " in str(error), str(error)


def test_a_manifest_that_is_not_utf8_json_is_a_usage_error(tmp_path: Path) -> None:
    (tmp_path / "manifest.json").write_bytes(b'{"schema": 1, "recipe": "\xff"}')
    _load_error(tmp_path)
    (tmp_path / "manifest.json").write_text("[" * 100000)
    _load_error(tmp_path)


# --- F7: firmware names and paths -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "path"),
    [
        ("../../../etc/evil.conf", "firmware/../../../etc/evil.conf"),
        ("/etc/evil.conf", "firmware//etc/evil.conf"),
        ("testgpu/../../x.bin", "firmware/testgpu/../../x.bin"),
        ("testgpu/testgpu_guc_1.0.bin", "opt/testgpu_guc_1.0.bin"),
        ("testgpu/testgpu_guc_1.0.bin", "/lib/firmware/testgpu/testgpu_guc_1.0.bin"),
        ("testgpu//x.bin", "firmware/testgpu//x.bin"),
        ("", "firmware/"),
    ],
)
def test_a_firmware_entry_outside_the_firmware_folder_is_refused(tmp_path: Path, name: str, path: str) -> None:
    data = manifest_dict(tmp_path)
    data["firmware"][0].update(name=name, path=path)
    write_manifest(tmp_path, data)
    error = _load_error(tmp_path)
    assert "firmware[0]" in str(error)


def test_a_firmware_folder_linked_out_of_the_tree_is_refused(tmp_path: Path) -> None:
    tree, outside = tmp_path / "tree", tmp_path / "etc"
    make_tree(tree)
    os.rename(tree / "firmware", outside)
    (tree / "firmware").symlink_to(outside)
    error = _load_error(tree)
    assert "firmware[0]" in str(error) and "outside" in str(error)


def test_a_firmware_file_linked_out_of_the_tree_is_refused(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    make_tree(tree)
    target = tree / "firmware/testgpu/testgpu_huc_1.0.bin"
    target.unlink()
    target.symlink_to("/etc/passwd")
    assert "firmware[1]" in str(_load_error(tree))


def test_a_module_requesting_an_unsafe_firmware_name_is_refused(tmp_path: Path) -> None:
    data = manifest_dict(tmp_path)
    data["modules"][2]["firmware"].append("../../etc/shadow")
    write_manifest(tmp_path, data)
    assert "modules[2].firmware[2]" in str(_load_error(tmp_path))


# --- F8: module paths and the modules folder ------------------------------------------------------------------
@pytest.mark.parametrize(
    "path",
    [
        f"opt/lib/modules/{KERNEL}/updates/../../../../../elsewhere/testgpu.ko",
        "/lib/modules/testgpu.ko",
        f"opt/lib/modules/{KERNEL}/../6.12.0/updates/testgpu.ko",
        "opt/lib/modules/6.12.0/updates/testgpu.ko",
        "firmware/testgpu.ko",
        f"opt/lib/modules/{KERNEL}/updates/testgpu.so",
    ],
)
def test_a_module_path_outside_the_modules_folder_is_refused(tmp_path: Path, path: str) -> None:
    data = manifest_dict(tmp_path)
    data["modules"][2]["path"] = path
    write_manifest(tmp_path, data)
    assert "modules[2].path" in str(_load_error(tmp_path))


def test_a_module_file_not_in_the_manifest_is_refused(tmp_path: Path) -> None:
    make_tree(tmp_path)
    (tmp_path / f"opt/lib/modules/{KERNEL}/updates/extra").mkdir()
    (tmp_path / f"opt/lib/modules/{KERNEL}/updates/extra/testgpu.ko.xz").write_bytes(b"tampered")
    error = _load_error(tmp_path)
    assert f"opt/lib/modules/{KERNEL}/updates/extra/testgpu.ko.xz" in str(error)
    assert "not in the manifest" in str(error)


def test_a_module_file_linked_out_of_the_tree_is_refused(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    make_tree(tree)
    ko = tree / f"opt/lib/modules/{KERNEL}/updates/testgpu.ko"
    (tmp_path / "elsewhere.ko").write_bytes(ko.read_bytes())
    ko.unlink()
    ko.symlink_to(tmp_path / "elsewhere.ko")
    assert "modules[2].path" in str(_load_error(tree))


def test_the_kmm_link_to_the_hosts_modules_is_not_taken_for_tree_modules(tmp_path: Path) -> None:
    """Dockerfile.builder's images link opt/lib/modules/KVER/host to the host's modules for depmod."""
    tree, host_modules = tmp_path / "tree", tmp_path / "host-modules"
    (host_modules / "kernel/drivers/gpu/drm").mkdir(parents=True)
    (host_modules / "kernel/drivers/gpu/drm/drm.ko").write_bytes(b"in-tree")
    make_tree(tree)
    (tree / f"opt/lib/modules/{KERNEL}/host").symlink_to(host_modules)
    assert len(load_tree(tree).manifest.modules) == 3


def test_a_module_file_missing_is_left_to_the_integrity_check(tmp_path: Path) -> None:
    """load_tree refuses what could escape; a missing file is reported by the load's own check (rebuild)."""
    make_tree(tmp_path)
    (tmp_path / f"opt/lib/modules/{KERNEL}/updates/testgpu.ko").unlink()
    assert load_tree(tmp_path).manifest.module("testgpu") is not None


@pytest.mark.parametrize(
    ("mutate", "entry"),
    [
        (lambda d: d.update(kernel="../../etc"), "kernel"),
        (lambda d: d.update(kernel=""), "kernel"),
        (lambda d: d.update(recipe="/etc/shadow.toml"), "recipe"),
        (lambda d: d.update(driver_tag="../x"), "driver_tag"),
        (lambda d: d["modules"][0].update(name="../i915"), "modules[0].name"),
        (lambda d: d["modules"][2].update(depends=["drm", "../../x"]), "modules[2].depends[1]"),
        (lambda d: d["modules"].append(dict(d["modules"][0])), "modules[3]"),
        (lambda d: d["firmware"].append(dict(d["firmware"][0])), "firmware[2]"),
    ],
)
def test_names_that_become_paths_or_arguments_are_checked(tmp_path: Path, mutate: Any, entry: str) -> None:
    data = manifest_dict(tmp_path)
    mutate(data)
    write_manifest(tmp_path, data)
    assert f": {entry}: " in str(_load_error(tmp_path))
