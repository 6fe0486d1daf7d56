"""docs/chart.md documents every value of the chart and the commands the original chart's users type."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import yaml

from .chartlib import CHART, REPO

SUBCHARTS = {"cert-manager", "node-feature-discovery", "intel-device-plugins-operator", "intel-device-plugins-gpu"}
FREE_FORM = {
    "kmm.operatorConfig.base",
    "agent.resources",
    "agent.updateStrategy",
    "agent.tolerations",
    "metrics.dashboard.labels",
}


def leaves(tree: dict[str, Any], prefix: str = "") -> Iterator[str]:
    for key, value in tree.items():
        path = f"{prefix}{key}"
        if path in SUBCHARTS or path in FREE_FORM or not isinstance(value, dict) or not value:
            yield path
        else:
            yield from leaves(value, f"{path}.")


def test_every_value_is_documented() -> None:
    doc = (REPO / "docs" / "chart.md").read_text()
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    missing = []
    for path in leaves(values):
        parent, _, last = path.rpartition(".")
        if f"`{path}`" in doc or (parent and f"`{parent}." in doc and f"{last}" in doc):
            continue
        missing.append(path)
    assert not missing, f"values not in docs/chart.md: {missing}"


def test_the_original_commands_are_documented() -> None:
    doc = (REPO / "docs" / "chart.md").read_text()
    for command in (
        "helm dep update",
        "helm install --create-namespace -n inteldeviceplugins intel-gpu .",
        "helm uninstall -n inteldeviceplugins intel-gpu",
        "bash scripts/cleanup.sh",
        "networkpolicy.enabled=false",
    ):
        assert command in doc, command
