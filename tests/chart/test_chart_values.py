"""Bad values are refused before anything is installed, with a message that names the key and the fix."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from .cases import KMM
from .chartlib import NAMESPACE, RELEASE, helm, set_args


def refused(chart: Path, values: dict[str, Any]) -> str:
    result = helm("template", RELEASE, str(chart), "--namespace", NAMESPACE, *set_args(values), check=False)
    assert result.returncode != 0, f"helm accepted {values}"
    return result.stderr


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"foo": 1}, "Additional property foo is not allowed"),
        ({"proxy.htpp": "x"}, "proxy: Additional property htpp is not allowed"),
        ({"proxy.http": 8080}, "proxy.http: Invalid type. Expected: string, given: integer"),
        ({"agent.port": "metrics"}, "agent.port: Invalid type. Expected: integer, given: string"),
        ({"loader.mode": "operator"}, 'loader.mode must be one of the following: "agent", "kmm"'),
        ({"deps.nfd": "no"}, "deps.nfd: Invalid type. Expected: boolean, given: string"),
        ({"kmm.operatorConfig.generation": "2.1"}, 'must be one of the following: "2.0", "2.2"'),
        ({"driver.prebuiltKernels": ["latest"]}, "driver.prebuiltKernels.0: Does not match pattern"),
        ({"build.agentSourceSha256": "abc"}, "build.agentSourceSha256: Does not match pattern"),
        ({"agent.unloadDeadlineSeconds": 0}, "agent.unloadDeadlineSeconds: Must be greater than or equal to 1"),
        ({"networkpolicy.extraPorts": [70000]}, "networkpolicy.extraPorts.0"),
    ],
)
def test_schema_names_the_bad_key(chart: Path, values: dict[str, Any], message: str) -> None:
    assert message in refused(chart, values)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"loader.mode": "kmm"}, "loader.mode=kmm needs local.image"),
        ({**KMM, "kmm.kernels": []}, "needs kmm.kernels"),
        ({"loader.mode": "kmm", "local.image": "r/x"}, "needs build.agentSource and build.agentSourceSha256"),
        ({"driver.prebuiltKernels": ["5.15.0-135-generic"]}, "set local.image"),
        ({"driver.buildOnNode": False}, "needs driver.prebuiltKernels"),
        ({"local.secret.base64": "bm90IGpzb24="}, "base64 -w0 ~/.docker/config.json"),
        (
            {**KMM, "setFirmwareClassPath": True},
            "also set kmm.operatorConfig.manage=true",
        ),
    ],
)
def test_combinations_the_schema_cannot_express_say_what_to_set(
    chart: Path, values: dict[str, Any], message: str
) -> None:
    assert message in refused(chart, values)


def test_original_chart_values_and_commands_still_work(chart: Path) -> None:
    """The original README's --set keys (and its proxy spelling) render."""
    values = {
        "local.image": "my.registry.acme.com/intel-gpu-driver",
        "local.secret.base64": "eyJhdXRocyI6IHt9fQ==",
        "build.baseImage": "192.168.0.100/ubuntu:20.04",
        "proxy.http": "proxy.acme.com:8080",
        "proxy.https": "proxy.acme.com:8081",
        "proxy.no_proxy": "acme.com,localhost,192.168.0.0/24",
        "proxy.noproxy": "acme.com",
        "deps.certmanager": False,
        "deps.nfd": False,
        "networkpolicy.enabled": False,
        "setFirmwareClassPath": False,
        "firmwareLoadPathHack": True,
    }
    helm("template", RELEASE, str(chart), "--namespace", NAMESPACE, *set_args(values))
    helm("template", RELEASE, str(chart), "--namespace", NAMESPACE, *set_args({**KMM, **values}))
