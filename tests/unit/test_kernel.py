"""Kernel discovery: release, upstream version, Ubuntu flavour and ABI, headers."""

from __future__ import annotations

from pathlib import Path

import pytest
from fakehost import FakeHost

from agent.discovery.kernel import detect_kernel, parse_kernel
from agent.errors import HostReadError


def test_ubuntu_signature_gives_flavour_abi_and_upstream() -> None:
    k = parse_kernel("5.15.0-135-generic", signature="Ubuntu 5.15.0-135.146-generic 5.15.178\n")
    assert (k.upstream, k.series, k.sublevel, k.abi, k.flavour) == ("5.15.178", "5.15", 178, "135", "generic")


def test_ubuntu_cloud_flavour_without_signature_comes_from_release() -> None:
    k = parse_kernel("6.8.0-1015-aws")
    assert (k.abi, k.flavour, k.series) == ("1015", "aws", "6.8")


def test_debian_upstream_version_comes_from_proc_version() -> None:
    k = parse_kernel("6.1.0-57-amd64", version="Linux version 6.1.0-57-amd64 ... Debian 6.1.158-1 (2025-11-08)")
    assert (k.upstream, k.sublevel, k.flavour) == ("6.1.158", 158, "amd64")
    assert k.describe() == "6.1.0-57-amd64 (upstream 6.1.158)"


def test_vanilla_release() -> None:
    k = parse_kernel("6.6.83")
    assert (k.upstream, k.series, k.sublevel, k.abi, k.flavour) == ("6.6.83", "6.6", 83, "", "")


def test_detect_reads_host_procfs_and_follows_the_headers_link_inside_the_root(tmp_path: Path) -> None:
    host = FakeHost(tmp_path).kernel("5.15.0-135-generic", upstream="5.15.178", ubuntu=True)
    k = detect_kernel(host.paths)
    assert k.release == "5.15.0-135-generic"
    assert k.headers, "the absolute /usr/src link must be resolved under the host root"


def test_headers_missing(tmp_path: Path) -> None:
    host = FakeHost(tmp_path).kernel("5.15.0-140-generic", upstream="5.15.180", ubuntu=True, headers=False)
    assert detect_kernel(host.paths).headers is False


def test_unreadable_release_is_a_clear_error(tmp_path: Path) -> None:
    FakeHost(tmp_path)
    with pytest.raises(HostReadError, match=r"cannot read the kernel release from .*osrelease"):
        detect_kernel(FakeHost(tmp_path).paths)


def test_debian_upstream_version_is_not_the_compilers() -> None:
    version = (
        "Linux version 6.1.0-57-amd64 (debian-kernel@lists.debian.org) (gcc-12 (Debian 12.2.0-14+deb12u1) 12.2.0, "
        "GNU ld (GNU Binutils for Debian) 2.40) #1 SMP PREEMPT_DYNAMIC Debian 6.1.192-3 (2026-01-01)"
    )
    assert parse_kernel("6.1.0-57-amd64", version=version).upstream == "6.1.192"
