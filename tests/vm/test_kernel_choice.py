"""Choosing the kernel to boot by series, on fake /boot + /lib/modules trees and on this machine's own."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from vm.kernel import DEFAULT_SERIES, KERNEL_ENV, Kernel, KernelError, find_kernel, installed_kernels, kernel_series


def install(root: Path, *releases: str, image: bool = True) -> None:
    """Fake installed kernels: a modules folder each, and an image in /boot unless ``image`` is False."""
    for release in releases:
        (root / "lib/modules" / release).mkdir(parents=True)
        if image:
            (root / "boot").mkdir(exist_ok=True)
            (root / "boot" / f"vmlinuz-{release}").write_bytes(b"")


@pytest.fixture
def node(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Two point releases of each of Debian 12's series, plus a 6.10 that must not pass for 6.1."""
    monkeypatch.delenv(KERNEL_ENV, raising=False)
    install(tmp_path, "6.1.0-9-amd64", "6.1.0-57-amd64", "6.12.9+deb12-amd64", "6.12.117+deb12-amd64", "6.10.3-amd64")
    install(tmp_path, "6.1.0-99-amd64", image=False)  # modules left behind by a removed image
    return tmp_path


@pytest.mark.parametrize(
    ("release", "series"),
    [("6.1.0-57-amd64", "6.1"), ("6.12.117+deb12-amd64", "6.12"), ("6.1.192", "6.1"), ("5.15.0-135-generic", "5.15")],
)
def test_series_of_a_release(release: str, series: str) -> None:
    assert kernel_series(release) == series


def test_a_release_without_major_minor_is_refused() -> None:
    with pytest.raises(KernelError, match=r"'amd64' does not start with MAJOR\.MINOR"):
        kernel_series("amd64")


def test_installed_kernels_are_those_with_an_image_in_version_order(node: Path) -> None:
    assert installed_kernels(node) == [
        "6.1.0-9-amd64", "6.1.0-57-amd64", "6.10.3-amd64", "6.12.9+deb12-amd64", "6.12.117+deb12-amd64",
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("series", "release"), [("6.1", "6.1.0-57-amd64"), ("6.12", "6.12.117+deb12-amd64"), ("6.10", "6.10.3-amd64")]
)
def test_a_series_picks_its_newest_point_release(node: Path, series: str, release: str) -> None:
    kernel = find_kernel(series=series, root=node)
    assert kernel == Kernel(release, vmlinuz=node / f"boot/vmlinuz-{release}", modules=node / f"lib/modules/{release}")
    assert kernel.series == series


def test_the_default_is_the_newest_6_1_never_the_newest_installed(node: Path) -> None:
    assert DEFAULT_SERIES == "6.1"
    assert find_kernel(root=node).release == "6.1.0-57-amd64"


def test_vm_kernel_pins_the_default_kernel(node: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KERNEL_ENV, "6.12.9+deb12-amd64")
    assert find_kernel(root=node).release == "6.12.9+deb12-amd64"
    assert find_kernel(series="6.12", root=node).release == "6.12.117+deb12-amd64"  # a series ignores it
    monkeypatch.setenv(KERNEL_ENV, "6.1.0-99-amd64")
    with pytest.raises(KernelError, match=r"kernel 6.1.0-99-amd64 is not installed .*installed: 6.1.0-9-amd64, "):
        find_kernel(root=node)


def test_a_missing_series_names_the_packages(node: Path) -> None:
    with pytest.raises(KernelError, match=r"no 6\.6 kernel .*install linux-image-6\.6-amd64 linux-headers-6\.6"):
        find_kernel(series="6.6", root=node)
    with pytest.raises(KernelError, match=r"no 6\.1 kernel .*apt-get install linux-image-amd64 linux-headers-amd64"):
        find_kernel(series="6.1", root=node / "lib")  # a root with no kernels


def test_release_and_series_together_are_a_usage_error(node: Path) -> None:
    with pytest.raises(ValueError, match="not both"):
        find_kernel("6.1.0-57-amd64", series="6.1", root=node)


def test_this_machine_has_both_series_and_the_fixtures_pick_them(vm_kernel: Kernel, vm_kernel_612: Kernel) -> None:
    """CI installs Debian 12's 6.1 and 6.12 kernels with headers: the fixtures find one of each."""
    if os.environ.get(KERNEL_ENV):
        assert vm_kernel.release == os.environ[KERNEL_ENV]
    else:
        assert vm_kernel == find_kernel(series="6.1")
        assert vm_kernel.series == "6.1"
    assert vm_kernel_612.series == "6.12"
    for kernel in (vm_kernel, vm_kernel_612):
        assert (kernel.headers / "Makefile").is_file()
        assert kernel.vmlinuz.is_file()
