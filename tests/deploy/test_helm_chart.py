"""The Helm chart, rendered by the real (pinned) helm binary and checked offline.

Built-in kinds are validated with kubernetes-validate's bundled Kubernetes 1.37 schemas in strict mode (unknown
fields refused). Custom resources (ServiceMonitor, Kopf peerings) have no bundled schema and are checked by hand.
No cluster is involved: what a real API server would additionally enforce (admission, RBAC escalation checks)
is out of reach here.
"""

from __future__ import annotations

import json
import re
import subprocess
import tarfile
import textwrap
from collections.abc import Callable, Iterator
from dataclasses import fields
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from obstop.controller.metrics import Metrics
from obstop.controller.resource import Phase
from obstop.controller.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "deploy" / "helm" / "ob-stop-operator"
NAMESPACE = "ops"  # the release namespace the conftest renders into
Render = Callable[..., list[dict[str, Any]]]
Helm = Callable[..., str]
KUBERNETES_VERSION = "1.37.0"
CUSTOM_KINDS = {"ServiceMonitor", "PrometheusRule", "KopfPeering", "ClusterKopfPeering"}
CRD_FILE = "obshell.oceanbase.com_obstoprequests.yaml"

# Value sets that together switch on every branch of the templates.
VALUE_SETS: dict[str, dict[str, Any]] = {
    "defaults": {},
    "namespaced": {"watchNamespaces": ["team-a", "team-b"]},
    "peering-clusterwide": {"replicas": 2, "peering": {"enabled": True}},
    "peering-namespaced": {
        "replicas": 3,
        "peering": {"enabled": True, "name": "obstop-peers", "installCRDs": False},
        "watchNamespaces": ["team-a"],
    },
    "monitoring": {
        "serviceMonitor": {"enabled": True, "labels": {"release": "prometheus"}, "interval": "15s"},
        "metrics": {"prometheusRule": {"enabled": True, "labels": {"release": "prometheus"}}},
        "podDisruptionBudget": {"enabled": True},
        "service": {"annotations": {"prometheus.io/scrape": "true"}},
    },
    "pdb-min-available": {
        "replicas": 2,
        "peering": {"enabled": True},
        "podDisruptionBudget": {"enabled": True, "minAvailable": 1, "maxUnavailable": None},
    },
    "scheduling-and-env": {
        "extraEnv": [
            {"name": "OBSTOP_LOG_LEVEL", "value": "DEBUG"},
            {"name": "HTTPS_PROXY", "valueFrom": {"secretKeyRef": {"name": "proxy", "key": "url"}}},
        ],
        "resources": {"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"cpu": 1, "memory": "1Gi"}},
        "priorityClassName": "system-cluster-critical",
        "nodeSelector": {"kubernetes.io/os": "linux"},
        "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "ops", "effect": "NoSchedule"}],
        "affinity": {
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [
                        {"matchExpressions": [{"key": "ops", "operator": "Exists"}]},
                    ]
                }
            }
        },
        "podAnnotations": {"example.com/owner": "dba"},
        "podLabels": {"team": "dba"},
        "imagePullSecrets": [{"name": "regcred"}],
        "image": {"repository": "registry.example.com/ob-stop-operator", "digest": "sha256:" + "a" * 64},
        "serviceAccount": {"annotations": {"example.com/role": "obstop"}},
    },
    "no-rbac-no-service": {"rbac": {"create": False}, "service": {"enabled": False}},
    "openshift": {"runAsFixedUser": False},
}


def find(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [doc for doc in docs if doc["kind"] == kind]


def one(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = find(docs, kind)
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    first: dict[str, Any] = found[0]
    return first


def container(docs: list[dict[str, Any]]) -> dict[str, Any]:
    containers: list[dict[str, Any]] = one(docs, "Deployment")["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


def controller_role(docs: list[dict[str, Any]]) -> dict[str, Any]:
    """The controller's own ClusterRole (the others are the roles for people, templates/user-roles.yaml)."""
    (role,) = [d for d in find(docs, "ClusterRole") if d["metadata"]["name"] == "obstop-ob-stop-operator"]
    return role


def env_of(docs: list[dict[str, Any]]) -> dict[str, str]:
    return {var["name"]: var["value"] for var in container(docs)["env"] if "value" in var}


def rules(doc: dict[str, Any]) -> set[tuple[str, str, str]]:
    """A Role's rules flattened to (apiGroup, resource, verb)."""
    return {
        (group, resource, verb)
        for rule in doc["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }


def grants(verbs: str, group: str, *resources: str) -> set[tuple[str, str, str]]:
    return {(group, resource, verb) for resource in resources for verb in verbs.split()}


# What the controller calls on the API, as documented in templates/rbac.yaml.
NAMESPACED_RULES = (
    grants("list watch", "obshell.oceanbase.com", "obstoprequests")
    | grants("patch", "obshell.oceanbase.com", "obstoprequests/status")
    | grants("list", "obshell.oceanbase.com", "obstopapprovals")
    | grants("get", "", "secrets")
    | grants("create", "", "events")
)
CRD_RULES = grants("list watch", "apiextensions.k8s.io", "customresourcedefinitions")


# ------------------------------------------------------------------------------------------------------
# The chart as a whole


def test_lint_strict_passes_for_defaults_and_every_value_set(helm: Any, tmp_path: Path) -> None:
    helm("lint", "--strict", str(CHART))
    for name, values in VALUE_SETS.items():
        path = tmp_path / f"{name}.yaml"
        path.write_text(json.dumps(values))
        helm("lint", "--strict", str(CHART), "--values", str(path))


@pytest.mark.parametrize("value_set", sorted(VALUE_SETS))
def test_every_rendered_manifest_is_valid(render: Render, value_set: str) -> None:
    docs = render(VALUE_SETS[value_set], include_crds=True)
    assert docs
    for doc in docs:
        where = f"{doc.get('kind')}/{doc.get('metadata', {}).get('name')}"
        if doc["kind"] in CUSTOM_KINDS:
            assert doc["apiVersion"] in ("monitoring.coreos.com/v1", "kopf.dev/v1"), where
            assert doc["metadata"]["name"], where
            continue
        try:
            kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{where} is not a valid Kubernetes {KUBERNETES_VERSION} object: {exc.message}")


@pytest.mark.parametrize("value_set", sorted(VALUE_SETS))
def test_no_template_is_a_hook(render: Render, value_set: str) -> None:
    """Argo CD runs Helm hooks at every sync (post-install becomes PostSync): docs/gitops.md says there are none."""
    for doc in render(VALUE_SETS[value_set], include_crds=True):
        annotations = doc["metadata"].get("annotations") or {}
        hooks = [key for key in annotations if key.startswith(("helm.sh/hook", "argocd.argoproj.io/hook"))]
        assert hooks == [], f"{doc['kind']}/{doc['metadata']['name']}"


@pytest.mark.parametrize("value_set", sorted(VALUE_SETS))
def test_every_templated_object_has_the_standard_labels(render: Render, value_set: str) -> None:
    for doc in render(VALUE_SETS[value_set]):
        labels = doc["metadata"]["labels"]
        for key in (
            "helm.sh/chart",
            "app.kubernetes.io/name",
            "app.kubernetes.io/instance",
            "app.kubernetes.io/version",
            "app.kubernetes.io/managed-by",
        ):
            assert labels.get(key), f"{doc['kind']}/{doc['metadata']['name']} lacks label {key}"


def test_the_default_render_has_what_the_controller_needs(render: Render) -> None:
    docs = render()
    kinds = sorted(doc["kind"] for doc in docs)
    assert kinds == [
        "ClusterRole",  # the controller's
        "ClusterRole",  # view, for people
        "ClusterRole",  # edit, for people
        "ClusterRole",  # approve, for approvers
        "ClusterRoleBinding",
        "Deployment",
        "Service",
        "ServiceAccount",
        "ValidatingAdmissionPolicy",  # an ObStopApproval names its creator
        "ValidatingAdmissionPolicyBinding",
    ]
    deployment = one(docs, "Deployment")
    assert deployment["metadata"]["namespace"] == NAMESPACE
    assert deployment["spec"]["replicas"] == 1
    # One controller at a time without peering, even during a rollout.
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    pod = deployment["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == one(docs, "ServiceAccount")["metadata"]["name"]
    assert container(docs)["image"] == "ob-stop-operator:0.1.0"  # the chart's appVersion


# ------------------------------------------------------------------------------------------------------
# Values: the schema refuses what the chart would silently ignore


@pytest.mark.parametrize(
    ("values", "complaint"),
    [
        ({"replcas": 2}, "replcas"),
        ({"image": {"tagg": "1.0"}}, "tagg"),
        ({"controller": {"logLevl": "DEBUG"}}, "logLevl"),
        ({"controller": {"logLevel": "VERBOSE"}}, "/controller/logLevel"),
        ({"peering": {"enable": True}}, "enable"),
        ({"serviceMonitor": {"enabled": True, "intervall": "1m"}}, "intervall"),
        ({"podDisruptionBudget": {"minAvaliable": 1}}, "minAvaliable"),
        ({"extraEnv": [{"name": "A", "valeu": "b"}]}, "valeu"),
        ({"watchNamespaces": ["Not_A_Namespace"]}, "Not_A_Namespace"),
        ({"resources": {"request": {"cpu": "1"}}}, "request"),
        ({"livenessProbe": {"periodSecond": 5}}, "periodSecond"),
    ],
)
def test_a_typo_in_values_fails_the_render(render: Render, values: dict[str, Any], complaint: str) -> None:
    with pytest.raises(subprocess.CalledProcessError) as failure:
        render(values)
    assert complaint in failure.value.stderr


def test_values_yaml_is_valid_under_its_schema_and_both_list_the_same_keys(render: Render) -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert render(values)  # helm validates the values against values.schema.json at every render

    def keys(tree: dict[str, Any], node: dict[str, Any], prefix: str = "") -> Iterator[str]:
        for key, value in tree.items():
            yield prefix + key
            sub = node.get("properties", {}).get(key, {})
            if isinstance(value, dict) and sub.get("additionalProperties") is False:
                yield from keys(value, sub, f"{prefix}{key}.")

    def schema_keys(node: dict[str, Any], prefix: str = "") -> Iterator[str]:
        for key, sub in node.get("properties", {}).items():
            yield prefix + key
            if sub.get("type") == "object" and sub.get("additionalProperties") is False:
                yield from schema_keys(sub, f"{prefix}{key}.")

    assert sorted(keys(values, schema)) == sorted(schema_keys(schema))


def test_the_schema_closes_every_object_except_kubernetes_pass_throughs() -> None:
    """Every object in values.schema.json refuses unknown keys, or is a map of strings, or is a Kubernetes
    object passed through to the pod spec (validated there by the API server and by kubernetes-validate)."""
    schema = json.loads((CHART / "values.schema.json").read_text())
    pass_through = {
        "affinity",
        "tolerations[]",
        "topologySpreadConstraints[]",
        "extraEnv[].valueFrom",
    }
    open_objects: list[str] = []

    def walk(node: dict[str, Any], path: str) -> None:
        if node.get("type") == "object":
            closed = node.get("additionalProperties") is False
            a_map = isinstance(node.get("additionalProperties"), dict)
            if not (closed or a_map) and path not in pass_through:
                open_objects.append(path)
        for key, sub in node.get("properties", {}).items():
            walk(sub, f"{path}.{key}" if path else key)
        if isinstance(node.get("items"), dict):
            walk(node["items"], f"{path}[]")

    walk(schema, "")
    assert open_objects == []
    assert schema["additionalProperties"] is False


# ------------------------------------------------------------------------------------------------------
# Replicas and peering


def test_several_replicas_without_peering_fail_with_a_clear_message(render: Render) -> None:
    with pytest.raises(subprocess.CalledProcessError) as failure:
        render({"replicas": 2})
    assert "replicas=2 needs peering.enabled=true" in failure.value.stderr


def test_peering_cluster_wide_installs_its_crds_and_one_cluster_peering(render: Render) -> None:
    docs = render(VALUE_SETS["peering-clusterwide"])
    deployment = one(docs, "Deployment")
    assert deployment["spec"]["replicas"] == 2
    assert deployment["spec"]["strategy"]["type"] == "RollingUpdate"
    assert env_of(docs)["OBSTOP_PEERING"] == "obstop-ob-stop-operator"
    pod_id = next(var for var in container(docs)["env"] if var["name"] == "POD_ID")
    assert pod_id["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    crds = {doc["metadata"]["name"]: doc for doc in find(docs, "CustomResourceDefinition")}
    assert set(crds) == {"clusterkopfpeerings.kopf.dev", "kopfpeerings.kopf.dev"}
    for crd in crds.values():
        version = crd["spec"]["versions"][0]
        assert (crd["spec"]["group"], version["name"]) == ("kopf.dev", "v1")
        assert version["schema"]["openAPIV3Schema"]["properties"]["status"][
            "x-kubernetes-preserve-unknown-fields"
        ]
    # The controller creates the peering object itself (no Helm hook, which Argo CD re-runs on every sync).
    assert find(docs, "ClusterKopfPeering") == [] and find(docs, "KopfPeering") == []
    assert not [d for d in docs if "helm.sh/hook" in (d["metadata"].get("annotations") or {})]


def test_peering_namespaced_names_the_peering_and_installs_no_crds(render: Render) -> None:
    docs = render(VALUE_SETS["peering-namespaced"])
    assert find(docs, "CustomResourceDefinition") == []  # installCRDs: false
    assert find(docs, "KopfPeering") == []
    assert env_of(docs)["OBSTOP_PEERING"] == "obstop-peers"


# ------------------------------------------------------------------------------------------------------
# RBAC: exactly what the controller calls, no wildcards


@pytest.mark.parametrize("value_set", sorted(VALUE_SETS))
def test_rbac_has_no_wildcards(render: Render, value_set: str) -> None:
    for doc in render(VALUE_SETS[value_set]):
        if doc["kind"] in ("Role", "ClusterRole"):
            for rule in doc["rules"]:
                for field in ("apiGroups", "resources", "verbs"):
                    assert "*" not in rule[field], f"{doc['kind']}/{doc['metadata']['name']}: {rule}"
                assert "resourceNames" not in rule and "nonResourceURLs" not in rule


def test_rbac_cluster_wide(render: Render) -> None:
    docs = render()
    assert rules(controller_role(docs)) == CRD_RULES | NAMESPACED_RULES
    assert find(docs, "Role") == []
    binding = one(docs, "ClusterRoleBinding")
    assert binding["roleRef"]["name"] == controller_role(docs)["metadata"]["name"]
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "obstop-ob-stop-operator", "namespace": NAMESPACE}
    ]
    assert "OBSTOP_NAMESPACES" not in env_of(docs)


def test_rbac_namespaced_grants_secrets_only_in_the_watched_namespaces(render: Render) -> None:
    docs = render(VALUE_SETS["namespaced"])
    # Cluster-wide only what Kopf must see across the cluster; secrets stay per namespace.
    assert rules(controller_role(docs)) == CRD_RULES | grants("list watch", "", "namespaces")
    roles = find(docs, "Role")
    assert sorted(role["metadata"]["namespace"] for role in roles) == ["team-a", "team-b"]
    for role in roles:
        assert rules(role) == NAMESPACED_RULES
    bindings = {b["metadata"]["namespace"]: b for b in find(docs, "RoleBinding")}
    assert sorted(bindings) == ["team-a", "team-b"]
    for binding in bindings.values():
        assert binding["roleRef"] == {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "Role",
            "name": "obstop-ob-stop-operator",
        }
        assert binding["subjects"][0]["namespace"] == NAMESPACE
    assert env_of(docs)["OBSTOP_NAMESPACES"] == "team-a,team-b"


def test_rbac_with_peering_adds_only_the_peering_resource_of_the_mode(render: Render) -> None:
    peer_verbs = "list watch patch create"
    cluster = render(VALUE_SETS["peering-clusterwide"])
    assert rules(controller_role(cluster)) == (
        CRD_RULES | NAMESPACED_RULES | grants(peer_verbs, "kopf.dev", "clusterkopfpeerings")
    )
    namespaced = render(VALUE_SETS["peering-namespaced"])
    assert rules(one(namespaced, "Role")) == NAMESPACED_RULES | grants(peer_verbs, "kopf.dev", "kopfpeerings")
    assert ("kopf.dev", "clusterkopfpeerings", "patch") not in rules(controller_role(namespaced))


USER_ROLE_LABELS = {
    "view": {"view", "edit", "admin"},
    "edit": {"edit", "admin"},
    "approve": {"admin"},  # editors request, admins approve
}


@pytest.mark.parametrize("value_set", ["defaults", "namespaced"])
def test_people_get_rights_on_requests_through_the_default_roles(render: Render, value_set: str) -> None:
    """view reads requests; edit and admin also create and delete them; nobody but the controller writes status,
    and these roles grant nothing else (no Secrets: edit has those already, view must not)."""
    docs = render(VALUE_SETS[value_set])
    roles = {
        d["metadata"]["name"].removeprefix("obstop-ob-stop-operator-"): d
        for d in find(docs, "ClusterRole")
        if d["metadata"]["name"] != "obstop-ob-stop-operator"
    }
    assert set(roles) == {"view", "edit", "approve"}
    for name, role in roles.items():
        labels = role["metadata"]["labels"]
        aggregated = {
            key.removeprefix("rbac.authorization.k8s.io/aggregate-to-")
            for key, value in labels.items()
            if key.startswith("rbac.authorization.k8s.io/aggregate-to-") and value == "true"
        }
        assert aggregated == USER_ROLE_LABELS[name], name
        assert "aggregationRule" not in role  # aggregated into the default roles, not aggregating
    group = "obshell.oceanbase.com"
    assert rules(roles["view"]) == grants(
        "get list watch", group, "obstoprequests", "obstoprequests/status", "obstopapprovals"
    )
    assert rules(roles["approve"]) == grants("create get list watch delete", group, "obstopapprovals")
    assert rules(roles["edit"]) == grants(
        "create update patch delete deletecollection", group, "obstoprequests"
    )
    # No binding: the default roles are bound by whoever grants view/edit/admin in a namespace.
    bound = {b["roleRef"]["name"] for b in find(docs, "ClusterRoleBinding") + find(docs, "RoleBinding")}
    assert bound <= {"obstop-ob-stop-operator"}


@pytest.mark.parametrize(
    "values",
    [{"rbac": {"aggregateToDefaultRoles": False}}, {"rbac": {"create": False}}],
    ids=["off", "no-rbac"],
)
def test_the_roles_for_people_can_be_left_out(render: Render, values: dict[str, Any]) -> None:
    names = [d["metadata"]["name"] for d in find(render(values), "ClusterRole")]
    assert names == (["obstop-ob-stop-operator"] if values["rbac"].get("create", True) else [])


def test_rbac_can_be_left_to_the_user(render: Render) -> None:
    kinds = {doc["kind"] for doc in render(VALUE_SETS["no-rbac-no-service"])}
    # The admission policy is not RBAC: it has a value of its own (approvalPolicy.create).
    assert kinds == {
        "ServiceAccount",
        "Deployment",
        "ValidatingAdmissionPolicy",
        "ValidatingAdmissionPolicyBinding",
    }
    no_policy = render({**VALUE_SETS["no-rbac-no-service"], "approvalPolicy": {"create": False}})
    assert {doc["kind"] for doc in no_policy} == {"ServiceAccount", "Deployment"}


# ------------------------------------------------------------------------------------------------------
# The controller's settings arrive intact


def test_rendered_environment_is_read_by_the_controller_as_configured(render: Render) -> None:
    values = {
        "watchNamespaces": ["team-a", "team-b"],
        "controller": {
            "logLevel": "DEBUG",
            "logFormat": "json",
            "pollMinSeconds": 0.5,
            "pollMaxSeconds": 7.5,
            "obshellTimeoutSeconds": 20,
            "retryInitialSeconds": 2,
            "retryMaxSeconds": 120,
            "lookupGraceSeconds": 3,
            "agentConcurrency": 8,
            "agentRate": 7.5,
            "stepsInFlight": 16,
            "stallSeconds": 12,
            "approvalPollSeconds": 2,
            "precheckMaxAgeSeconds": 60,
            "allowedAgentNetworks": ["10.0.0.0/8", "*.svc.cluster.local"],
            "port": 9090,
        },
        "peering": {"enabled": True, "name": "peers"},
    }
    docs = render(values)
    settings = Settings.from_env(env_of(docs))
    assert settings == Settings(
        namespaces=("team-a", "team-b"),
        log_level="DEBUG",
        log_format="json",
        poll_min_seconds=0.5,
        poll_max_seconds=7.5,
        obshell_timeout_seconds=20.0,
        retry_initial_seconds=2.0,
        retry_max_seconds=120.0,
        lookup_grace_seconds=3.0,
        agent_concurrency=8,
        agent_rate=7.5,
        steps_in_flight=16,
        stall_seconds=12.0,
        approval_poll_seconds=2.0,
        precheck_max_age_seconds=60.0,
        allowed_agent_networks=("10.0.0.0/8", "*.svc.cluster.local"),
        health_port=9090,
        peering="peers",
    )
    assert container(docs)["ports"] == [{"name": "http", "containerPort": 9090, "protocol": "TCP"}]


def test_every_controller_setting_is_reachable_from_values(render: Render) -> None:
    env = env_of(render())
    known = {f"OBSTOP_{f.name.upper()}" for f in fields(Settings)}
    assert set(env) - {"POD_ID"} <= known, "the chart sets a variable the controller does not read"
    # Set only when they apply (a list of namespaces, peering), or deliberately fixed. Never the peering
    # priority: the replicas of one Deployment would share it, and Kopf pauses all replicas of equal priority.
    unset = known - set(env)
    assert unset == {
        "OBSTOP_NAMESPACES",
        "OBSTOP_PEERING",
        "OBSTOP_PEERING_PRIORITY",
        "OBSTOP_ALLOWED_AGENT_NETWORKS",
        "OBSTOP_ANNOTATION_PREFIX",
        "OBSTOP_EXTRA",
    }
    assert Settings.from_env(env) == Settings()  # the chart's defaults are the controller's defaults


def test_extra_env_replaces_a_chart_variable_of_the_same_name(render: Render) -> None:
    """Each name once (Helm 4's server-side apply refuses duplicates); extraEnv's value wins, the rest follow."""
    env = container(render(VALUE_SETS["scheduling-and-env"]))["env"]
    names = [var["name"] for var in env]
    assert len(names) == len(set(names)), names
    assert names[-2:] == ["OBSTOP_LOG_LEVEL", "HTTPS_PROXY"]
    assert env_of(render(VALUE_SETS["scheduling-and-env"]))["OBSTOP_LOG_LEVEL"] == "DEBUG"


def test_scheduling_and_image_values_reach_the_pod(render: Render) -> None:
    values = VALUE_SETS["scheduling-and-env"]
    docs = render(values)
    pod = one(docs, "Deployment")["spec"]["template"]
    spec = pod["spec"]
    for key in ("priorityClassName", "nodeSelector", "tolerations", "affinity", "imagePullSecrets"):
        assert spec[key] == values[key]
    assert pod["metadata"]["annotations"] == values["podAnnotations"]
    assert pod["metadata"]["labels"]["team"] == "dba"
    assert container(docs)["resources"] == values["resources"]
    assert container(docs)["image"] == "registry.example.com/ob-stop-operator@sha256:" + "a" * 64
    assert one(docs, "ServiceAccount")["metadata"]["annotations"] == {"example.com/role": "obstop"}


# ------------------------------------------------------------------------------------------------------
# Pod hardening, probes, Service, ServiceMonitor, PDB


def test_pod_runs_hardened_as_the_images_user(render: Render) -> None:
    docs = render()
    pod = one(docs, "Deployment")["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 65532
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    ctx = container(docs)["securityContext"]
    assert ctx["runAsNonRoot"] is True
    assert ctx["runAsUser"] == 65532
    assert ctx["readOnlyRootFilesystem"] is True
    assert ctx["allowPrivilegeEscalation"] is False
    assert ctx["capabilities"] == {"drop": ["ALL"]}
    assert ctx["seccompProfile"] == {"type": "RuntimeDefault"}
    # A writable /tmp on the read-only root filesystem.
    assert {"name": "tmp", "mountPath": "/tmp"}  # noqa: S108 in container(docs)["volumeMounts"]
    assert next(v for v in pod["volumes"] if v["name"] == "tmp")["emptyDir"]


def test_on_openshift_the_platform_picks_the_user_and_the_rest_of_the_hardening_stays(render: Render) -> None:
    """restricted-v2 assigns runAsUser/fsGroup from the namespace's range and refuses any other value."""
    fixed, free = render(), render(VALUE_SETS["openshift"])
    ids = {"runAsUser", "runAsGroup", "fsGroup"}
    for docs in (fixed, free):
        assert container(docs)["securityContext"]["runAsNonRoot"] is True
    pod = one(free, "Deployment")["spec"]["template"]["spec"]
    assert not ids & set(pod["securityContext"]) and not ids & set(container(free)["securityContext"])
    # Nothing else changes: the same pod without the three user ids.
    fixed_pod = one(fixed, "Deployment")["spec"]["template"]["spec"]
    for ctx in (fixed_pod["securityContext"], fixed_pod["containers"][0]["securityContext"]):
        for key in ids:
            ctx.pop(key, None)
    assert fixed_pod == pod


def test_probes_and_service_use_the_controllers_port(render: Render) -> None:
    docs = render()
    ctr = container(docs)
    for probe in ("livenessProbe", "readinessProbe"):
        assert ctr[probe]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert ctr["ports"] == [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]
    service = one(docs, "Service")
    assert service["spec"]["ports"] == [
        {"name": "http-metrics", "port": 8080, "targetPort": "http", "protocol": "TCP"}
    ]
    pod_labels = one(docs, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()


def test_service_monitor_scrapes_the_metrics_port_and_pdb_keeps_drains_possible(render: Render) -> None:
    docs = render(VALUE_SETS["monitoring"])
    monitor = one(docs, "ServiceMonitor")
    assert monitor["metadata"]["labels"]["release"] == "prometheus"
    assert monitor["spec"]["endpoints"] == [
        {"port": "http-metrics", "path": "/metrics", "interval": "15s", "scrapeTimeout": "10s"}
    ]
    assert (
        monitor["spec"]["selector"]["matchLabels"].items()
        <= one(docs, "Service")["metadata"]["labels"].items()
    )
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": [NAMESPACE]}
    pdb = one(docs, "PodDisruptionBudget")
    assert pdb["spec"]["maxUnavailable"] == 1 and "minAvailable" not in pdb["spec"]
    min_pdb = one(render(VALUE_SETS["pdb-min-available"]), "PodDisruptionBudget")
    assert min_pdb["spec"]["minAvailable"] == 1 and "maxUnavailable" not in min_pdb["spec"]


@pytest.mark.parametrize(
    ("values", "complaint"),
    [
        ({"serviceMonitor": {"enabled": True}, "service": {"enabled": False}}, "needs service.enabled=true"),
        ({"podDisruptionBudget": {"enabled": True, "minAvailable": 1}}, "exactly one of minAvailable"),
        ({"podDisruptionBudget": {"enabled": True, "maxUnavailable": None}}, "exactly one of minAvailable"),
        (
            {"podDisruptionBudget": {"enabled": True, "minAvailable": 1, "maxUnavailable": None}},
            "minAvailable=1 with replicas=1 would block every node drain",
        ),
        (
            {
                "replicas": 2,
                "peering": {"enabled": True},
                "podDisruptionBudget": {"enabled": True, "minAvailable": "100%", "maxUnavailable": None},
            },
            "would block every node drain",
        ),
    ],
)
def test_contradictory_values_fail_the_render(render: Render, values: dict[str, Any], complaint: str) -> None:
    with pytest.raises(subprocess.CalledProcessError) as failure:
        render(values)
    assert complaint in failure.value.stderr


# ------------------------------------------------------------------------------------------------------
# CRDs: one source of truth, followed through the symlink by lint, template and package


def test_chart_crds_directory_is_a_link_to_deploy_crds() -> None:
    link = CHART / "crds"
    assert link.is_symlink()
    assert link.resolve() == (ROOT / "deploy" / "crds").resolve()


def test_template_include_crds_renders_the_crd_of_deploy_crds(render: Render) -> None:
    sources = [yaml.safe_load(p.read_text()) for p in sorted((ROOT / "deploy" / "crds").glob("*.yaml"))]
    rendered = [d for d in render(include_crds=True) if d["kind"] == "CustomResourceDefinition"]
    key = lambda d: d["metadata"]["name"]  # noqa: E731
    assert sorted(rendered, key=key) == sorted(sources, key=key) and len(sources) == 2


def test_packaged_chart_carries_the_crd_byte_for_byte(helm: Any, tmp_path: Path) -> None:
    helm("package", str(CHART), "--destination", str(tmp_path))
    (package,) = tmp_path.glob("ob-stop-operator-*.tgz")
    with tarfile.open(package) as tar:
        member = tar.extractfile(f"ob-stop-operator/crds/{CRD_FILE}")
        assert member is not None
        assert member.read() == (ROOT / "deploy" / "crds" / CRD_FILE).read_bytes()
        names = tar.getnames()
    assert "ob-stop-operator/values.schema.json" in names
    assert "ob-stop-operator/templates/NOTES.txt" in names


# ------------------------------------------------------------------------------------------------------
# NOTES.txt


def test_notes_tell_the_user_what_to_apply_next(helm: Any, tmp_path: Path) -> None:
    values = tmp_path / "values.yaml"
    values.write_text(json.dumps({"watchNamespaces": ["team-a"]}))
    out = helm("install", "obstop", str(CHART), "-n", NAMESPACE, "--dry-run=client", "--values", str(values))
    notes = out[out.index("NOTES:") :]
    assert "kubectl -n team-a create secret generic obshell-root --from-file=password=/dev/stdin" in notes
    assert "kubectl -n team-a apply -f stop.yaml" in notes
    assert "kubectl -n team-a get obstop -w" in notes
    assert (
        "helm show crds <chart> | kubectl apply --server-side --field-manager=helm --force-conflicts -f -"
        in notes
    )
    assert "deploy/crds" not in notes  # users of the packaged chart have no such folder
    assert "obshell.oceanbase.com/allowed-agents=" in notes  # the Secret says where its password may go
    # The example in the notes is the least destructive one (the same as examples/zone-immediate.yaml).
    lines = notes.splitlines()
    first = next(i for i, line in enumerate(lines) if "apiVersion: obshell" in line)
    last = next(i for i, line in enumerate(lines) if "and apply it" in line)
    example = yaml.safe_load(textwrap.dedent("\n".join(lines[first:last])))
    assert example == yaml.safe_load((ROOT / "examples" / "zone-immediate.yaml").read_text())


@pytest.mark.parametrize(("version", "accepted"), [("1.29.9", False), ("1.30.0", True), ("1.37.2", True)])
def test_the_chart_states_its_real_minimum_kubernetes(helm: Helm, version: str, accepted: bool) -> None:
    """The CRD needs 1.28's rule reason/fieldPath and 1.30's ratcheting: an older cluster is refused up front."""
    args = ("template", "minimum", str(CHART), "--kube-version", version)
    if accepted:
        assert "kind: Deployment" in helm(*args)
        return
    with pytest.raises(subprocess.CalledProcessError) as refused:
        helm(*args)
    assert "kubeVersion: >=1.30.0-0" in refused.value.stderr and version in refused.value.stderr


def test_a_service_monitor_needs_its_crd_in_the_cluster(helm: Helm) -> None:
    """Without the Prometheus Operator's CRD, the install would fail half-way on an unknown kind: it fails the
    render instead, saying what is missing."""
    args = ("template", "mon", str(CHART), "--set", "serviceMonitor.enabled=true")
    with pytest.raises(subprocess.CalledProcessError) as refused:
        helm(*args)
    assert "needs the Prometheus Operator's ServiceMonitor CRD" in refused.value.stderr
    assert "kind: ServiceMonitor" in helm(*args, "--api-versions", "monitoring.coreos.com/v1/ServiceMonitor")


# ------------------------------------------------------------------------------------------------------
# PrometheusRule: alert examples on the metrics the controller really exports


def exported_series() -> dict[str, set[str]]:
    """Every series name the controller's registry can expose, with its labels."""
    series: dict[str, set[str]] = {}
    for metric in vars(Metrics()).values():
        kind = getattr(metric, "_type", None)
        if kind is None:
            continue
        name, labels = metric._name, set(metric._labelnames)
        suffixes = {"counter": ["_total"], "gauge": [""], "histogram": ["_bucket", "_count", "_sum"]}[kind]
        for suffix in suffixes:
            series[name + suffix] = labels | ({"le"} if suffix == "_bucket" else set())
    return series


# Labels Prometheus adds to every series it scrapes through the ServiceMonitor.
TARGET_LABELS = {"job", "namespace", "service", "pod", "instance", "container", "endpoint"}


def alert_rules(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rule = one(docs, "PrometheusRule")
    return [r for group in rule["spec"]["groups"] for r in group["rules"]]


def test_prometheus_rule_uses_only_metrics_labels_and_phases_the_controller_exports(render: Render) -> None:
    series = exported_series()
    assert "obstop_requests" in series and "obstop_dag_duration_seconds_count" in series  # the table is read
    phases = {p.value for p in Phase}
    rules_ = alert_rules(render(VALUE_SETS["monitoring"]))
    assert {r["alert"] for r in rules_} == {
        "ObStopControllerAbsent",
        "ObStopRequestFailed",
        "ObStopRequestRetrying",
        "ObStopRequestUnfinished",
    }
    for rule in rules_:
        expr = rule["expr"]
        used = re.findall(r"\b(obstop_[a-z_]+)(\{[^}]*\})?", expr)
        assert used, f"{rule['alert']} uses no metric of the controller"
        for name, selector in used:
            assert name in series, (
                f"{rule['alert']}: {name} is not exported (operator/obstop/controller/metrics.py)"
            )
            for label, _op, value in re.findall(r'(\w+)\s*(=~|!~|!=|=)\s*"([^"]*)"', selector):
                assert label in series[name] | TARGET_LABELS, f"{rule['alert']}: {name} has no label {label}"
                if label == "phase":
                    assert set(value.split("|")) <= phases, f"{rule['alert']}: {value} is not a phase"
        for grouped in re.findall(r"by \(([^)]*)\)", expr):
            for label in (g.strip() for g in grouped.split(",")):
                assert any(label in series[n] for n, _ in used), (
                    f"{rule['alert']}: no label {label} to group by"
                )
        assert rule["labels"]["severity"] == "warning"
        assert "docs/" in rule["annotations"]["description"]


def test_prometheus_rule_selects_the_series_the_service_monitor_scrapes(render: Render) -> None:
    docs = render(VALUE_SETS["monitoring"])
    service = one(docs, "Service")["metadata"]["name"]  # the ServiceMonitor's job label
    rule = one(docs, "PrometheusRule")
    assert rule["metadata"]["labels"]["release"] == "prometheus"
    for alert in alert_rules(docs):
        assert f'job="{service}", namespace="{NAMESPACE}"' in alert["expr"], alert["alert"]


def test_prometheus_rule_is_off_by_default_and_needs_its_crd(helm: Helm, render: Render) -> None:
    assert find(render(), "PrometheusRule") == []
    args = ("template", "mon", str(CHART), "--set", "metrics.prometheusRule.enabled=true")
    with pytest.raises(subprocess.CalledProcessError) as refused:
        helm(*args)
    assert "needs the Prometheus Operator's PrometheusRule CRD" in refused.value.stderr
    assert "kind: PrometheusRule" in helm(*args, "--api-versions", "monitoring.coreos.com/v1/PrometheusRule")
