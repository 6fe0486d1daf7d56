"""Loaded modules and the i915 origin."""

from __future__ import annotations

from pathlib import Path

from fakehost import BACKPORT_VERSION, FakeHost, ubuntu_2204_flex, ubuntu_2404_max

from agent.discovery.modules import driver_origin, loaded_modules, parse_proc_modules


def test_proc_modules_parsing() -> None:
    text = "i915 3887104 3 - Live 0x0\ndrm_kms_helper 200704 1 i915, Live 0x0\nbroken line\n"
    parsed = parse_proc_modules(text)
    assert parsed["i915"] == (3887104, 3, (), "Live")
    assert parsed["drm_kms_helper"][2] == ("i915",)
    assert "broken" not in parsed


def test_in_tree_i915(tmp_path: Path) -> None:
    modules = loaded_modules(ubuntu_2204_flex(tmp_path).paths)
    assert modules["drm"].holders == ("i915",)
    origin = driver_origin(modules)
    assert (origin.origin, origin.backport_tag) == ("in-tree", "")


def test_backport_i915_and_its_tag(tmp_path: Path) -> None:
    origin = driver_origin(loaded_modules(ubuntu_2404_max(tmp_path).paths))
    assert origin.origin == "backport"
    assert origin.backport_tag == "I915_23.10.90_PSB_231129.99"
    assert origin.version == BACKPORT_VERSION


def test_no_i915(tmp_path: Path) -> None:
    assert driver_origin(loaded_modules(FakeHost(tmp_path).paths)).origin == "none"


def test_another_driver_and_marker(tmp_path: Path) -> None:
    host = FakeHost(tmp_path).module("testgpu", version="1.0 backported to 6.1", srcversion="X")
    origin = driver_origin(loaded_modules(host.paths), "testgpu", "backported")
    assert (origin.origin, origin.srcversion) == ("backport", "X")


def test_detail_reads_sysfs_only_for_the_named_modules(tmp_path: Path) -> None:
    host = FakeHost(tmp_path).module("testgpu", version="1.0 backported", srcversion="A", refcount=1)
    host.module("snd_hda", version="9", srcversion="B", holders=("snd",))
    modules = loaded_modules(host.paths, ["testgpu"])
    assert (modules["testgpu"].srcversion, modules["testgpu"].version, modules["testgpu"].refcount) == (
        "A",
        "1.0 backported",
        1,
    )
    # Listed with what /proc/modules says, but its sysfs files are not read.
    assert (modules["snd_hda"].srcversion, modules["snd_hda"].version, modules["snd_hda"].holders) == ("", "", ("snd",))
    by_rule = loaded_modules(host.paths, lambda name: name.startswith("snd"))
    assert (by_rule["snd_hda"].srcversion, by_rule["testgpu"].srcversion) == ("B", "")
