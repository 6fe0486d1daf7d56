"""The chart through the real helm engine: lint, render over a values matrix, Kubernetes schemas, what it renders."""

from __future__ import annotations

import json
import os
import tomllib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import yaml

from .cases import CASES
from .chartlib import (
    CHART,
    KUBE_VERSIONS,
    NAMESPACE,
    REPO,
    STAND_INS,
    Doc,
    find,
    helm,
    kube_validator,
    one,
    render,
    set_args,
)
from .shapes import SHAPES, check

CRD_GROUPS = {"kmm.sigs.x-k8s.io", "nfd.k8s-sigs.io", "deviceplugin.intel.com", "monitoring.coreos.com"}
STATE_READY = {"gpu-driver.intel.com/state": "ready"}


def is_custom(doc: Doc) -> bool:
    return "/" in doc["apiVersion"] and doc["apiVersion"].split("/")[0] in CRD_GROUPS


def agent_sets(docs: list[Doc]) -> dict[str, Doc]:
    return {d["metadata"]["name"]: d for d in find(docs, "DaemonSet")}


def container(ds: Doc) -> Doc:
    return ds["spec"]["template"]["spec"]["containers"][0]


def env(ds: Doc) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container(ds)["env"]}


# --- every case -------------------------------------------------------------------------------


def test_lint_strict(chart: Path) -> None:
    """helm lint --strict for every case of the matrix (run side by side: lint is the slow part)."""

    def lint(case: str) -> str | None:
        result = helm("lint", "--strict", str(chart), "--namespace", NAMESPACE, *set_args(CASES[case]), check=False)
        ok = result.returncode == 0 and "0 chart(s) failed" in result.stdout
        return None if ok else f"{case}:\n{result.stdout}{result.stderr}"

    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        failures = [f for f in pool.map(lint, CASES) if f]
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize("version", KUBE_VERSIONS)
def test_every_object_is_valid_kubernetes(rendered_by_version: dict[str, dict[str, list[Doc]]], version: str) -> None:
    """Every case rendered for the version (helm --kube-version), every object against its strict schema."""
    errors = []
    for case, docs in rendered_by_version[version].items():
        for doc in docs:
            if is_custom(doc):
                continue
            validator = kube_validator(version, doc["kind"], doc["apiVersion"])
            for error in validator.iter_errors(doc):
                path = "/".join(str(p) for p in error.absolute_path)
                errors.append(f"{case}: {doc['kind']}/{doc['metadata']['name']} at {path}: {error.message}")
    assert not errors, "\n".join(errors)


@pytest.mark.parametrize("case", CASES)
def test_custom_resources_have_the_expected_fields(rendered: dict[str, list[Doc]], case: str) -> None:
    errors = []
    for doc in rendered[case]:
        if is_custom(doc):
            assert doc["kind"] in SHAPES, f"no expectations written for {doc['kind']}"
            errors += [f"{doc['kind']}/{doc['metadata']['name']}{e}" for e in check(doc, SHAPES[doc["kind"]])]
    assert not errors, "\n".join(errors)


def test_custom_resources_against_the_reference_crds(rendered: dict[str, list[Doc]]) -> None:
    """The real CRDs, where the project's shared reference folder sits beside the checkout."""
    import jsonschema

    folder = REPO.parent / "shared" / "reference" / "crds"
    assert all(check(d, SHAPES[d["kind"]]) == [] for docs in rendered.values() for d in docs if is_custom(d))
    if not folder.is_dir():
        return  # a clone alone: the expectations above are the check
    schemas: dict[tuple[str, str], Any] = {}
    for path in folder.glob("*.yaml"):
        for crd in yaml.safe_load_all(path.read_text()):
            for version in crd["spec"]["versions"]:
                key = (f"{crd['spec']['group']}/{version['name']}", crd["spec"]["names"]["kind"])
                schemas[key] = strict(version["schema"]["openAPIV3Schema"])
    errors = []
    for case, docs in rendered.items():
        for doc in docs:
            schema = schemas.get((doc["apiVersion"], doc["kind"]))
            if schema is None:
                continue
            for error in jsonschema.Draft7Validator(schema).iter_errors(doc):
                errors.append(f"{case}: {doc['kind']} at {list(error.absolute_path)}: {error.message}")
    assert not errors, "\n".join(errors)


def strict(schema: Any) -> Any:
    """A CRD schema where unknown fields are errors (like kubectl's strict field validation)."""
    if isinstance(schema, dict):
        out = {k: strict(v) for k, v in schema.items()}
        if (
            out.get("type") == "object"
            and "properties" in out
            and "additionalProperties" not in out
            and not out.get("x-kubernetes-preserve-unknown-fields")
        ):
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [strict(v) for v in schema]
    return schema


# --- agent mode ---------------------------------------------------------------------------------


def test_defaults_build_on_the_node_with_a_narrow_agent(rendered: dict[str, list[Doc]]) -> None:
    sets = agent_sets(rendered["defaults"])
    assert list(sets) == ["intel-gpu-driver-build"]
    ds = sets["intel-gpu-driver-build"]
    pod = ds["spec"]["template"]["spec"]
    variables = env(ds)
    assert container(ds)["command"] == ["intel-gpu-agent"] and container(ds)["args"] == ["run"]
    assert variables["INTEL_GPU_AGENT_MODE"] == "load"
    assert variables["INTEL_GPU_AGENT_HOST_ROOT"] == "/host"
    assert variables["INTEL_GPU_AGENT_RECIPE"] == "i915-2350.145"
    assert "INTEL_GPU_AGENT_DRIVER_TREE" not in variables  # build on the node
    assert variables["INTEL_GPU_AGENT_LISTEN"] == "0.0.0.0:9480"
    assert variables["INTEL_GPU_AGENT_NODE_NAME"] == {"fieldRef": {"fieldPath": "spec.nodeName"}}
    assert pod["hostPID"] is True
    assert pod["priorityClassName"] == "system-node-critical"
    assert pod["terminationGracePeriodSeconds"] > int(variables["INTEL_GPU_AGENT_UNLOAD_DEADLINE"])
    security = container(ds)["securityContext"]
    assert security["privileged"] is False
    assert security["capabilities"]["drop"] == ["ALL"]
    assert {"SYS_MODULE", "SYS_PTRACE"} <= set(security["capabilities"]["add"])
    assert "SYS_ADMIN" not in security["capabilities"]["add"]
    annotations = ds["spec"]["template"]["metadata"]["annotations"]
    assert annotations["container.apparmor.security.beta.kubernetes.io/agent"] == "unconfined"
    assert annotations["prometheus.io/scrape"] == "true"
    # Building needs a compiler: the agent image's toolchain variant, and the host's headers where
    # kbuild's absolute include paths expect them.
    assert container(ds)["image"].endswith("-toolchain")
    mounts = {m["mountPath"]: m for m in container(ds)["volumeMounts"]}
    assert mounts["/usr/src"]["readOnly"] is True and mounts["/lib/modules"]["readOnly"] is True


def test_compat_fixes_are_on_by_default_and_the_value_turns_them_off(rendered: dict[str, list[Doc]]) -> None:
    for case, expected in (("defaults", "false"), ("no-compat-fixes", "true")):
        sets = agent_sets(rendered[case])
        assert sets, case
        for ds in sets.values():
            assert env(ds)["INTEL_GPU_AGENT_NO_COMPAT_FIXES"] == expected, (case, ds["metadata"]["name"])


def test_host_is_read_only_except_what_the_agent_writes(rendered: dict[str, list[Doc]]) -> None:
    ds = agent_sets(rendered["defaults"])["intel-gpu-driver-build"]
    mounts = {m["mountPath"]: m for m in container(ds)["volumeMounts"]}
    volumes = {v["name"]: v for v in ds["spec"]["template"]["spec"]["volumes"]}
    assert mounts["/host"]["readOnly"] is True
    assert volumes[mounts["/host"]["name"]]["hostPath"]["path"] == "/"
    writable = {p for p, m in mounts.items() if not m.get("readOnly") and "hostPath" in volumes[m["name"]]}
    assert writable == {
        "/host/var/lib/firmware",
        "/host/lib/firmware/updates",
        "/host/sys/module/firmware_class/parameters/path",
        "/host/var/lib/intel-gpu-driver",
    }
    for path in writable:
        assert volumes[mounts[path]["name"]]["hostPath"]["path"] == path.removeprefix("/host")
    firmware_path = volumes[mounts["/host/sys/module/firmware_class/parameters/path"]["name"]]
    assert firmware_path["hostPath"]["type"] == "File"  # the containerd workaround


def test_probes_ready_means_verified_and_startup_allows_a_build(rendered: dict[str, list[Doc]]) -> None:
    agent = container(agent_sets(rendered["defaults"])["intel-gpu-driver-build"])
    assert agent["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert agent["livenessProbe"]["httpGet"]["path"] == "/healthz"
    startup = agent["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 1800


def test_no_firmware_path_hack_leaves_the_firmware_path_alone(rendered: dict[str, list[Doc]]) -> None:
    for ds in agent_sets(rendered["no-firmware-path-hack"]).values():
        paths = [m["mountPath"] for m in container(ds)["volumeMounts"]]
        assert "/host/sys/module/firmware_class/parameters/path" not in paths


def test_prebuilt_kernels_get_one_daemonset_each_and_the_rest_builds(rendered: dict[str, list[Doc]]) -> None:
    sets = agent_sets(rendered["prebuilt-and-build"])
    assert set(sets) == {
        "intel-gpu-driver-k-5-15-0-135-generic",
        "intel-gpu-driver-k-6-8-0-56-generic",
        "intel-gpu-driver-build",
    }
    tag = "I915_25WW14.3_803.145_23.10.90_231129.99"
    for kernel in ("5.15.0-135-generic", "6.8.0-56-generic"):
        ds = sets[f"intel-gpu-driver-k-{kernel.replace('.', '-')}"]
        assert container(ds)["image"] == f"my.registry.acme.com/intel-gpu-driver:{tag}-{kernel}"
        assert env(ds)["INTEL_GPU_AGENT_DRIVER_TREE"] == "/"
        terms = ds["spec"]["template"]["spec"]["affinity"]["nodeAffinity"]
        expressions = terms["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"][0]
        assert {"key": "feature.node.kubernetes.io/kernel-version.full", "operator": "In", "values": [kernel]} in (
            expressions["matchExpressions"]
        )
    build = sets["intel-gpu-driver-build"]["spec"]["template"]["spec"]["affinity"]["nodeAffinity"]
    expressions = build["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"][0]["matchExpressions"]
    assert {
        "key": "feature.node.kubernetes.io/kernel-version.full",
        "operator": "NotIn",
        "values": ["5.15.0-135-generic", "6.8.0-56-generic"],
    } in expressions
    assert list(agent_sets(rendered["prebuilt-only"])) == ["intel-gpu-driver-k-5-15-0-135-generic"]
    selectors = {json.dumps(d["spec"]["selector"]) for d in sets.values()}
    assert len(selectors) == len(sets), "DaemonSets must not select each other's pods"


def test_privileged_fallback_and_ca_bundle(rendered: dict[str, list[Doc]]) -> None:
    ds = agent_sets(rendered["privileged"])["intel-gpu-driver-build"]
    assert container(ds)["securityContext"]["privileged"] is True
    assert env(ds)["INTEL_GPU_AGENT_CA_BUNDLE"] == "/etc/intel-gpu-agent/ca/ca.crt"


def test_rbac_allows_only_reading_and_patching_nodes(rendered: dict[str, list[Doc]]) -> None:
    role = one(rendered["defaults"], "ClusterRole")
    assert role["rules"] == [{"apiGroups": [""], "resources": ["nodes"], "verbs": ["get", "patch"]}]
    binding = one(rendered["defaults"], "ClusterRoleBinding")
    ds = agent_sets(rendered["defaults"])["intel-gpu-driver-build"]
    assert binding["subjects"][0]["name"] == ds["spec"]["template"]["spec"]["serviceAccountName"]


def test_nodes_are_found_by_intel_display_class_devices(rendered: dict[str, list[Doc]]) -> None:
    rule = one(rendered["defaults"], "NodeFeatureRule")["spec"]["rules"][0]
    assert rule["labels"] == {"gpu-driver.intel.com/gpu": "true"}
    expressions = rule["matchFeatures"][0]["matchExpressions"]
    assert rule["matchFeatures"][0]["feature"] == "pci.device"
    assert expressions["vendor"] == {"op": "In", "value": ["8086"]}
    assert expressions["class"] == {"op": "In", "value": ["0300", "0380"]}


# --- device plugin and dependencies --------------------------------------------------------------


def test_gpu_plugin_waits_for_the_agents_ready_label(rendered: dict[str, list[Doc]]) -> None:
    plugin = one(rendered["defaults"], "GpuDevicePlugin")
    assert plugin["spec"]["nodeSelector"] == STATE_READY
    # The dependency's own rule (i915 exists: the stock driver too) is off.
    assert [r["metadata"]["name"] for r in find(rendered["defaults"], "NodeFeatureRule")] == ["intel-gpu-driver"]


@pytest.mark.parametrize(
    ("case", "missing"),
    [
        ("no-certmanager", "cert-manager"),
        ("no-nfd", "node-feature-discovery"),
        ("no-operator", "intel-device-plugins-operator"),
        ("no-gpuplugin", "intel-device-plugins-gpu"),
    ],
)
def test_each_dependency_can_be_switched_off(rendered: dict[str, list[Doc]], case: str, missing: str) -> None:
    def present(docs: list[Doc]) -> set[str]:
        names = {d["metadata"].get("labels", {}).get("stand-in") for d in docs} - {None}
        if find(docs, "GpuDevicePlugin"):
            names.add("intel-device-plugins-gpu")
        return names  # type: ignore[return-value]

    everything = {"cert-manager", "node-feature-discovery", "intel-device-plugins-operator", "intel-device-plugins-gpu"}
    assert present(rendered["defaults"]) == everything
    assert present(rendered[case]) == everything - {missing}
    assert present(rendered["no-deps"]) == set()


def test_chart_dependencies_are_pinned_with_conditions() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    conditions = {d["name"]: d["condition"] for d in chart["dependencies"]}
    assert conditions == {
        "cert-manager": "deps.certmanager",
        "node-feature-discovery": "deps.nfd",
        "intel-device-plugins-operator": "deps.operator",
        "intel-device-plugins-gpu": "deps.gpuplugin",
    }
    for dep in chart["dependencies"]:
        assert dep["repository"].startswith("https://")
        stand_in = yaml.safe_load((STAND_INS / dep["name"] / "Chart.yaml").read_text())
        assert stand_in["version"] == dep["version"], f"stand-in of {dep['name']} has another version"


# --- kmm mode ---------------------------------------------------------------------------------


def test_kmm_module_builds_and_loads_what_the_recipe_says(rendered: dict[str, list[Doc]]) -> None:
    docs = rendered["kmm"]
    module = one(docs, "Module")
    assert module["metadata"] == {**module["metadata"], "name": "kmm-i915-backport", "namespace": "kmm-operator-system"}
    container_spec = module["spec"]["moduleLoader"]["container"]
    modprobe = container_spec["modprobe"]
    assert modprobe["moduleName"] == "i915"
    assert modprobe["modulesLoadingOrder"][0] == modprobe["moduleName"]
    assert modprobe["modulesLoadingOrder"] == ["i915", "mei-gsc"]
    assert modprobe["firmwarePath"] == "/firmware"
    assert modprobe["dirName"] == "/opt"
    assert container_spec["inTreeModulesToRemove"] == ["i915", "intel_vsec", "mei_gsc", "mei_me"]
    assert container_spec["registryTLS"] == {"insecure": False, "insecureSkipTLSVerify": False}
    assert container_spec["build"]["baseImageRegistryTLS"] == {"insecure": False, "insecureSkipTLSVerify": False}
    mappings = container_spec["kernelMappings"]
    assert [m["literal"] for m in mappings] == ["5.15.0-135-generic", "6.8.0-56-generic"]
    for mapping in mappings:
        assert mapping["containerImage"] == (
            "my.registry.acme.com/intel-gpu-driver:I915_25WW14.3_803.145_23.10.90_231129.99-${KERNEL_FULL_VERSION}"
        )
    assert module["spec"]["selector"] == {"gpu-driver.intel.com/gpu": "true"}
    secret_name = module["spec"]["imageRepoSecret"]["name"]
    secrets = find(docs, "Secret", secret_name)
    assert {s["metadata"]["namespace"] for s in secrets} == {"kmm-operator-system", NAMESPACE}
    assert all(s["type"] == "kubernetes.io/dockerconfigjson" for s in secrets)
    args = {a["name"]: a["value"] for a in container_spec["build"]["buildArgs"]}
    assert args == {
        "RECIPE": "i915-2350.145",
        "BASE_IMAGE": "ubuntu:22.04",
        "AGENT_SOURCE": "https://downloads.example/intel-gpu-driver-0.1.0.tar.gz",
        "AGENT_SOURCE_SHA256": "0" * 64,
        "VERSION": "0.1.0",
    }
    dockerfile = one(docs, "ConfigMap", container_spec["build"]["dockerfileConfigMap"]["name"])
    assert dockerfile["metadata"]["namespace"] == "kmm-operator-system"
    assert set(dockerfile["data"]) == {"dockerfile"}


def test_kmm_mode_runs_the_agent_as_a_monitor(rendered: dict[str, list[Doc]]) -> None:
    sets = agent_sets(rendered["kmm"])
    assert list(sets) == ["intel-gpu-driver-monitor"]
    assert env(sets["intel-gpu-driver-monitor"])["INTEL_GPU_AGENT_MODE"] == "monitor"
    assert one(rendered["kmm"], "GpuDevicePlugin")["spec"]["nodeSelector"] == STATE_READY


def test_kmm_regexp_mapping_and_tls_switch(rendered: dict[str, list[Doc]]) -> None:
    container_spec = one(rendered["kmm-regexp-insecure"], "Module")["spec"]["moduleLoader"]["container"]
    assert [m.get("regexp") for m in container_spec["kernelMappings"]] == ["^5\\.15\\.0-.*-generic$"]
    assert container_spec["registryTLS"]["insecureSkipTLSVerify"] is True
    assert "imageRepoSecret" not in one(rendered["kmm-regexp-insecure"], "Module")["spec"]


def test_kmm_build_gets_the_proxies(rendered: dict[str, list[Doc]]) -> None:
    build = one(rendered["kmm-proxies"], "Module")["spec"]["moduleLoader"]["container"]["build"]
    args = {a["name"]: a["value"] for a in build["buildArgs"]}
    assert args["HTTP_PROXY"] == "proxy.acme.com:8080"
    assert args["NO_PROXY"] == "acme.com"


@pytest.mark.parametrize(
    ("case", "key", "other"),
    [
        ("kmm-config-2.2", "firmwareHostPath", "setFirmwareClassPath"),
        ("kmm-config-2.0", "setFirmwareClassPath", "firmwareHostPath"),
    ],
)
def test_kmm_operator_config_has_one_generation_only(
    rendered: dict[str, list[Doc]], case: str, key: str, other: str
) -> None:
    config = one(rendered[case], "ConfigMap", "kmm-operator-manager-config")
    assert config["metadata"]["namespace"] == "kmm-operator-system"
    assert config["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    content = yaml.safe_load(config["data"]["controller_config.yaml"])
    assert content["worker"][key] == "/var/lib/firmware"
    assert other not in content["worker"]
    assert not find(rendered["kmm"], "ConfigMap", "kmm-operator-manager-config")


def test_dockerfile_in_the_configmap_is_the_repositorys(rendered: dict[str, list[Doc]]) -> None:
    chart_copy = (CHART / "files" / "Dockerfile.builder").read_bytes()
    rendered_text = next(d for d in find(rendered["kmm"], "ConfigMap") if "dockerfile" in d.get("data", {}))
    assert rendered_text["data"]["dockerfile"].encode() == chart_copy
    repository_file = REPO / "Dockerfile.builder"
    if repository_file.exists():
        assert chart_copy == repository_file.read_bytes(), (
            "charts/intel-gpu-driver/files/Dockerfile.builder differs from Dockerfile.builder: "
            "cp Dockerfile.builder charts/intel-gpu-driver/files/Dockerfile.builder"
        )
    else:  # a checkout without it (not committed yet): the copy must still be a builder for one kernel
        assert b"ARG KERNEL_FULL_VERSION" in chart_copy


# --- values shared with the original chart ---------------------------------------------------------


def test_proxies_reach_the_agent_with_the_original_noproxy_spelling(rendered: dict[str, list[Doc]]) -> None:
    variables = env(agent_sets(rendered["proxies"])["intel-gpu-driver-build"])
    assert variables["HTTP_PROXY"] == "http://proxy.acme.com:3128"
    assert variables["HTTPS_PROXY"] == "proxy.acme.com:8081"
    assert variables["NO_PROXY"] == "acme.com,localhost,192.168.0.0/24,$(KUBERNETES_SERVICE_HOST)"
    assert variables["no_proxy"] == variables["NO_PROXY"]
    egress = one(rendered["proxies"], "NetworkPolicy", "intel-gpu-driver-allow-egress")
    ports = {p["port"] for p in egress["spec"]["egress"][0]["ports"]}
    assert {80, 443, 3128, 8081} <= ports


def test_registry_secret_is_a_dockerconfigjson(rendered: dict[str, list[Doc]]) -> None:
    secret = one(rendered["registry-secret"], "Secret")
    assert secret["type"] == "kubernetes.io/dockerconfigjson"
    ds = agent_sets(rendered["registry-secret"])["intel-gpu-driver-build"]
    assert ds["spec"]["template"]["spec"]["imagePullSecrets"] == [{"name": secret["metadata"]["name"]}]


def test_network_policies_allow_dns_over_udp_and_tcp_and_webhook_calls(rendered: dict[str, list[Doc]]) -> None:
    docs = rendered["defaults"]
    dns = one(docs, "NetworkPolicy", "intel-gpu-driver-allow-dns")["spec"]["egress"][0]["ports"]
    assert {(p["port"], p["protocol"]) for p in dns} == {(53, "UDP"), (53, "TCP")}
    webhooks = one(docs, "NetworkPolicy", "intel-gpu-driver-allow-webhooks")["spec"]
    assert webhooks["policyTypes"] == ["Ingress"]
    assert {9443, 10250} <= {p["port"] for p in webhooks["ingress"][0]["ports"]}
    deny = one(docs, "NetworkPolicy", "intel-gpu-driver-default-deny")["spec"]
    assert deny == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}
    kmm_namespaces = {d["metadata"]["namespace"] for d in find(rendered["kmm"], "NetworkPolicy")}
    assert kmm_namespaces == {NAMESPACE, "kmm-operator-system"}
    assert not find(rendered["no-networkpolicy"], "NetworkPolicy")


def test_network_policy_api_server_address(rendered: dict[str, list[Doc]]) -> None:
    for case in ("networkpolicy-apiserver", "networkpolicy-apiserver-string"):
        api = one(rendered[case], "NetworkPolicy", "intel-gpu-driver-allow-apiserver")["spec"]["egress"][0]
        assert api["to"] == [{"ipBlock": {"cidr": "10.0.0.1/32"}}]
        hooks = one(rendered[case], "NetworkPolicy", "intel-gpu-driver-allow-webhooks")["spec"]["ingress"][0]
        assert hooks["from"] == [{"ipBlock": {"cidr": "10.0.0.1/32"}}]
    egress = one(rendered["networkpolicy-apiserver"], "NetworkPolicy", "intel-gpu-driver-allow-egress")
    ports = {(p["port"], p["protocol"]) for p in egress["spec"]["egress"][0]["ports"]}
    assert {(5000, "TCP"), (5353, "UDP")} <= ports


# --- uninstall and metrics -------------------------------------------------------------------


def test_uninstall_hook_deletes_the_module_then_the_agents_and_waits(rendered: dict[str, list[Doc]]) -> None:
    job = one(rendered["kmm"], "Job")
    assert job["metadata"]["annotations"]["helm.sh/hook"] == "pre-delete"
    steps = job["spec"]["template"]["spec"]["initContainers"]
    assert [s["name"] for s in steps] == ["delete-module", "delete-agents"]
    module_args = steps[0]["args"]
    assert module_args[:2] == ["delete", "modules.kmm.sigs.x-k8s.io"] and "kmm-i915-backport" in module_args
    assert "--wait=true" in module_args and "--timeout=240s" in module_args
    agent_args = steps[1]["args"]
    assert "--cascade=foreground" in agent_args and "--wait=true" in agent_args
    agent_job = one(rendered["defaults"], "Job")
    assert [s["name"] for s in agent_job["spec"]["template"]["spec"]["initContainers"]] == ["delete-agents"]
    assert not find(rendered["no-uninstall-hook"], "Job")
    role = next(r for r in find(rendered["kmm"], "Role") if r["metadata"]["namespace"] == "kmm-operator-system")
    assert {v for rule in role["rules"] for v in rule["verbs"]} <= {"get", "list", "watch", "delete"}


def test_metrics_objects(rendered: dict[str, list[Doc]]) -> None:
    docs = rendered["metrics"]
    monitor = one(docs, "ServiceMonitor")
    service = one(docs, "Service")
    assert monitor["spec"]["endpoints"][0]["port"] == service["spec"]["ports"][0]["name"]
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    alerts = {r["alert"] for g in one(docs, "PrometheusRule")["spec"]["groups"] for r in g["rules"]}
    assert {
        "IntelGpuDriverFailed",
        "IntelGpuDriverNotReady",
        "IntelGpuDriverUnloadBlocked",
        "IntelGpuDriverBuildFailed",
        "IntelGpuDriverUnsupportedNode",
    } <= alerts
    dashboard = json.loads(one(docs, "ConfigMap", "intel-gpu-driver-dashboard")["data"]["intel-gpu-driver.json"])
    exprs = " ".join(t["expr"] for p in dashboard["panels"] for t in p["targets"])
    assert "intel_gpu_driver_state" in exprs and "intel_gpu_driver_unload_blocked" in exprs
    assert not find(rendered["defaults"], "ServiceMonitor") and not find(rendered["defaults"], "PrometheusRule")


# --- the recipe ----------------------------------------------------------------------------------


def test_chart_defaults_are_what_the_lts_recipe_says() -> None:
    recipe = tomllib.loads((REPO / "build" / "releases" / "i915-2350.145.toml").read_text())
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert values["recipe"]["name"] == recipe["name"]
    assert values["recipe"]["driverTag"] == recipe["driver_tag"]
    assert values["recipe"]["replaces"] == recipe["modules"]["replaces"]
    assert values["recipe"]["loadOrder"] == recipe["modules"]["load_order"]
    assert values["recipe"]["loadOrder"][0] == recipe["modules"]["main"]
    assert values["recipe"]["parameters"] == recipe["modules"].get("parameters", {}).get(recipe["modules"]["main"], {})
    flavours = recipe["support"]["ubuntu_flavours"]
    ubuntu = sorted(f"{k['kernel']}-{f}" for k in recipe["support"]["kernels"] if k["os"] == "ubuntu" for f in flavours)
    assert sorted(values["kmm"]["kernels"]) == ubuntu


@pytest.mark.parametrize("version", KUBE_VERSIONS)
def test_chart_accepts_each_supported_kubernetes_version(chart: Path, version: str) -> None:
    helm("template", "intel-gpu", str(chart), "--namespace", NAMESPACE, "--kube-version", f"{version}.0")


def test_chart_packages_with_its_files(chart: Path, tmp_path: Path) -> None:
    import tarfile

    helm("package", str(chart), "--destination", str(tmp_path))
    (package,) = tmp_path.glob("intel-gpu-driver-*.tgz")
    with tarfile.open(package) as tar:
        names = set(tar.getnames())
    for name in ("values.schema.json", "files/Dockerfile.builder", "files/dashboard.json", "templates/NOTES.txt"):
        assert f"intel-gpu-driver/{name}" in names


def test_host_root_is_read_only_all_the_way_down_where_kubernetes_can(chart: Path) -> None:
    for version, recursive in (("1.29.0", None), ("1.30.0", "IfPossible"), ("1.31.0", "IfPossible")):
        ds = agent_sets(render(chart, {}, kube_version=version))["intel-gpu-driver-build"]
        host = next(m for m in container(ds)["volumeMounts"] if m["mountPath"] == "/host")
        assert host.get("recursiveReadOnly") == recursive, version
        assert "mountPropagation" not in host  # recursive read-only needs no propagation
