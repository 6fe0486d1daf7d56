"""scripts/cleanup.sh against fake kubectl and helm that record what they are asked to do."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from .chartlib import REPO

FAKE = """#!/usr/bin/env bash
echo "$(basename "$0") $*" >> "$CALLS"
case "$(basename "$0") $*" in
  "helm status"*) [ "${RELEASE_EXISTS:-yes}" = yes ] ;;
  "helm uninstall"*) exit "${UNINSTALL_RC:-0}" ;;
  "helm list"*) echo "${OTHER_RELEASES:-}" ;;
  "kubectl get crd -o name")
    printf 'customresourcedefinition.apiextensions.k8s.io/%s\\n' certificates.cert-manager.io \\
      orders.acme.cert-manager.io nodefeaturerules.nfd.k8s-sigs.io gpudeviceplugins.deviceplugin.intel.com \\
      modules.kmm.sigs.x-k8s.io widgets.example.com ;;
  *) exit 0 ;;
esac
"""


@pytest.fixture
def fake_tools(tmp_path: Path) -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in ("kubectl", "helm"):
        (bin_dir / name).write_text(FAKE)
        (bin_dir / name).chmod(0o755)
    return bin_dir


def cleanup(fake_tools: Path, *args: str, **env: str) -> tuple[int, list[str], str]:
    calls = fake_tools.parent / "calls"
    calls.write_text("")
    result = subprocess.run(
        ["bash", str(REPO / "scripts" / "cleanup.sh"), *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
        env={**os.environ, "PATH": f"{fake_tools}:{os.environ['PATH']}", "CALLS": str(calls), **env},
    )
    return result.returncode, calls.read_text().splitlines(), result.stdout + result.stderr


def test_removes_the_release_leftovers_labels_dependency_crds_and_namespace(fake_tools: Path) -> None:
    rc, calls, _ = cleanup(fake_tools)
    assert rc == 0
    assert "helm uninstall --namespace inteldeviceplugins intel-gpu --wait --timeout 10m" in calls
    assert any(
        c.startswith("kubectl delete modules.kmm.sigs.x-k8s.io --namespace kmm-operator-system kmm-i915-backport")
        for c in calls
    )
    assert "kubectl label nodes --all gpu-driver.intel.com/state- gpu-driver.intel.com/gpu- --overwrite" in calls
    deleted = {c.split()[3] for c in calls if c.startswith("kubectl delete crd ")}
    assert deleted == {
        "certificates.cert-manager.io",
        "orders.acme.cert-manager.io",
        "nodefeaturerules.nfd.k8s-sigs.io",
        "gpudeviceplugins.deviceplugin.intel.com",
    }  # never KMM's (installed separately) nor anybody else's
    assert "kubectl delete namespace inteldeviceplugins --ignore-not-found" in calls
    assert calls.index("helm uninstall --namespace inteldeviceplugins intel-gpu --wait --timeout 10m") < min(
        i for i, c in enumerate(calls) if c.startswith("kubectl delete")
    )


def test_keep_deps_and_keep_namespace(fake_tools: Path) -> None:
    rc, calls, _ = cleanup(fake_tools, "--keep-deps", "--keep-namespace", "--release", "r", "-n", "ns")
    assert rc == 0
    assert "helm uninstall --namespace ns r --wait --timeout 10m" in calls
    assert not [c for c in calls if c.startswith(("kubectl delete crd", "kubectl delete namespace"))]


def test_namespace_with_other_releases_is_kept(fake_tools: Path) -> None:
    rc, calls, out = cleanup(fake_tools, OTHER_RELEASES="someone-else")
    assert rc == 0 and "still has Helm releases" in out
    assert not [c for c in calls if c.startswith("kubectl delete namespace")]


def test_dry_run_changes_nothing(fake_tools: Path) -> None:
    rc, calls, out = cleanup(fake_tools, "--dry-run")
    assert rc == 0
    assert not [c for c in calls if c.split()[1] in {"uninstall", "delete", "label"}]
    assert "would run: helm uninstall" in out and "would run: kubectl delete crd" in out


def test_a_failed_uninstall_stops_and_says_what_to_do(fake_tools: Path) -> None:
    rc, calls, out = cleanup(fake_tools, UNINSTALL_RC="1")
    assert rc == 1
    assert "--no-hooks" in out and "kubectl logs" in out
    assert not [c for c in calls if c.startswith("kubectl delete")]


def test_no_release_left_goes_on_with_the_rest(fake_tools: Path) -> None:
    rc, calls, _ = cleanup(fake_tools, RELEASE_EXISTS="no")
    assert rc == 0
    assert not [c for c in calls if c.startswith("helm uninstall")]
    assert any(c.startswith("kubectl label nodes") for c in calls)


def test_unknown_option_is_a_usage_error(fake_tools: Path) -> None:
    rc, _, out = cleanup(fake_tools, "--everything")
    assert rc == 2 and "unknown option --everything" in out
