"""The PrometheusRule's alerts, checked and unit-tested by promtool on series shaped like the agent's."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from .chartlib import Doc, one, tool

NODE = {"namespace": "inteldeviceplugins", "pod": "intel-gpu-driver-build-abcde", "node": "gpunode01"}


def series(metric: str, values: str, **labels: str) -> dict[str, str]:
    merged = {**NODE, "job": "intel-gpu-driver-agent-metrics", "instance": "10.0.0.7:9480", **labels}
    return {"series": metric + "{" + ",".join(f'{k}="{v}"' for k, v in merged.items()) + "}", "values": values}


def state(current: str, minutes: int, after: str | None = None) -> list[dict[str, str]]:
    """intel_gpu_driver_state for every state: 1 for `current` during `minutes`, then `after`."""
    out = []
    for name in ("ready", "loading", "unsupported", "failed", "blocked"):
        first = "1" if name == current else "0"
        then = "1" if name == after else "0"
        values = f"{first}x{minutes}" + (f" {then}x30" if after else "")
        out.append(series("intel_gpu_driver_state", values, state=name))
    return out


def expected(rule: dict[str, Any], severity: str) -> dict[str, Any]:
    """The alert promtool must see: the rule's labels and its annotations with the node's labels filled in."""

    def fill(text: str) -> str:
        return re.sub(r"\{\{ \$labels\.(\w+) \}\}", lambda m: NODE[m.group(1)], text)

    return {
        "exp_labels": {**NODE, "severity": severity},
        "exp_annotations": {k: fill(v) for k, v in rule["annotations"].items()},
    }


@pytest.fixture(scope="module")
def rules(rendered: dict[str, list[Doc]], tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    spec = one(rendered["metrics"], "PrometheusRule")["spec"]
    path = tmp_path_factory.mktemp("rules") / "rules.yaml"
    path.write_text(yaml.safe_dump({"groups": spec["groups"]}))
    return path, {r["alert"]: r for g in spec["groups"] for r in g["rules"]}


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([tool("promtool"), *args], capture_output=True, text=True, check=False, timeout=120)


def test_rules_are_valid(rules: tuple[Path, dict[str, Any]]) -> None:
    result = promtool("check", "rules", str(rules[0]))
    assert result.returncode == 0, result.stdout + result.stderr


def test_alerts_fire_when_they_should_and_only_then(rules: tuple[Path, dict[str, Any]], tmp_path: Path) -> None:
    path, by_name = rules
    tests = [
        {  # failed for 10 minutes: critical after 5; a ready node says nothing
            "interval": "1m",
            "input_series": state("failed", 15),
            "alert_rule_test": [
                {"eval_time": "3m", "alertname": "IntelGpuDriverFailed", "exp_alerts": []},
                {
                    "eval_time": "10m",
                    "alertname": "IntelGpuDriverFailed",
                    "exp_alerts": [expected(by_name["IntelGpuDriverFailed"], "critical")],
                },
                {"eval_time": "10m", "alertname": "IntelGpuDriverNotReady", "exp_alerts": []},
            ],
        },
        {  # a build of 30 minutes then ready: no alert; loading for an hour: not ready
            "interval": "1m",
            "input_series": state("loading", 30, after="ready"),
            "alert_rule_test": [{"eval_time": "50m", "alertname": "IntelGpuDriverNotReady", "exp_alerts": []}],
        },
        {
            "interval": "1m",
            "input_series": state("loading", 60),
            "alert_rule_test": [
                {
                    "eval_time": "50m",
                    "alertname": "IntelGpuDriverNotReady",
                    "exp_alerts": [expected(by_name["IntelGpuDriverNotReady"], "warning")],
                },
            ],
        },
        {
            "interval": "1m",
            "input_series": state("unsupported", 20),
            "alert_rule_test": [
                {"eval_time": "5m", "alertname": "IntelGpuDriverUnsupportedNode", "exp_alerts": []},
                {
                    "eval_time": "15m",
                    "alertname": "IntelGpuDriverUnsupportedNode",
                    "exp_alerts": [expected(by_name["IntelGpuDriverUnsupportedNode"], "info")],
                },
            ],
        },
        {
            "interval": "1m",
            "input_series": state("blocked", 20),
            "alert_rule_test": [
                {
                    "eval_time": "15m",
                    "alertname": "IntelGpuDriverBlocked",
                    "exp_alerts": [expected(by_name["IntelGpuDriverBlocked"], "warning")],
                },
            ],
        },
        {  # unload blocked for a minute is normal; for five it is not
            "interval": "1m",
            "input_series": [series("intel_gpu_driver_unload_blocked", "0 1 0 0 1x10")],
            "alert_rule_test": [
                {"eval_time": "2m", "alertname": "IntelGpuDriverUnloadBlocked", "exp_alerts": []},
                {
                    "eval_time": "10m",
                    "alertname": "IntelGpuDriverUnloadBlocked",
                    "exp_alerts": [expected(by_name["IntelGpuDriverUnloadBlocked"], "warning")],
                },
            ],
        },
        {  # one failed build fires at once and clears an hour later
            "interval": "1m",
            "input_series": [series("intel_gpu_driver_build_failures_total", "0x10 1x100")],
            "alert_rule_test": [
                {"eval_time": "5m", "alertname": "IntelGpuDriverBuildFailed", "exp_alerts": []},
                {
                    "eval_time": "20m",
                    "alertname": "IntelGpuDriverBuildFailed",
                    "exp_alerts": [expected(by_name["IntelGpuDriverBuildFailed"], "critical")],
                },
                {"eval_time": "100m", "alertname": "IntelGpuDriverBuildFailed", "exp_alerts": []},
            ],
        },
    ]
    test_file = tmp_path / "alerts_test.yaml"
    test_file.write_text(yaml.safe_dump({"rule_files": [str(path)], "evaluation_interval": "1m", "tests": tests}))
    result = promtool("test", "rules", str(test_file))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout + result.stderr
