"""Crafted driver trees through `load` on a fake node (issue 11 F7, F8, F11): refused before any host change."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
from fakehost import FakeHost
from tooling import REPO
from treelib import KERNEL, make_tree, manifest_dict, write_manifest

from agent.cli import main

RECIPE = REPO / "tests/recipes/testgpu.toml"


def debian_node(root: Path) -> FakeHost:
    """Debian 12 on the kernel the test recipe supports, one Flex 170 without a driver."""
    host = FakeHost(root)
    host.kernel(KERNEL, upstream="6.1.192", debian=True)
    host.os_release("debian", "12", "Debian GNU/Linux 12 (bookworm)")
    host.write("proc/sys/kernel/random/boot_id", "11111111-2222-3333-4444-555555555555\n")
    host.write("dev/kmsg", "6,1,100,-;Linux version 6.1.0-57-amd64\n")
    (root / "dev/dri").mkdir(parents=True)
    host.pci_gpu("0000:03:00.0", "56c0")
    return host


def snapshot(root: Path) -> dict[str, bytes | str]:
    """Every file and link under ``root`` with its content: what a refused load must leave as it was.

    The agent's lock file is left out: taking the lock is not a host change.
    """
    out: dict[str, bytes | str] = {}
    for path in sorted(root.rglob("*")):
        key = path.relative_to(root).as_posix()
        if key == "var/lib/intel-gpu-driver/lock":
            continue
        if path.is_symlink():
            out[key] = "-> " + os.readlink(path)
        elif path.is_file():
            out[key] = path.read_bytes()
    return out


def load(host: FakeHost, tree: Path) -> int:
    return main(["--host-root", str(host.root), "load", "--driver-tree", str(tree), "--recipe", str(RECIPE)])


def test_f7_a_firmware_name_climbing_out_of_the_firmware_folder_writes_nothing_on_the_host(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The probe's tree: firmware `../../../etc/evil.conf` was written as root to <host>/etc/evil.conf."""
    host = debian_node(tmp_path / "host")
    tree = tmp_path / "images/tree"
    data = manifest_dict(tree)
    evil = b"options evil yes\n"
    # The file the crafted entry names, where `tree/firmware/<name>` leads.
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/evil.conf").write_bytes(evil)
    name = "../../../etc/evil.conf"
    data["firmware"].append(
        {"name": name, "path": f"firmware/{name}", "sha256": hashlib.sha256(evil).hexdigest(), "bytes": len(evil)}
    )
    write_manifest(tree, data)
    before = snapshot(host.root)
    code = load(host, tree)
    err = capsys.readouterr().err
    assert code == 2, err
    assert f"driver tree {tree}: firmware[2].name:" in err
    assert "internal error" not in err
    assert not (host.root / "etc/evil.conf").exists()
    assert snapshot(host.root) == before


def test_f8_a_module_path_with_dotdot_cannot_hash_one_file_while_another_is_loaded(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The probe's tree: the manifest hashed a pristine copy outside, modprobe loaded the tampered file."""
    host = debian_node(tmp_path / "host")
    tree = tmp_path / "tree"
    data = manifest_dict(tree)
    updates = tree / f"opt/lib/modules/{KERNEL}/updates"
    pristine = tmp_path / "pristine/testgpu.ko"
    pristine.parent.mkdir()
    os.replace(updates / "testgpu.ko", pristine)
    (updates / "testgpu.ko").write_bytes(b"tampered module")
    data["modules"][2]["path"] = f"opt/lib/modules/{KERNEL}/updates/../../../../../pristine/testgpu.ko"
    data["modules"][2]["sha256"] = hashlib.sha256(pristine.read_bytes()).hexdigest()
    write_manifest(tree, data)
    before = snapshot(host.root)
    code = load(host, tree)
    err = capsys.readouterr().err
    assert code == 2, err
    assert f"driver tree {tree}: modules[2].path:" in err
    assert snapshot(host.root) == before


def test_f8_a_module_file_the_manifest_does_not_list_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    host = debian_node(tmp_path / "host")
    tree = tmp_path / "tree"
    make_tree(tree)
    (tree / f"opt/lib/modules/{KERNEL}/updates/i915.ko").write_bytes(b"not listed")
    before = snapshot(host.root)
    assert load(host, tree) == 2
    assert "updates/i915.ko is a module file not in the manifest" in capsys.readouterr().err
    assert snapshot(host.root) == before


@pytest.mark.parametrize("document", ["[]", '"tree"', "null", "[" * 50000, '{"schema": 1, "modules": 7}'])
def test_f11_a_manifest_of_the_wrong_shape_exits_2_without_a_trace(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], document: str
) -> None:
    host = debian_node(tmp_path / "host")
    tree = tmp_path / "tree"
    make_tree(tree)
    (tree / "manifest.json").write_text(document)
    assert load(host, tree) == 2
    err = capsys.readouterr().err
    assert f"driver tree {tree}" in err
    assert "Traceback" not in err and "internal error" not in err
