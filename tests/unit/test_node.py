"""Whole-node discovery on realistic nodes, and what it says when parts of the host are missing."""

from __future__ import annotations

import shutil
from pathlib import Path

from fakehost import FakeHost, debian_node, ubuntu_2204_flex, ubuntu_2404_max

from agent.app import App
from agent.config import make_global
from agent.discovery.node import discover


def app(root: Path) -> App:
    return App(config=make_global(str(root), "json", "info", None))


def test_flex_node_with_in_tree_i915(tmp_path: Path) -> None:
    facts = discover(ubuntu_2204_flex(tmp_path).paths)
    assert facts.kernel.flavour == "generic" and facts.kernel.headers
    assert facts.os.version_id == "22.04"
    assert len(facts.gpus) == 3 and all(g.driver == "i915" for g in facts.gpus)
    assert facts.i915.origin == "in-tree"
    assert facts.problems == ()
    assert app(tmp_path).check().chosen.recipe == "i915-2350.145"  # type: ignore[union-attr]


def test_max_node_with_the_backport_loaded(tmp_path: Path) -> None:
    facts = discover(ubuntu_2404_max(tmp_path).paths)
    assert facts.i915.origin == "backport"
    assert facts.gpus[0].family == "Intel Data Center GPU Max Series"
    result = app(tmp_path).check()
    assert result.chosen is not None and result.chosen.verdict == "supported"


def test_debian_node_is_at_risk_not_supported(tmp_path: Path) -> None:
    result = app(debian_node(tmp_path).root).check()
    assert result.chosen is not None and result.chosen.verdict == "at-risk"
    assert result.facts.gpus[0].driver == ""


def test_dg1_only_node_is_unsupported(tmp_path: Path) -> None:
    host = FakeHost(tmp_path).kernel("5.15.0-135-generic", upstream="5.15.178", ubuntu=True)
    host.os_release("ubuntu", "22.04", "Ubuntu 22.04.5 LTS")
    host.pci_gpu("0000:03:00.0", "4905")
    result = app(tmp_path).check()
    assert not result.supported
    assert all(v.verdict == "unsupported" for v in result.verdicts)


def test_arc_only_node_is_driven_by_the_backport(tmp_path: Path) -> None:
    host = FakeHost(tmp_path).kernel("5.15.0-135-generic", upstream="5.15.178", ubuntu=True)
    host.os_release("ubuntu", "22.04", "Ubuntu 22.04.5 LTS")
    host.pci_gpu("0000:03:00.0", "56a0", pci_class="0x030000")
    assert app(tmp_path).check().supported


def test_partial_mounts_are_reported_not_fatal(tmp_path: Path) -> None:
    host = ubuntu_2204_flex(tmp_path)
    shutil.rmtree(host.root / "sys/bus")
    (host.root / "proc/modules").unlink()
    host.paths.firmware_class_path.unlink()
    (host.root / "etc/os-release").unlink()
    facts = discover(host.paths)
    assert facts.gpus == ()
    joined = "\n".join(facts.problems)
    for expected in ("cannot list PCI devices", "cannot read loaded modules", "firmware search path", "os-release"):
        assert expected in joined


def test_headers_note_when_missing(tmp_path: Path) -> None:
    host = FakeHost(tmp_path).kernel("5.15.0-140-generic", upstream="5.15.180", ubuntu=True, headers=False)
    host.os_release("ubuntu", "22.04", "Ubuntu 22.04.5 LTS")
    host.pci_gpu("0000:03:00.0", "56c0")
    notes = app(tmp_path).check().notes
    assert any("linux-headers-5.15.0-140-generic" in n for n in notes)
