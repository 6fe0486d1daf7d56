"""The fields this chart uses in custom resources, as the project expects them, and a checker.

Written for the project from the operators' documented APIs (KMM Module v1beta1, NFD
NodeFeatureRule v1alpha1, Intel GpuDevicePlugin v1, Prometheus operator ServiceMonitor and
PrometheusRule v1). A key the shape does not list is an error, like the API server's strict field
validation; a key written "!key" is required.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class MapOf:
    """A map with free keys whose values have one shape."""

    value: Any


@dataclass(frozen=True)
class OneOf:
    """A string from a fixed set."""

    values: tuple[str, ...]


ANY_OBJECT = MapOf(object)
LABELS = MapOf(str)
METADATA = {"!name": str, "namespace": str, "labels": LABELS, "annotations": LABELS}
PULL_POLICY = OneOf(("Always", "IfNotPresent", "Never"))
TLS = {"insecure": bool, "insecureSkipTLSVerify": bool}
TOLERATION = {
    "key": str,
    "operator": OneOf(("Exists", "Equal")),
    "value": str,
    "effect": OneOf(("NoSchedule", "PreferNoSchedule", "NoExecute")),
    "tolerationSeconds": int,
}
BUILD = {
    "!dockerfileConfigMap": {"!name": str},
    "buildArgs": [{"!name": str, "!value": str}],
    "baseImageRegistryTLS": TLS,
    "secrets": [{"name": str}],
}
MODULE = {
    "!apiVersion": OneOf(("kmm.sigs.x-k8s.io/v1beta1",)),
    "!kind": OneOf(("Module",)),
    "!metadata": METADATA,
    "!spec": {
        "!selector": LABELS,
        "tolerations": [TOLERATION],
        "imageRepoSecret": {"!name": str},
        "!moduleLoader": {
            "!container": {
                "!modprobe": {
                    "!moduleName": str,
                    "dirName": str,
                    "firmwarePath": str,
                    "modulesLoadingOrder": [str],
                    "parameters": [str],
                },
                "inTreeModulesToRemove": [str],
                "imagePullPolicy": PULL_POLICY,
                "registryTLS": TLS,
                "build": BUILD,
                "!kernelMappings": [{"literal": str, "regexp": str, "!containerImage": str}],
            },
        },
    },
}
MATCH_EXPRESSION = {"!op": OneOf(("In", "NotIn", "InRegexp", "Exists", "DoesNotExist", "Gt", "Lt")), "value": [str]}
NODE_FEATURE_RULE = {
    "!apiVersion": OneOf(("nfd.k8s-sigs.io/v1alpha1",)),
    "!kind": OneOf(("NodeFeatureRule",)),
    "!metadata": METADATA,
    "!spec": {
        "!rules": [
            {
                "!name": str,
                "labels": LABELS,
                "matchFeatures": [{"!feature": str, "!matchExpressions": MapOf(MATCH_EXPRESSION)}],
            }
        ]
    },
}
GPU_DEVICE_PLUGIN = {
    "!apiVersion": OneOf(("deviceplugin.intel.com/v1",)),
    "!kind": OneOf(("GpuDevicePlugin",)),
    "!metadata": METADATA,
    "!spec": {
        "image": str,
        "initImage": str,
        "logLevel": int,
        "sharedDevNum": int,
        "enableMonitoring": bool,
        "preferredAllocationPolicy": OneOf(("balanced", "packed", "none")),
        "nodeSelector": LABELS,
        "tolerations": [TOLERATION],
    },
}
SERVICE_MONITOR = {
    "!apiVersion": OneOf(("monitoring.coreos.com/v1",)),
    "!kind": OneOf(("ServiceMonitor",)),
    "!metadata": METADATA,
    "!spec": {
        "!selector": {"matchLabels": LABELS},
        "namespaceSelector": {"matchNames": [str]},
        "!endpoints": [
            {
                "port": str,
                "path": str,
                "interval": str,
                "relabelings": [{"sourceLabels": [str], "targetLabel": str}],
            }
        ],
    },
}
PROMETHEUS_RULE = {
    "!apiVersion": OneOf(("monitoring.coreos.com/v1",)),
    "!kind": OneOf(("PrometheusRule",)),
    "!metadata": METADATA,
    "!spec": {
        "!groups": [
            {
                "!name": str,
                "!rules": [{"alert": str, "!expr": str, "for": str, "labels": LABELS, "annotations": LABELS}],
            }
        ]
    },
}
SHAPES = {
    "Module": MODULE,
    "NodeFeatureRule": NODE_FEATURE_RULE,
    "GpuDevicePlugin": GPU_DEVICE_PLUGIN,
    "ServiceMonitor": SERVICE_MONITOR,
    "PrometheusRule": PROMETHEUS_RULE,
}


def check(value: Any, shape: Any, path: str = "") -> list[str]:
    """Every way value differs from shape, as "path: what" lines."""
    where = path or "(root)"
    if isinstance(shape, dict):
        if not isinstance(value, dict):
            return [f"{where}: expected an object, got {type(value).__name__}"]
        errors: list[str] = []
        keys = {k.lstrip("!"): k for k in shape}
        for key in value:
            if key not in keys:
                errors.append(f"{path}.{key}: unknown field")
        for key, raw in keys.items():
            if raw.startswith("!") and key not in value:
                errors.append(f"{path}.{key}: required field missing")
            if key in value:
                errors += check(value[key], shape[raw], f"{path}.{key}")
        return errors
    if isinstance(shape, list):
        if not isinstance(value, list):
            return [f"{where}: expected a list, got {type(value).__name__}"]
        return [e for i, item in enumerate(value) for e in check(item, shape[0], f"{path}[{i}]")]
    if isinstance(shape, MapOf):
        if not isinstance(value, dict):
            return [f"{where}: expected a map, got {type(value).__name__}"]
        return [e for k, v in value.items() for e in check(v, shape.value, f"{path}.{k}")]
    if isinstance(shape, OneOf):
        return [] if value in shape.values else [f"{where}: {value!r} is not one of {list(shape.values)}"]
    if shape is object:
        return []
    if shape is int and isinstance(value, bool):
        return [f"{where}: expected int, got bool"]
    return [] if isinstance(value, shape) else [f"{where}: expected {shape.__name__}, got {type(value).__name__}"]
