"""The emulated Kubernetes API server (`obstop.testing.kube`), over real HTTP on loopback: the `kubernetes`
client, raw HTTP (httpx) and the pinned kubectl binary talk to a server running in its own thread. Nothing is
mocked; where the project's CRD validator is not used, a stand-in admission (defined here) shows the server's
part of admission: calling it and surfacing its refusal."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from obstop.testing.kube import ApiError, ApiServerThread, patching, selectors

pytestmark = pytest.mark.timeout(60)

KUBECTL = Path(__file__).resolve().parents[2] / ".tools" / "bin" / "kubectl"
GROUP, VERSION, PLURAL = "example.com", "v1", "widgets"
CRD: dict[str, Any] = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": f"{PLURAL}.{GROUP}"},
    "spec": {
        "group": GROUP,
        "scope": "Namespaced",
        "names": {
            "plural": PLURAL,
            "singular": "widget",
            "kind": "Widget",
            "shortNames": ["wdg"],
            "categories": ["toys"],
        },
        "versions": [
            {
                "name": VERSION,
                "served": True,
                "storage": True,
                "subresources": {"status": {}},
                "schema": {
                    "openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
                },
            }
        ],
    },
}
needs_kubectl = pytest.mark.skipif(not KUBECTL.exists(), reason="the pinned kubectl is not installed")


class NegativeSizeRefused:
    """A stand-in for `obstop.testing.admission.CrdValidator`: refuses a negative spec.size, defaults color."""

    def __init__(self, crd: dict[str, Any]) -> None:
        self.kind = crd["spec"]["names"]["kind"]

    def admit(
        self, obj: dict[str, Any], old: dict[str, Any] | None = None, subresource: str | None = None
    ) -> dict[str, Any]:
        if obj.get("spec", {}).get("size", 0) < 0:
            name = obj["metadata"]["name"]
            raise ApiError(422, "Invalid", f'{self.kind} "{name}" is invalid: spec.size: must be >= 0')
        obj.setdefault("spec", {}).setdefault("color", "red")
        return obj


@pytest.fixture
def api() -> Iterator[ApiServerThread]:
    with ApiServerThread(admission=NegativeSizeRefused) as server:
        server.apply(CRD)
        yield server


@pytest.fixture
def http(api: ApiServerThread) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=api.url, headers={"User-Agent": "unit-test-http"}, timeout=10) as client:
        yield client


@pytest.fixture
def k8s(api: ApiServerThread) -> Iterator[Any]:
    import kubernetes  # the configuration is explicit: nothing is read from KUBECONFIG

    configuration = kubernetes.client.Configuration()
    configuration.host = api.url
    with kubernetes.client.ApiClient(configuration) as client:
        client.user_agent = "unit-test-client"
        yield client


def widget(name: str, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "Widget", "metadata": {"name": name}, "spec": spec}


def path(name: str = "", namespace: str = "default", sub: str = "") -> str:
    url = f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/{PLURAL}"
    return url + (f"/{name}" if name else "") + (f"/{sub}" if sub else "")


MERGE = {"Content-Type": "application/merge-patch+json"}
JSON_PATCH = {"Content-Type": "application/json-patch+json"}


def watch_lines(http: httpx.Client, url: str, params: dict[str, str], count: int) -> list[dict[str, Any]]:
    """The first `count` events of a watch (the stream is then closed client-side)."""
    events: list[dict[str, Any]] = []
    with http.stream("GET", url, params={"watch": "true", **params}) as response:
        assert response.status_code == 200
        assert response.headers["content-type"] == "application/json"
        for line in response.iter_lines():
            if line:
                events.append(json.loads(line))
            if len(events) >= count:
                break
    return events


# Server-side metadata.


def test_create_sets_server_metadata_and_namespace_from_url(http: httpx.Client) -> None:
    body = widget("w1", size=1)
    body["metadata"]["uid"] = "client-made-up"
    created = http.post(path(), json=body)
    assert created.status_code == 201
    meta = created.json()["metadata"]
    assert meta["namespace"] == "default"
    assert meta["uid"] != "client-made-up" and len(meta["uid"]) == 36
    assert meta["generation"] == 1
    assert meta["creationTimestamp"].endswith("Z")
    assert isinstance(meta["resourceVersion"], str) and int(meta["resourceVersion"]) > 0
    assert created.json()["spec"] == {"size": 1, "color": "red"}  # the admission's default landed
    second = http.post(path(), json=widget("w2"))
    assert int(second.json()["metadata"]["resourceVersion"]) > int(meta["resourceVersion"])


def test_generate_name_makes_distinct_names(http: httpx.Client) -> None:
    body = {"metadata": {"generateName": "ev-"}, "message": "hello"}
    names = {
        http.post("/api/v1/namespaces/default/events", json=body).json()["metadata"]["name"] for _ in range(3)
    }
    assert len(names) == 3 and all(name.startswith("ev-") and len(name) == 8 for name in names)


def test_duplicates_conflict_and_missing_objects_are_status_bodies(http: httpx.Client) -> None:
    assert http.post(path(), json=widget("w1")).status_code == 201
    duplicate = http.post(path(), json=widget("w1"))
    assert duplicate.status_code == 409
    assert duplicate.json()["reason"] == "AlreadyExists"
    missing = http.get(path("nope"))
    assert missing.status_code == 404
    assert missing.json() == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": f'{PLURAL}.{GROUP} "nope" not found',
        "reason": "NotFound",
        "details": {"kind": PLURAL, "name": "nope", "group": GROUP},
        "code": 404,
    }


def test_creating_in_a_missing_namespace_is_not_found(http: httpx.Client) -> None:
    response = http.post(path(namespace="ghost"), json=widget("w1"))
    assert response.status_code == 404
    assert response.json()["details"]["kind"] == "namespaces"


def test_lists_have_kind_and_resource_version_and_pages(http: httpx.Client) -> None:
    for index in range(3):
        http.post(path(), json=widget(f"w{index}"))
    first = http.get(path(), params={"limit": "2"}).json()
    assert first["kind"] == "WidgetList" and first["apiVersion"] == f"{GROUP}/{VERSION}"
    assert int(first["metadata"]["resourceVersion"]) >= 3
    assert [item["metadata"]["name"] for item in first["items"]] == ["w0", "w1"]
    rest = http.get(path(), params={"limit": "2", "continue": first["metadata"]["continue"]}).json()
    assert [item["metadata"]["name"] for item in rest["items"]] == ["w2"]
    assert "continue" not in rest["metadata"]


# Optimistic concurrency.


def test_stale_resource_version_conflicts_on_update_and_merge_patch(http: httpx.Client) -> None:
    created = http.post(path(), json=widget("w1", size=1)).json()
    stale = created["metadata"]["resourceVersion"]
    assert http.patch(path("w1"), json={"spec": {"size": 2}}, headers=MERGE).status_code == 200
    replaced = {**created, "spec": {"size": 3}}
    conflict = http.put(path("w1"), json=replaced)
    assert conflict.status_code == 409 and conflict.json()["reason"] == "Conflict"
    patch = {"metadata": {"resourceVersion": stale}, "spec": {"size": 4}}
    assert http.patch(path("w1"), json=patch, headers=MERGE).status_code == 409
    assert http.get(path("w1")).json()["spec"]["size"] == 2


def test_json_patch_test_failure_is_422_and_success_applies(http: httpx.Client) -> None:
    created = http.post(path(), json=widget("w1")).json()
    rv = created["metadata"]["resourceVersion"]
    stale_test = [
        {"op": "test", "path": "/metadata/resourceVersion", "value": "0"},
        {"op": "add", "path": "/metadata/finalizers", "value": ["x/y"]},
    ]
    refused = http.patch(path("w1"), json=stale_test, headers=JSON_PATCH)
    assert refused.status_code == 422
    stale_test[0]["value"] = rv
    accepted = http.patch(path("w1"), json=stale_test, headers=JSON_PATCH)
    assert accepted.status_code == 200
    assert accepted.json()["metadata"]["finalizers"] == ["x/y"]


def test_strategic_merge_patch_is_refused_for_custom_resources(http: httpx.Client) -> None:
    http.post(path(), json=widget("w1"))
    headers = {"Content-Type": "application/strategic-merge-patch+json"}
    assert http.patch(path("w1"), json={"spec": {"size": 1}}, headers=headers).status_code == 415


# Generation and the status subresource.


def test_generation_bumps_only_on_spec_changes(http: httpx.Client) -> None:
    http.post(path(), json=widget("w1", size=1))
    http.patch(path("w1"), json={"metadata": {"labels": {"a": "b"}}}, headers=MERGE)
    http.patch(path("w1", sub="status"), json={"status": {"phase": "Busy"}}, headers=MERGE)
    assert http.get(path("w1")).json()["metadata"]["generation"] == 1
    http.patch(path("w1"), json={"spec": {"size": 2}}, headers=MERGE)
    assert http.get(path("w1")).json()["metadata"]["generation"] == 2


def test_status_subresource_changes_only_status_and_main_ignores_status(http: httpx.Client) -> None:
    body = widget("w1", size=1)
    body["status"] = {"phase": "Forged"}
    created = http.post(path(), json=body).json()
    assert "status" not in created  # status is set through /status only
    status_write = {"spec": {"size": 99}, "metadata": {"labels": {"x": "y"}}, "status": {"phase": "Busy"}}
    written = http.patch(path("w1", sub="status"), json=status_write, headers=MERGE).json()
    assert written["status"] == {"phase": "Busy"}
    assert written["spec"]["size"] == 1 and "labels" not in written["metadata"]
    assert int(written["metadata"]["resourceVersion"]) > int(created["metadata"]["resourceVersion"])
    main_write = http.patch(
        path("w1"), json={"status": {"phase": "Forged"}, "spec": {"size": 2}}, headers=MERGE
    )
    assert main_write.json()["status"] == {"phase": "Busy"} and main_write.json()["spec"]["size"] == 2
    current = http.get(path("w1")).json()
    current["status"] = {"phase": "Forged-by-put"}
    assert http.put(path("w1"), json=current).json()["status"] == {"phase": "Busy"}


def test_a_no_op_patch_makes_no_new_revision(http: httpx.Client) -> None:
    created = http.post(path(), json=widget("w1", size=1)).json()
    same = http.patch(path("w1"), json={"spec": {"size": 1}}, headers=MERGE).json()
    assert same["metadata"]["resourceVersion"] == created["metadata"]["resourceVersion"]


# Finalizers and deletion.


def test_finalizers_delay_deletion_until_removed(http: httpx.Client) -> None:
    body = widget("w1")
    body["metadata"]["finalizers"] = ["example.com/hold"]
    created = http.post(path(), json=body).json()
    deleted = http.delete(path("w1"))
    assert deleted.status_code == 200
    meta = http.get(path("w1")).json()["metadata"]
    assert meta["deletionTimestamp"] and meta["deletionGracePeriodSeconds"] == 0
    added = http.patch(
        path("w1"), json={"metadata": {"finalizers": ["example.com/hold", "new/one"]}}, headers=MERGE
    )
    assert added.status_code == 422  # no new finalizers on a deleting object
    released = http.patch(path("w1"), json={"metadata": {"finalizers": None}}, headers=MERGE)
    assert released.status_code == 200
    assert http.get(path("w1")).status_code == 404
    events = watch_lines(http, path(), {"resourceVersion": created["metadata"]["resourceVersion"]}, 2)
    assert [event["type"] for event in events] == ["MODIFIED", "DELETED"]


def test_deleting_a_namespace_deletes_its_objects(http: httpx.Client) -> None:
    http.post("/api/v1/namespaces", json={"metadata": {"name": "doomed"}})
    http.post(path(namespace="doomed"), json=widget("w1"))
    assert http.delete("/api/v1/namespaces/doomed").status_code == 200
    assert http.get(path("w1", namespace="doomed")).status_code == 404
    assert http.get("/api/v1/namespaces/doomed").status_code == 404


def test_delete_preconditions_conflict(http: httpx.Client) -> None:
    http.post(path(), json=widget("w1"))
    response = http.request("DELETE", path("w1"), json={"preconditions": {"resourceVersion": "1"}})
    assert response.status_code == 409
    assert http.get(path("w1")).status_code == 200


# Watches.


def test_watch_resumes_after_the_given_resource_version(http: httpx.Client) -> None:
    first = http.post(path(), json=widget("w1")).json()
    http.post(path(), json=widget("w2"))
    http.patch(path("w1"), json={"spec": {"size": 5}}, headers=MERGE)
    events = watch_lines(http, path(), {"resourceVersion": first["metadata"]["resourceVersion"]}, 2)
    assert [(event["type"], event["object"]["metadata"]["name"]) for event in events] == [
        ("ADDED", "w2"),
        ("MODIFIED", "w1"),
    ]


def test_watch_without_resource_version_starts_with_current_state(http: httpx.Client) -> None:
    http.post(path(), json=widget("w1"))
    events = watch_lines(http, path(), {}, 1)
    assert events[0]["type"] == "ADDED" and events[0]["object"]["metadata"]["name"] == "w1"


def test_watch_from_a_compacted_resource_version_is_gone(api: ApiServerThread, http: httpx.Client) -> None:
    first = http.post(path(), json=widget("w1")).json()
    http.post(path(), json=widget("w2"))
    api.compact_history()
    events = watch_lines(http, path(), {"resourceVersion": first["metadata"]["resourceVersion"]}, 1)
    assert events[0]["type"] == "ERROR" and events[0]["object"]["code"] == 410


def test_watch_list_sends_initial_events_then_the_end_bookmark(http: httpx.Client) -> None:
    http.post(path(), json=widget("w1"))
    http.post(path(), json=widget("w2"))
    params = {
        "sendInitialEvents": "true",
        "resourceVersionMatch": "NotOlderThan",
        "allowWatchBookmarks": "true",
    }
    events = watch_lines(http, path(), params, 3)
    assert [event["type"] for event in events] == ["ADDED", "ADDED", "BOOKMARK"]
    bookmark = events[2]["object"]
    assert bookmark["metadata"]["annotations"] == {"k8s.io/initial-events-end": "true"}
    assert int(bookmark["metadata"]["resourceVersion"]) >= 2


def test_watch_ends_after_timeout_seconds_with_a_bookmark(http: httpx.Client) -> None:
    created = http.post(path(), json=widget("w1")).json()
    rv = created["metadata"]["resourceVersion"]
    params = {"watch": "true", "resourceVersion": rv, "timeoutSeconds": "1", "allowWatchBookmarks": "true"}
    with http.stream("GET", path(), params=params) as response:
        lines = [json.loads(line) for line in response.iter_lines() if line]
    assert [line["type"] for line in lines] == ["BOOKMARK"]


def test_label_and_field_selectors_filter_lists_and_watches(http: httpx.Client) -> None:
    for name, tier in (("a", "front"), ("b", "back"), ("c", "front")):
        body = widget(name)
        body["metadata"]["labels"] = {"tier": tier}
        http.post(path(), json=body)
    listed = http.get(path(), params={"labelSelector": "tier=front"}).json()
    assert [item["metadata"]["name"] for item in listed["items"]] == ["a", "c"]
    listed = http.get(path(), params={"labelSelector": "tier in (back),tier!=front"}).json()
    assert [item["metadata"]["name"] for item in listed["items"]] == ["b"]
    listed = http.get(path(), params={"fieldSelector": "metadata.name=c"}).json()
    assert [item["metadata"]["name"] for item in listed["items"]] == ["c"]
    assert http.get(path(), params={"labelSelector": "tier in front"}).status_code == 400
    rv = listed["metadata"]["resourceVersion"]
    http.patch(path("a"), json={"metadata": {"labels": {"tier": "back"}}}, headers=MERGE)
    http.patch(path("b"), json={"spec": {"size": 1}}, headers=MERGE)
    events = watch_lines(http, path(), {"resourceVersion": rv, "labelSelector": "tier=back"}, 2)
    assert [(event["type"], event["object"]["metadata"]["name"]) for event in events] == [
        ("ADDED", "a"),  # entered the selection
        ("MODIFIED", "b"),
    ]


# CRDs and discovery.


def test_crd_is_served_with_discovery_short_names_and_status(http: httpx.Client) -> None:
    crd = http.get(f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{PLURAL}.{GROUP}").json()
    assert {c["type"]: c["status"] for c in crd["status"]["conditions"]}["Established"] == "True"
    groups = http.get("/apis").json()
    assert {"name": GROUP, "versions": [{"groupVersion": f"{GROUP}/v1", "version": "v1"}]}.items() <= next(
        group for group in groups["groups"] if group["name"] == GROUP
    ).items()
    resources = http.get(f"/apis/{GROUP}/{VERSION}").json()
    assert resources["groupVersion"] == f"{GROUP}/{VERSION}"
    by_name = {entry["name"]: entry for entry in resources["resources"]}
    assert by_name[PLURAL]["shortNames"] == ["wdg"] and by_name[PLURAL]["categories"] == ["toys"]
    assert by_name[PLURAL]["namespaced"] is True and by_name[PLURAL]["kind"] == "Widget"
    assert f"{PLURAL}/status" in by_name
    assert http.get("/api/v1").json()["groupVersion"] == "v1"


def test_deleting_a_crd_stops_serving_it(http: httpx.Client) -> None:
    http.post(path(), json=widget("w1"))
    http.delete(f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{PLURAL}.{GROUP}")
    assert http.get(path()).status_code == 404
    assert http.get(f"/apis/{GROUP}/{VERSION}").status_code == 404


def test_builtin_resources_are_plain_storage(http: httpx.Client) -> None:
    lease = {"metadata": {"name": "leader"}, "spec": {"holderIdentity": "me"}}
    assert http.post("/apis/coordination.k8s.io/v1/namespaces/default/leases", json=lease).status_code == 201
    secret = {"metadata": {"name": "pw"}, "data": {"password": "c2VjcmV0"}}
    assert http.post("/api/v1/namespaces/default/secrets", json=secret).status_code == 201
    event = {"metadata": {"generateName": "x-"}, "reason": "Tested", "regarding": {"name": "w1"}}
    assert http.post("/apis/events.k8s.io/v1/namespaces/default/events", json=event).status_code == 201
    assert http.get("/api/v1/namespaces/default/secrets/pw").json()["data"] == {"password": "c2VjcmV0"}


# Admission.


def test_admission_refusal_is_a_422_and_nothing_is_stored(http: httpx.Client) -> None:
    refused = http.post(path(), json=widget("w1", size=-1))
    assert refused.status_code == 422 and "spec.size" in refused.json()["message"]
    assert http.get(path("w1")).status_code == 404
    http.post(path(), json=widget("w1", size=1))
    assert http.patch(path("w1"), json={"spec": {"size": -5}}, headers=MERGE).status_code == 422


# Calls and faults.


def test_calls_are_recorded_with_user_agent(api: ApiServerThread, http: httpx.Client, k8s: Any) -> None:
    import kubernetes

    api.clear_calls()
    http.post(path(), json=widget("w1"))
    http.patch(path("w1", sub="status"), json={"status": {"phase": "x"}}, headers=MERGE)
    kubernetes.client.CoreV1Api(k8s).list_namespaced_secret("default")
    mine = api.calls(user_agent="unit-test-http")
    assert [(call.verb, call.resource, call.subresource, call.namespace, call.name) for call in mine] == [
        ("create", PLURAL, None, "default", None),
        ("patch", PLURAL, "status", "default", "w1"),
    ]
    assert mine[1].rbac_resource == f"{PLURAL}/status" and mine[1].group == GROUP
    client_calls = api.calls(user_agent="unit-test-client")
    assert [(call.verb, call.group, call.resource) for call in client_calls] == [("list", "", "secrets")]
    api.clear_calls()
    assert api.calls() == []


def test_injected_faults_answer_matching_calls_then_run_out(api: ApiServerThread, http: httpx.Client) -> None:
    http.post(path(), json=widget("w1"))
    api.inject(409, verb="patch", resource=PLURAL, subresource="status", times=1)
    api.inject(500, verb="get", resource=PLURAL, times=2)
    assert http.patch(path("w1"), json={"spec": {"size": 1}}, headers=MERGE).status_code == 200
    failed = http.patch(path("w1", sub="status"), json={"status": {"a": 1}}, headers=MERGE)
    assert failed.status_code == 409 and failed.json()["reason"] == "Conflict"
    assert http.patch(path("w1", sub="status"), json={"status": {"a": 1}}, headers=MERGE).status_code == 200
    assert [http.get(path("w1")).status_code for _ in range(3)] == [500, 500, 200]
    assert [call.code for call in api.calls(verb="get")] == [500, 500, 200]


def test_cut_watches_ends_open_streams(api: ApiServerThread, http: httpx.Client) -> None:
    http.post(path(), json=widget("w1"))
    with http.stream("GET", path(), params={"watch": "true"}) as response:
        lines = response.iter_lines()
        assert json.loads(next(lines))["type"] == "ADDED"
        assert api.cut_watches() == 1
        assert [line for line in lines if line] == []  # the stream ended


# The kubernetes client.


def test_kubernetes_client_reads_and_writes(k8s: Any) -> None:
    import kubernetes

    core = kubernetes.client.CoreV1Api(k8s)
    core.create_namespace({"metadata": {"name": "team"}})
    core.create_namespaced_config_map(
        "team", {"metadata": {"name": "cm", "labels": {"a": "1"}}, "data": {"k": "v"}}
    )
    listed = core.list_namespaced_config_map("team", label_selector="a=1")
    assert [item.metadata.name for item in listed.items] == ["cm"]
    custom = kubernetes.client.CustomObjectsApi(k8s)
    custom.create_namespaced_custom_object(GROUP, VERSION, "team", PLURAL, widget("w1", size=2))
    custom.patch_namespaced_custom_object_status(
        GROUP, VERSION, "team", PLURAL, "w1", {"status": {"ok": True}}
    )
    got = custom.get_namespaced_custom_object(GROUP, VERSION, "team", PLURAL, "w1")
    assert got["status"] == {"ok": True} and got["spec"]["size"] == 2
    with pytest.raises(kubernetes.client.ApiException) as refused:
        custom.create_namespaced_custom_object(GROUP, VERSION, "team", PLURAL, widget("w1"))
    assert refused.value.status == 409


# kubectl.


def kubectl(api: ApiServerThread, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(api.kubeconfig.parent)}
    command = [str(KUBECTL), "--kubeconfig", str(api.kubeconfig), *args]
    return subprocess.run(
        command, capture_output=True, text=True, input=stdin, env=env, timeout=30, check=False
    )


@needs_kubectl
def test_kubectl_lifecycle(api: ApiServerThread) -> None:
    def ok(*args: str, stdin: str | None = None) -> str:
        result = kubectl(api, *args, stdin=stdin)
        assert result.returncode == 0, result.stderr
        return result.stdout

    ok("apply", "--validate=false", "-f", "-", stdin=json.dumps(widget("w1", size=1)))
    ok("apply", "--validate=false", "-f", "-", stdin=json.dumps(widget("w1", size=2)))
    assert json.loads(ok("get", "wdg", "w1", "-o", "json"))["spec"]["size"] == 2
    assert "w1" in ok("get", "toys")
    assert "Size:" in ok("describe", "widget", "w1")
    ok("patch", "widget", "w1", "--subresource=status", "--type=merge", "-p", '{"status":{"phase":"Done"}}')
    ok("wait", "--for=jsonpath={.status.phase}=Done", "widget/w1", "--timeout=10s")
    ok("create", "--validate=false", "-f", "-", stdin=json.dumps(widget("w2")))
    ok("delete", "widget", "w1", "w2")
    assert "No resources found" in kubectl(api, "get", "widgets").stderr


@needs_kubectl
def test_kubectl_get_watch_streams_changes(api: ApiServerThread, http: httpx.Client) -> None:
    http.post(path(), json=widget("w1"))
    command = [str(KUBECTL), "--kubeconfig", str(api.kubeconfig), "get", "widgets", "-w", "-o", "name"]
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(api.kubeconfig.parent)}
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    ) as proc:
        try:
            assert proc.stdout is not None
            assert proc.stdout.readline().strip() == "widget.example.com/w1"
            http.post(path(), json=widget("w2"))
            assert proc.stdout.readline().strip() == "widget.example.com/w2"
        finally:
            proc.terminate()


@needs_kubectl
def test_kubectl_shows_admission_refusal(api: ApiServerThread) -> None:
    result = kubectl(api, "apply", "--validate=false", "-f", "-", stdin=json.dumps(widget("w1", size=-1)))
    assert result.returncode != 0
    assert "spec.size: must be >= 0" in result.stderr


@needs_kubectl
def test_kubectl_wait_for_a_deletion_held_by_a_finalizer(api: ApiServerThread, http: httpx.Client) -> None:
    body = widget("w1")
    body["metadata"]["finalizers"] = ["example.com/hold"]
    http.post(path(), json=body)
    assert kubectl(api, "delete", "widget", "w1", "--wait=false").returncode == 0
    assert http.get(path("w1")).json()["metadata"]["deletionTimestamp"]
    http.patch(path("w1"), json={"metadata": {"finalizers": []}}, headers=MERGE)
    result = kubectl(api, "wait", "--for=delete", "widget/w1", "--timeout=10s")
    assert result.returncode == 0, result.stderr


# As a process.


@needs_kubectl
def test_runs_as_a_process_and_prints_ready(tmp_path: Path) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    command = [sys.executable, "-m", "obstop.testing.kube", "--port", "0", "--kubeconfig", str(kubeconfig)]
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True) as proc:
        try:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            assert line.startswith("ready http://127.0.0.1:")
            env = {"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path)}
            result = subprocess.run(
                [str(KUBECTL), "--kubeconfig", str(kubeconfig), "get", "ns", "default", "-o", "name"],
                capture_output=True, text=True, env=env, timeout=30, check=False,
            )  # fmt: skip
            assert result.stdout.strip() == "namespace/default", result.stderr
        finally:
            proc.terminate()
            assert proc.wait(timeout=10) == 0


# The pure parts.


def test_json_patch_operations() -> None:
    doc = {"a": {"b": [1, 2]}, "c": "x"}
    patched = patching.json_patch(
        doc,
        [
            {"op": "add", "path": "/a/b/-", "value": 3},
            {"op": "replace", "path": "/c", "value": "y"},
            {"op": "move", "from": "/c", "path": "/d"},
            {"op": "copy", "from": "/d", "path": "/e~1f"},
            {"op": "remove", "path": "/a/b/0"},
        ],
    )
    assert patched == {"a": {"b": [2, 3]}, "d": "y", "e/f": "y"}
    assert doc == {"a": {"b": [1, 2]}, "c": "x"}
    with pytest.raises(patching.PatchError):
        patching.json_patch(doc, [{"op": "replace", "path": "/missing", "value": 1}])


def test_merge_patch_removes_nulls_and_replaces_lists() -> None:
    assert patching.merge_patch({"a": {"b": 1, "c": 2}, "l": [1]}, {"a": {"b": None}, "l": [2]}) == {
        "a": {"c": 2},
        "l": [2],
    }


@pytest.mark.parametrize(
    ("selector", "labels", "expected"),
    [
        ("a=b", {"a": "b"}, True),
        ("a==b", {"a": "c"}, False),
        ("a!=b", {}, True),
        ("a in (b, c)", {"a": "c"}, True),
        ("a notin (b,c),d", {"a": "x", "d": ""}, True),
        ("!a", {"a": "b"}, False),
        ("example.com/tier=x", {"example.com/tier": "x"}, True),
    ],
)
def test_label_selectors(selector: str, labels: dict[str, str], expected: bool) -> None:
    requirements = selectors.parse_label_selector(selector)
    assert selectors.matches({"metadata": {"labels": labels}}, requirements) is expected


@needs_kubectl
def test_the_project_crd_validator_is_called_by_default() -> None:
    """Without a stand-in, the server admits custom resources with `obstop.testing.admission.CrdValidator`."""
    pytest.importorskip("obstop.testing.admission")
    crd = json.loads(json.dumps(CRD))
    crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"] = {
        "type": "object",
        "properties": {
            "spec": {"type": "object", "properties": {"size": {"type": "integer", "minimum": 0}}},
            "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
        },
    }
    with ApiServerThread() as api:
        api.apply(crd)
        refused = kubectl(
            api, "apply", "--validate=false", "-f", "-", stdin=json.dumps(widget("w1", size=-1))
        )
        assert refused.returncode != 0 and "spec.size" in refused.stderr
        accepted = kubectl(
            api, "apply", "--validate=false", "-f", "-", stdin=json.dumps(widget("w2", size=1, junk=1))
        )
        assert accepted.returncode == 0, accepted.stderr
        stored = api.get(f"{GROUP}/{VERSION}", "Widget", "w2", "default")
        assert stored is not None and stored["spec"] == {"size": 1}  # pruned
