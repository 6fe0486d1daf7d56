"""Least privilege in the chart (issue 11 part 3): the agent's own node and label only, pinned images, a closed port.

The ValidatingAdmissionPolicy's CEL is evaluated with a real CEL implementation (cel-python) on
admission requests shaped like the API server's, the objects are validated against the Kubernetes
schemas, and the network policies are read the way a CNI reads them.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from agent.lifecycle.labels import LABEL

from .chartlib import NAMESPACE, Doc, find, kube_validator, one, render

VAP_API = "admissionregistration.k8s.io/v1/ValidatingAdmissionPolicy"
AGENT = f"system:serviceaccount:{NAMESPACE}:intel-gpu-driver-agent"
NODE_NAME_KEY = "authentication.kubernetes.io/node-name"


@pytest.fixture(scope="module")
def with_vap(chart: Path) -> list[Doc]:
    """The defaults on a cluster that serves ValidatingAdmissionPolicy (Kubernetes >= 1.30)."""
    return render(chart, {}, kube_version="1.31.0", api_versions=(VAP_API,))


@pytest.fixture(scope="module")
def policy(with_vap: list[Doc]) -> Doc:
    return one(with_vap, "ValidatingAdmissionPolicy")


# --- rendering ------------------------------------------------------------------------------------------------
def test_the_policy_is_rendered_only_where_the_cluster_serves_it(chart: Path, with_vap: list[Doc]) -> None:
    binding = one(with_vap, "ValidatingAdmissionPolicyBinding")
    policy = one(with_vap, "ValidatingAdmissionPolicy")
    assert binding["spec"] == {"policyName": policy["metadata"]["name"], "validationActions": ["Deny"]}
    assert policy["spec"]["failurePolicy"] == "Fail"
    older = render(chart, {}, kube_version="1.29.0")
    assert not find(older, "ValidatingAdmissionPolicy") and not find(older, "ValidatingAdmissionPolicyBinding")
    off = render(chart, {"agent.admissionPolicy.enabled": False}, api_versions=(VAP_API,))
    assert not find(off, "ValidatingAdmissionPolicy")


@pytest.mark.parametrize("version", ["1.30", "1.31", "1.33"])
def test_the_policy_objects_are_valid_kubernetes(with_vap: list[Doc], version: str) -> None:
    for kind in ("ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding"):
        doc = one(with_vap, kind)
        errors = [e.message for e in kube_validator(version, kind, doc["apiVersion"]).iter_errors(doc)]
        assert not errors, (kind, errors)


def test_the_policy_matches_the_agents_service_account_and_label(with_vap: list[Doc], policy: Doc) -> None:
    ds = find(with_vap, "DaemonSet")[0]
    account = ds["spec"]["template"]["spec"]["serviceAccountName"]
    assert f"system:serviceaccount:{NAMESPACE}:{account}" == AGENT
    assert Cel(policy).variable_value("ownLabels", request(object_=node("n1"))) == [LABEL]


# --- the CEL on admission requests ----------------------------------------------------------------------------
def node(name: str, labels: dict[str, str] | None = None, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "labels": {"kubernetes.io/hostname": name, "gpu-driver.intel.com/gpu": "true", **(labels or {})},
            "annotations": {"node.alpha.kubernetes.io/ttl": "0"},
        },
        "spec": {"podCIDR": "10.244.1.0/24", **spec},
    }


def request(
    *, object_: dict[str, Any], old: dict[str, Any] | None = None, user: str = AGENT, bound: str | None = "n1"
) -> dict[str, Any]:
    """An UPDATE of a Node as the API server hands it to a ValidatingAdmissionPolicy."""
    extra = {NODE_NAME_KEY: [bound], "authentication.kubernetes.io/pod-name": ["agent-x"]} if bound else {}
    info: dict[str, Any] = {"username": user, "groups": ["system:serviceaccounts", "system:authenticated"]}
    if extra:
        info["extra"] = extra
    return {
        "request": {"operation": "UPDATE", "name": object_["metadata"]["name"], "userInfo": info},
        "object": object_,
        "oldObject": old if old is not None else node(object_["metadata"]["name"]),
    }


class Cel:
    """A ValidatingAdmissionPolicy's expressions, evaluated as the API server does (conditions, variables, rules)."""

    def __init__(self, policy: Doc) -> None:
        import celpy

        self.celpy = celpy
        self.env = celpy.Environment()
        self.spec = policy["spec"]

    def _eval(self, expression: str, activation: dict[str, Any]) -> Any:
        program = self.env.program(self.env.compile(expression))
        result = program.evaluate(activation)
        if isinstance(result, self.celpy.CELEvalError):
            raise AssertionError(f"{expression!r} failed: {result}")
        return result

    def _activation(self, admission: dict[str, Any]) -> dict[str, Any]:
        activation = {k: self.celpy.json_to_cel(v) for k, v in admission.items()}
        variables: dict[str, Any] = {}
        for variable in self.spec.get("variables", []):
            activation["variables"] = self.celpy.celtypes.MapType(variables)
            variables[self.celpy.celtypes.StringType(variable["name"])] = self._eval(variable["expression"], activation)
        activation["variables"] = self.celpy.celtypes.MapType(variables)
        return activation

    def variable_value(self, name: str, admission: dict[str, Any]) -> Any:
        value = self._activation(admission)["variables"][self.celpy.celtypes.StringType(name)]
        return [str(v) for v in value] if isinstance(value, list) else value

    def denials(self, admission: dict[str, Any]) -> list[str] | None:
        """None when the policy does not apply (a match condition is false), else the failed rules' messages."""
        activation = {k: self.celpy.json_to_cel(v) for k, v in admission.items()}
        for condition in self.spec.get("matchConditions", []):
            if not bool(self._eval(condition["expression"], activation)):
                return None
        activation = self._activation(admission)
        messages = []
        for rule in self.spec["validations"]:
            if not bool(self._eval(rule["expression"], activation)):
                if "messageExpression" in rule:
                    messages.append(str(self._eval(rule["messageExpression"], activation)))
                else:
                    messages.append(rule["message"])
        return messages


def test_the_agent_may_set_and_change_its_state_label_on_its_own_node(policy: Doc) -> None:
    cel = Cel(policy)
    assert cel.denials(request(object_=node("n1", {LABEL: "loading"}))) == []
    changed = request(object_=node("n1", {LABEL: "ready"}), old=node("n1", {LABEL: "loading"}))
    assert cel.denials(changed) == []
    removed = request(object_=node("n1"), old=node("n1", {LABEL: "ready"}))
    assert cel.denials(removed) == []
    bare = request(object_={"metadata": {"name": "n1", "labels": {LABEL: "ready"}}, "spec": {}})
    bare["oldObject"] = {"metadata": {"name": "n1"}, "spec": {}}
    assert cel.denials(bare) == [], "a node without labels or annotations before"


def test_the_agent_may_not_touch_another_node(policy: Doc) -> None:
    denied = Cel(policy).denials(request(object_=node("n2", {LABEL: "ready"}), bound="n1"))
    assert denied == ["the intel-gpu-driver agent may only change the node it runs on (n1), not n2"]


def test_a_token_bound_to_no_node_may_change_nothing(policy: Doc) -> None:
    denied = Cel(policy).denials(request(object_=node("n1", {LABEL: "ready"}), bound=None))
    assert denied is not None and "its token names no node" in denied[0]


@pytest.mark.parametrize(
    ("labels", "old_labels"),
    [
        ({"gpu-driver.intel.com/gpu": "false"}, {}),  # NFD's label, not the agent's
        ({"node-role.kubernetes.io/control-plane": ""}, {}),
        ({"gpu-driver.intel.com/other": "x"}, {}),
        ({}, {"team": "ml"}),  # removing someone else's label
    ],
)
def test_the_agent_may_not_change_other_labels(
    policy: Doc, labels: dict[str, str], old_labels: dict[str, str]
) -> None:
    new = node("n1", {LABEL: "ready", **labels})
    old = node("n1", old_labels)
    assert Cel(policy).denials(request(object_=new, old=old)) == [
        "the intel-gpu-driver agent may only change its own labels on its node"
    ]


@pytest.mark.parametrize(
    "change",
    [
        {"spec": {"unschedulable": True}},
        {"spec": {"taints": [{"key": "evil", "effect": "NoSchedule"}]}},
        {"annotations": {"evil": "yes"}},
    ],
)
def test_the_agent_may_not_cordon_taint_or_annotate(policy: Doc, change: dict[str, Any]) -> None:
    new = node("n1", {LABEL: "ready"}, **change.get("spec", {}))
    new["metadata"]["annotations"].update(change.get("annotations", {}))
    denied = Cel(policy).denials(request(object_=new))
    assert denied == ["the intel-gpu-driver agent may not change a node's spec (taints, cordon) or annotations"]


def test_other_users_are_not_judged_by_this_policy(policy: Doc) -> None:
    kubelet = request(object_=node("n2", {"x": "y"}, unschedulable=True), user="system:node:n2", bound=None)
    assert Cel(policy).denials(kubelet) is None
    other_agent = request(object_=node("n2"), user="system:serviceaccount:other:intel-gpu-driver-agent")
    assert Cel(policy).denials(other_agent) is None


def test_the_policy_does_not_depend_on_the_order_of_the_old_objects_fields(policy: Doc) -> None:
    old = node("n1", {LABEL: "loading"})
    new = copy.deepcopy(old)
    new["metadata"]["labels"] = dict(reversed(list({**old["metadata"]["labels"], LABEL: "ready"}.items())))
    assert Cel(policy).denials(request(object_=new, old=old)) == []


# --- images pinned by digest ----------------------------------------------------------------------------------
def _images(docs: list[Doc]) -> dict[str, str]:
    out = {}
    for doc in docs:
        pod = doc.get("spec", {}).get("template", {}).get("spec", {})
        for container in pod.get("initContainers", []) + pod.get("containers", []):
            out[f"{doc['kind']}/{doc['metadata']['name']}/{container['name']}"] = container["image"]
    return out


def test_every_image_the_chart_renders_can_be_pinned_by_digest(rendered: dict[str, list[Doc]]) -> None:
    images = _images(rendered["digests"])
    d = {n: "sha256:" + n * 64 for n in "1234"}
    assert images["DaemonSet/intel-gpu-driver-k-5-15-0-135-generic/agent"] == (
        f"my.registry.acme.com/intel-gpu-driver:I915_25WW14.3_803.145_23.10.90_231129.99-5.15.0-135-generic@{d['1']}"
    )
    assert images["DaemonSet/intel-gpu-driver-build/agent"] == f"intel-gpu-driver-agent:0.1.0-toolchain@{d['2']}"
    assert images["Job/intel-gpu-driver-uninstall/delete-agents"] == f"registry.k8s.io/kubectl:v1.31.9@{d['4']}"
    # The monitor DaemonSet (kmm mode) runs the agent image itself: agent.image.digest applies there.
    monitor = _images(rendered["kmm-digest"])["DaemonSet/intel-gpu-driver-monitor/agent"]
    assert monitor == f"intel-gpu-driver-agent:0.1.0@{d['3']}"
    ours = {k: v for k, v in images.items() if not k.startswith("GpuDevicePlugin")}
    assert all("@sha256:" in image for image in ours.values()), ours
    assert all("@" not in image for image in _images(rendered["defaults"]).values()), "no digest: tags as before"


@pytest.mark.parametrize("digest", ["sha256:abc", "md5:" + "0" * 32, "1" * 64, "sha256:" + "A" * 64])
def test_a_malformed_digest_is_refused_by_the_schema(chart: Path, digest: str) -> None:
    from .chartlib import RELEASE, helm, set_args

    result = helm("template", RELEASE, str(chart), *set_args({"agent.image.digest": digest}), check=False)
    assert result.returncode != 0
    assert "agent.image.digest" in result.stderr


# --- the metrics port -----------------------------------------------------------------------------------------
def _selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """A label selector as Kubernetes reads it (matchLabels and the four matchExpressions operators)."""
    if any(labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
        return False
    for e in selector.get("matchExpressions", []):
        present, value = e["key"] in labels, labels.get(e["key"])
        ok = {
            "In": present and value in e.get("values", []),
            "NotIn": not present or value not in e.get("values", []),
            "Exists": present,
            "DoesNotExist": not present,
        }[e["operator"]]
        if not ok:
            return False
    return True


def _agent_ingress(docs: list[Doc]) -> list[dict[str, Any]]:
    """Every ingress rule that applies to an agent pod (policies are additive: the union is what is open)."""
    ds = find(docs, "DaemonSet")[0]
    labels = ds["spec"]["template"]["metadata"]["labels"]
    rules = []
    for policy in find(docs, "NetworkPolicy"):
        spec = policy["spec"]
        if policy["metadata"]["namespace"] != NAMESPACE or "Ingress" not in spec["policyTypes"]:
            continue
        if _selects(spec["podSelector"], labels):
            rules += spec.get("ingress", [])
    return rules


def test_the_agents_accept_only_metrics_scrapes_from_the_configured_peers(rendered: dict[str, list[Doc]]) -> None:
    rules = _agent_ingress(rendered["networkpolicy-metrics"])
    assert rules == [
        {
            "ports": [{"port": 9480, "protocol": "TCP"}],
            "from": [
                {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "observability"}}},
                {"ipBlock": {"cidr": "10.1.0.0/16"}},
            ],
        }
    ]
    default = _agent_ingress(rendered["defaults"])
    assert [r["from"] for r in default] == [
        [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}]
    ]
    assert _agent_ingress(rendered["networkpolicy-metrics-closed"]) == [], "[]: nobody reaches the agents"


def test_the_rest_of_the_namespace_keeps_its_ingress(rendered: dict[str, list[Doc]]) -> None:
    docs = rendered["defaults"]
    same = one(docs, "NetworkPolicy", "intel-gpu-driver-allow-same-namespace")["spec"]
    assert _selects(same["podSelector"], {"app.kubernetes.io/name": "cert-manager"})
    assert same["ingress"] == [{"from": [{"podSelector": {}}]}]
    egress = one(docs, "NetworkPolicy", "intel-gpu-driver-allow-same-namespace-egress")["spec"]
    assert egress == {"podSelector": {}, "policyTypes": ["Egress"], "egress": [{"to": [{"podSelector": {}}]}]}
