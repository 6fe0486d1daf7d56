"""The support verdict: a pure function of kernel, OS, GPUs and recipe."""

from __future__ import annotations

import dataclasses

import pytest

from agent.discovery.gpus import PciGpu
from agent.discovery.kernel import KernelInfo, parse_kernel
from agent.discovery.os_release import parse_os_release
from agent.recipes.loader import load_recipes
from agent.support import CompatFixes, best, judge

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


# --- compat fixes in the verdict ------------------------------------------------------------------
PCI_FIX = "pci-resize-resource-exclude-bars"


def test_fixes_keep_a_newer_stable_kernel_at_risk_and_are_named() -> None:
    k = parse_kernel("6.1.0-57-amd64", version="Debian 6.1.192-1")
    v = judge(k, DEBIAN, FLEX, LTS, fixes=CompatFixes(needed=(PCI_FIX,)))
    assert v.verdict == "at-risk"
    assert v.compat_fixes == (PCI_FIX,)
    assert f"builds with compat fixes {PCI_FIX}: this kernel's headers need them" in v.reasons[1]


def test_a_validated_kernel_that_needs_fixes_is_at_risk_not_supported() -> None:
    v = judge(parse_kernel("6.6.83"), parse_os_release("ID=arch\n"), FLEX, LTS, fixes=CompatFixes(needed=(PCI_FIX,)))
    assert v.verdict == "at-risk" and v.compat_fixes == (PCI_FIX,)


def test_fixes_turned_off_or_unknown_are_said() -> None:
    k = parse_kernel("6.1.0-57-amd64", version="Debian 6.1.192-1")
    off = judge(k, DEBIAN, FLEX, LTS, fixes=CompatFixes(needed=(PCI_FIX,), enabled=False))
    assert off.compat_fixes == () and off.verdict == "at-risk"
    assert "turned off (--no-compat-fixes): expect the build to fail" in off.reasons[1]
    unknown = judge(k, DEBIAN, FLEX, LTS, fixes=CompatFixes(unknown="kernel headers for x are not installed"))
    assert (
        unknown.reasons[1] == "cannot tell which compat fixes the build needs: kernel headers for x are not installed"
    )
    none = judge(k, DEBIAN, FLEX, LTS, fixes=CompatFixes())
    assert none.reasons == judge(k, DEBIAN, FLEX, LTS).reasons


def _debian_node_with_headers(root):  # type: ignore[no-untyped-def]
    from fakehost import debian_node

    host = debian_node(root)
    headers = root / "usr/src/linux-headers-6.1.0-57-amd64"
    host.write(
        str((headers / "include/linux/pci.h").relative_to(root)),
        "int __must_check pci_resize_resource(struct pci_dev *dev, int i, int size,\n\t\t\t\t     int exclude_bars);\n",
    )
    return host


def test_check_names_the_fixes_from_the_nodes_own_headers(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    import json

    from agent.cli import main

    _debian_node_with_headers(tmp_path)
    assert main(["--host-root", str(tmp_path), "check", "--recipe", "i915-2350.145", "--json"]) == 0
    verdict = json.loads(capsys.readouterr().out)["verdicts"][0]
    assert verdict["verdict"] == "at-risk" and verdict["compat_fixes"] == [PCI_FIX]
    assert main(["--host-root", str(tmp_path), "check", "--recipe", "i915-2350.145"]) == 0
    assert f"  - builds with compat fixes {PCI_FIX}" in capsys.readouterr().out
    assert main(["--host-root", str(tmp_path), "check", "--recipe", "i915-2350.145", "--no-compat-fixes"]) == 0
    assert "turned off (--no-compat-fixes)" in capsys.readouterr().out


def test_check_says_when_the_headers_cannot_answer(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    from fakehost import debian_node

    from agent.cli import main

    debian_node(tmp_path)  # headers with a Makefile only: no include/linux/pci.h
    assert main(["--host-root", str(tmp_path), "check", "--recipe", "i915-2350.145"]) == 0
    out = capsys.readouterr().out
    assert "cannot tell which compat fixes the build needs" in out and "include/linux/pci.h" in out
