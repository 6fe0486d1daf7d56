"""HostPaths: host locations under a root, and symlinks resolved inside it."""

from __future__ import annotations

from pathlib import Path

from agent.host.paths import HostPaths


def test_locations_are_under_the_root(tmp_path: Path) -> None:
    host = HostPaths(tmp_path)
    assert host.firmware_class_path == tmp_path / "sys/module/firmware_class/parameters/path"
    assert host.module_dir("i915-compat") == tmp_path / "sys/module/i915_compat"
    assert host.kernel_headers_dir("6.1.0-57-amd64") == tmp_path / "lib/modules/6.1.0-57-amd64/build"
    assert host.as_host_path(host.firmware_dir) == "/var/lib/firmware"
    assert host.as_host_path(tmp_path) == "/"


def test_absolute_links_resolve_inside_the_root(tmp_path: Path) -> None:
    host = HostPaths(tmp_path)
    target = tmp_path / "usr/src/linux-headers-x"
    target.mkdir(parents=True)
    link = tmp_path / "lib/modules/x/build"
    link.parent.mkdir(parents=True)
    link.symlink_to("/usr/src/linux-headers-x")
    assert host.resolve(link) == target
    relative = tmp_path / "lib/modules/x/source"
    relative.symlink_to("build")
    assert host.resolve(relative) == target


def test_os_release_fallback(tmp_path: Path) -> None:
    host = HostPaths(tmp_path)
    assert host.os_release == tmp_path / "usr/lib/os-release"
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/os-release").write_text("ID=x\n")
    assert host.os_release == tmp_path / "etc/os-release"
