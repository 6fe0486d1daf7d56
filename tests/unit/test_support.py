"""The support verdict: a pure function of kernel, OS, GPUs and recipe."""

from __future__ import annotations

import dataclasses

import pytest

from agent.discovery.gpus import PciGpu
from agent.discovery.kernel import KernelInfo, parse_kernel
from agent.discovery.os_release import parse_os_release
from agent.recipes.loader import load_recipes
from agent.support import best, judge

RECIPES = {r.name: r for r in load_recipes().recipes}
LTS = RECIPES["i915-2350.145"]
ROLLING = RECIPES["i915-1099.12"]
UBUNTU_2204 = parse_os_release("ID=ubuntu\nVERSION_ID=22.04\n")
UBUNTU_2404 = parse_os_release("ID=ubuntu\nVERSION_ID=24.04\n")
DEBIAN = parse_os_release("ID=debian\nVERSION_ID=12\n")


def gpu(device_id: str, platform: str = "ATS-M (DG2 silicon)") -> PciGpu:
    return PciGpu(
        address="0000:03:00.0",
        device_id=device_id,
        platform=platform,
        product="",
        family="",
        pci_class="0x038000",
        virtual_function=False,
        parent="",
        total_vfs=0,
        numa_node=0,
        driver="",
        driver_module="",
        cards=(),
        render_nodes=(),
    )


FLEX = [gpu("56c0")]


def ubuntu(release: str, upstream: str) -> KernelInfo:
    base, abi, flavour = release.split("-", 2)
    return parse_kernel(release, signature=f"Ubuntu {base}-{abi}.1-{flavour} {upstream}")


def test_validated_ubuntu_kernel_is_supported() -> None:
    v = judge(ubuntu("5.15.0-135-generic", "5.15.178"), UBUNTU_2204, FLEX, LTS)
    assert v.verdict == "supported"
    assert "validated on" in v.reasons[0]


def test_newer_ubuntu_abi_is_at_risk_and_says_why() -> None:
    v = judge(ubuntu("5.15.0-140-generic", "5.15.180"), UBUNTU_2204, FLEX, LTS)
    assert v.verdict == "at-risk"
    assert v.reasons[0].startswith("kernel 5.15.0-140-generic is newer than 5.15.0-135-generic")
    assert "the build may fail" in v.reasons[0]


def test_older_ubuntu_abi_is_at_risk() -> None:
    v = judge(ubuntu("5.15.0-100-generic", "5.15.150"), UBUNTU_2204, FLEX, LTS)
    assert v.verdict == "at-risk" and "is older than" in v.reasons[0]


def test_cloud_flavour_is_unsupported() -> None:
    v = judge(ubuntu("5.15.0-1050-aws", "5.15.170"), UBUNTU_2204, FLEX, LTS)
    assert v.verdict == "unsupported"
    assert v.reasons[0].startswith("Ubuntu flavour aws is not generic")


def test_ubuntu_series_not_supported_by_lts_but_by_rolling() -> None:
    k = ubuntu("6.11.0-17-generic", "6.11.11")
    assert judge(k, UBUNTU_2404, FLEX, LTS).verdict == "unsupported"
    assert judge(k, UBUNTU_2404, FLEX, ROLLING).verdict == "supported"


def test_debian_newer_stable_kernel_is_at_risk_with_the_numbers() -> None:
    k = parse_kernel("6.1.0-57-amd64", version="Debian 6.1.192-1")
    v = judge(k, DEBIAN, FLEX, LTS)
    assert v.verdict == "at-risk"
    assert v.reasons[0].startswith("kernel 6.1.192 is newer than 6.1.131, the 6.1 kernel this release was validated on")
    assert "newer stable kernels changed APIs the driver uses" in v.reasons[0]


def test_vanilla_exact_lts_is_supported_with_build_only_note() -> None:
    v = judge(parse_kernel("6.6.83"), parse_os_release("ID=arch\n"), FLEX, LTS)
    assert v.verdict == "supported" and "build-verified" in v.reasons[0]


def test_unknown_series_is_unsupported() -> None:
    v = judge(parse_kernel("6.18.44-fc-v782"), DEBIAN, FLEX, LTS)
    assert v.verdict == "unsupported" and "series 6.18" in v.reasons[0]


def test_dg1_is_not_supported_by_this_driver() -> None:
    v = judge(ubuntu("5.15.0-135-generic", "5.15.178"), UBUNTU_2204, [gpu("4905", "DG1")], LTS)
    assert v.verdict == "unsupported"
    assert "8086:4905 (DG1) at 0000:03:00.0 is not supported by this driver" in v.reasons


def test_no_gpu_at_all() -> None:
    v = judge(ubuntu("5.15.0-135-generic", "5.15.178"), UBUNTU_2204, [], LTS)
    assert v.verdict == "unsupported"
    assert v.reasons[-1].startswith("no Intel data-center GPU on this node")


def test_rhel_exact_and_same_series() -> None:
    rhel = parse_os_release("ID=rhel\nVERSION_ID=9.4\n")
    assert judge(parse_kernel("5.14.0-427.42.1.el9_4.x86_64"), rhel, FLEX, LTS).verdict == "supported"
    assert judge(parse_kernel("5.14.0-427.50.1.el9_4.x86_64"), rhel, FLEX, LTS).verdict == "at-risk"


@pytest.mark.parametrize(
    ("kernel", "expected", "why"),
    [
        (("5.15.0-135-generic", "5.15.178"), "i915-2350.145", "LTS releases are preferred"),
        (("6.11.0-17-generic", "6.11.11"), "i915-1099.12", "only release"),
    ],
)
def test_best_release_and_why(kernel: tuple[str, str], expected: str, why: str) -> None:
    recipes = list(RECIPES.values())
    k = ubuntu(*kernel)
    verdicts = [judge(k, UBUNTU_2204, FLEX, r) for r in recipes]
    chosen, reason = best(verdicts, recipes)
    assert chosen is not None and chosen.recipe == expected
    assert why in reason


def test_best_prefers_supported_over_at_risk() -> None:
    recipes = list(RECIPES.values())
    k = ubuntu("5.15.0-112-generic", "5.15.160")  # validated by 2350.63 only
    verdicts = [judge(k, UBUNTU_2204, FLEX, r) for r in recipes]
    chosen, _ = best(verdicts, recipes)
    assert chosen is not None and chosen.recipe == "i915-2350.63" and chosen.verdict == "supported"


def test_best_with_nothing_usable() -> None:
    v = judge(parse_kernel("4.4.0"), DEBIAN, FLEX, LTS)
    assert best([v], [LTS]) == (None, "no release supports this node")


def test_judge_is_pure() -> None:
    k = ubuntu("5.15.0-135-generic", "5.15.178")
    first = judge(k, UBUNTU_2204, FLEX, LTS)
    assert dataclasses.astuple(first) == dataclasses.astuple(judge(k, UBUNTU_2204, FLEX, LTS))
