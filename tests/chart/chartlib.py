"""Helpers for the chart tests: the real helm binary, a chart copy with stand-in dependencies, rendering."""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "intel-gpu-driver"
STAND_INS = Path(__file__).resolve().parent / "stand-ins"
RELEASE = "intel-gpu"
NAMESPACE = "inteldeviceplugins"
KUBE_VERSIONS = ["1.25", "1.26", "1.27", "1.28", "1.29", "1.30", "1.31"]
Doc = dict[str, Any]


def tool(name: str) -> str:
    """Path of a tool the tests need (scripts/deps puts helm in .cache/tools/bin); missing fails the test."""
    for folder in (REPO / ".cache" / "tools" / "bin", REPO / ".venv" / "bin"):
        if (folder / name).is_file() and os.access(folder / name, os.X_OK):
            return str(folder / name)
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed: run scripts/install-deps (scripts/deps/chart.sh installs helm)")
    return found


def make_chart_copy(dest: Path) -> Path:
    """The chart copied under dest with the stand-in dependency charts in its charts/ folder."""
    chart = dest / "intel-gpu-driver"
    shutil.copytree(CHART, chart, ignore=shutil.ignore_patterns("charts", "Chart.lock"))
    (chart / "charts").mkdir()
    for stand_in in sorted(p for p in STAND_INS.iterdir() if p.is_dir()):
        shutil.copytree(stand_in, chart / "charts" / stand_in.name)
    return chart


def set_args(values: dict[str, Any]) -> list[str]:
    """--set-json arguments for a flat {"dotted.key": value} mapping."""
    args: list[str] = []
    for key, value in values.items():
        args += ["--set-json", f"{key}={json.dumps(value)}"]
    return args


def helm(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run the real helm with a private home (no repositories, no cache of the user's)."""
    home = Path(os.environ.get("PYTEST_HELM_HOME", "/tmp/intel-gpu-driver-chart-tests-helm"))
    env = {
        **os.environ,
        "HELM_CACHE_HOME": str(home / "cache"),
        "HELM_CONFIG_HOME": str(home / "config"),
        "HELM_DATA_HOME": str(home / "data"),
    }
    result = subprocess.run([tool("helm"), *args], check=False, capture_output=True, text=True, env=env, timeout=120)
    if check and result.returncode != 0:
        pytest.fail(f"helm {' '.join(args)} failed ({result.returncode}):\n{result.stderr}")
    return result


def render(
    chart: Path, values: dict[str, Any], *, kube_version: str | None = None, api_versions: tuple[str, ...] = ()
) -> list[Doc]:
    """helm template with the given values (for a Kubernetes version and the API kinds a cluster serves)."""
    version = ["--kube-version", kube_version] if kube_version else []
    apis = [arg for api in api_versions for arg in ("--api-versions", api)]
    result = helm("template", RELEASE, str(chart), "--namespace", NAMESPACE, *version, *apis, *set_args(values))
    return [d for d in yaml.safe_load_all(result.stdout) if d]


def find(docs: list[Doc], kind: str, name: str | None = None) -> list[Doc]:
    """Objects of a kind (and name)."""
    return [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]


def one(docs: list[Doc], kind: str, name: str | None = None) -> Doc:
    """The one object of a kind (and name)."""
    found = find(docs, kind, name)
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {[d['metadata']['name'] for d in found]}"
    return found[0]


def walk(tree: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    """(path, value) for every node of a YAML tree."""
    yield path, tree
    if isinstance(tree, dict):
        for key, value in tree.items():
            yield from walk(value, f"{path}.{key}")
    elif isinstance(tree, list):
        for index, value in enumerate(tree):
            yield from walk(value, f"{path}[{index}]")


@functools.cache
def kube_validator(version: str, kind: str, api_version: str) -> Any:
    """A cached strict validator for one kind in one Kubernetes version (kubernetes-validate's schemas)."""
    import re

    import jsonschema
    import kubernetes_validate.utils as kv
    from referencing import Registry, Resource

    versions = [v for v in kv.all_versions() if kv.major_minor(v) == version]
    assert versions, f"kubernetes-validate has no schemas for {version}"
    folder = f"v{versions[-1]}-local-strict"
    group = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", api_version)
    schema = kv.schema_contents(f"kubernetes-json-schema/{folder}/{kind.lower()}-{group}.json", version)
    definitions = kv.schema_contents(f"kubernetes-json-schema/{folder}/_definitions.json", version)
    registry = Resource.from_contents(definitions) @ (Resource.from_contents(schema) @ Registry())
    return jsonschema.validators.Draft202012Validator(schema, registry=registry)
