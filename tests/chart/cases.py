"""The values matrix of the chart tests: every case is linted, rendered and validated."""

from __future__ import annotations

import base64
import json
from typing import Any

REGISTRY_SECRET = base64.b64encode(
    json.dumps({"auths": {"my.registry.acme.com": {"auth": base64.b64encode(b"u:p").decode()}}}).encode()
).decode()
KMM = {
    "loader.mode": "kmm",
    "local.image": "my.registry.acme.com/intel-gpu-driver",
    "build.agentSource": "https://downloads.example/intel-gpu-driver-0.1.0.tar.gz",
    "build.agentSourceSha256": "0" * 64,
}

# The values matrix: every case is linted, rendered and validated.
CASES: dict[str, dict[str, Any]] = {
    "defaults": {},
    "no-certmanager": {"deps.certmanager": False},
    "no-nfd": {"deps.nfd": False},
    "no-operator": {"deps.operator": False},
    "no-gpuplugin": {"deps.gpuplugin": False},
    "no-deps": {"deps.certmanager": False, "deps.nfd": False, "deps.operator": False, "deps.gpuplugin": False},
    "kmm": {**KMM, "local.secret.base64": REGISTRY_SECRET},
    "kmm-config-2.2": {**KMM, "kmm.operatorConfig.manage": True, "kmm.operatorConfig.generation": "2.2"},
    "kmm-config-2.0": {
        **KMM,
        "kmm.operatorConfig.manage": True,
        "kmm.operatorConfig.generation": "2.0",
        "setFirmwareClassPath": True,
    },
    "kmm-regexp-insecure": {
        **KMM,
        "kmm.kernels": [],
        "kmm.kernelRegexp": "^5\\.15\\.0-.*-generic$",
        "kmm.registryTLS.insecureSkipTLSVerify": True,
    },
    "proxies": {
        "proxy.http": "http://proxy.acme.com:3128",
        "proxy.https": "proxy.acme.com:8081",
        "proxy.noproxy": "acme.com,localhost,192.168.0.0/24",
    },
    "kmm-proxies": {**KMM, "proxy.http": "proxy.acme.com:8080", "proxy.no_proxy": "acme.com"},
    "registry-secret": {"local.image": "my.registry.acme.com/intel-gpu-driver", "local.secret.base64": REGISTRY_SECRET},
    "no-networkpolicy": {"networkpolicy.enabled": False},
    "networkpolicy-apiserver": {
        "networkpolicy.apiserver": {"cidrs": ["10.0.0.1/32"], "ports": [6443]},
        "networkpolicy.extraPorts": [5000, {"port": 5353, "protocol": "UDP"}],
    },
    "networkpolicy-apiserver-string": {"networkpolicy.apiserver": "10.0.0.1/32"},
    "no-firmware-path-hack": {"firmwareLoadPathHack": False},
    "no-compat-fixes": {"driver.compatFixes": False},
    "prebuilt-and-build": {
        "local.image": "my.registry.acme.com/intel-gpu-driver",
        "driver.prebuiltKernels": ["5.15.0-135-generic", "6.8.0-56-generic"],
    },
    "prebuilt-only": {
        "local.image": "my.registry.acme.com/intel-gpu-driver",
        "driver.prebuiltKernels": ["5.15.0-135-generic"],
        "driver.buildOnNode": False,
    },
    "metrics": {
        "metrics.serviceMonitor.enabled": True,
        "metrics.prometheusRule.enabled": True,
        "metrics.dashboard.enabled": True,
    },
    "privileged": {"agent.privileged": True, "agent.caBundle.configMap": "corporate-ca"},
    "no-uninstall-hook": {"uninstall.enabled": False},
    "digests": {
        "local.image": "my.registry.acme.com/intel-gpu-driver",
        "driver.prebuiltKernels": ["5.15.0-135-generic"],
        "driver.image.digests": {"5.15.0-135-generic": "sha256:" + "1" * 64},
        "driver.buildImage.digest": "sha256:" + "2" * 64,
        "agent.image.digest": "sha256:" + "3" * 64,
        "uninstall.image.digest": "sha256:" + "4" * 64,
    },
    "kmm-digest": {**KMM, "agent.image.digest": "sha256:" + "3" * 64},
    "networkpolicy-metrics": {
        "networkpolicy.metrics.from": [
            {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "observability"}}},
            {"ipBlock": {"cidr": "10.1.0.0/16"}},
        ]
    },
    "networkpolicy-metrics-closed": {"networkpolicy.metrics.from": []},
}
