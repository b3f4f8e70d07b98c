"""A tiny Kopf operator of this file's own (a toy `Gadget` CRD, not the product's) run with
`kopf.testing.KopfRunner` against the emulated API server (`obstop.testing.kube.ApiServerThread`), over real
HTTP on loopback: the whole lifecycle a Kopf 1.45 operator depends on. Nothing is mocked. The operator logs in
through its own login handler (the server's URL and a token), so nothing depends on KUBECONFIG."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import httpx
import kopf
import pytest
from kopf.testing import KopfRunner

from obstop.testing.kube import ApiServerThread

pytestmark = pytest.mark.timeout(90)

T = TypeVar("T")
GROUP, VERSION, PLURAL = "toys.example.org", "v1", "gadgets"
PATH = f"/apis/{GROUP}/{VERSION}/namespaces/default/{PLURAL}"
MERGE = {"Content-Type": "application/merge-patch+json"}
CRD: dict[str, Any] = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": f"{PLURAL}.{GROUP}"},
    "spec": {
        "group": GROUP,
        "scope": "Namespaced",
        "names": {"plural": PLURAL, "singular": "gadget", "kind": "Gadget"},
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
PEERING_CRD: dict[str, Any] = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "kopfpeerings.kopf.dev"},
    "spec": {
        "group": "kopf.dev",
        "scope": "Namespaced",
        "names": {"plural": "kopfpeerings", "singular": "kopfpeering", "kind": "KopfPeering"},
        "versions": [
            {
                "name": "v1",
                "served": True,
                "storage": True,
                "schema": {
                    "openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
                },
            }
        ],
    },
}


def eventually(probe: Callable[[], T | None], timeout: float = 20.0) -> T:
    """Poll until `probe` returns something truthy (a bound on waiting, not a timing assertion)."""
    deadline = time.monotonic() + timeout
    while True:
        result = probe()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError("the condition did not hold in time")
        time.sleep(0.05)


class ToyOperator:
    """The handlers, in their own registry; what they saw is kept for the assertions."""

    def __init__(self, url: str) -> None:
        self.registry = kopf.OperatorRegistry()
        self.deleted: list[str] = []
        self.updated = threading.Event()
        self.settings = kopf.OperatorSettings()
        self.settings.watching.server_timeout = 5
        self.settings.posting.level = logging.INFO
        self.settings.posting.loggers = True  # handler log lines become events too (off by default in 1.45)
        self.settings.persistence.finalizer = "toys.example.org/finalizer"
        resource = (GROUP, VERSION, PLURAL)

        @kopf.on.login(registry=self.registry)
        def login(**_: Any) -> kopf.ConnectionInfo:
            return kopf.ConnectionInfo(server=url, token="any-token-will-do")

        @kopf.on.create(*resource, id="created", registry=self.registry)
        def created(body: kopf.Body, patch: kopf.Patch, logger: logging.Logger, **_: Any) -> dict[str, Any]:
            patch.status["phase"] = "Created"
            kopf.info(body, reason="Built", message="the gadget is built")
            logger.info("created")
            return {"size": body.spec.get("size")}

        @kopf.on.update(*resource, id="resized", field="spec.size", registry=self.registry)
        def resized(new: Any, patch: kopf.Patch, **_: Any) -> None:
            patch.status["size"] = new
            self.updated.set()

        @kopf.on.delete(*resource, id="deleted", registry=self.registry)
        def deleted(name: str, **_: Any) -> None:
            self.deleted.append(name)

    def run(self, *args: str) -> KopfRunner:
        return KopfRunner(
            ["run", "--namespace=default", *args], registry=self.registry, settings=self.settings, timeout=60
        )


@pytest.fixture
def api() -> Iterator[ApiServerThread]:
    with ApiServerThread() as server:
        server.apply(CRD)
        yield server


@pytest.fixture
def http(api: ApiServerThread) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=api.url, headers={"User-Agent": "kopf-test-client"}, timeout=10) as client:
        yield client


def gadget(http: httpx.Client, name: str) -> dict[str, Any] | None:
    response = http.get(f"{PATH}/{name}")
    return response.json() if response.status_code == 200 else None


def test_a_kopf_operator_runs_the_whole_lifecycle(api: ApiServerThread, http: httpx.Client) -> None:
    operator = ToyOperator(api.url)
    with operator.run("--standalone") as runner:
        body = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "Gadget",
            "metadata": {"name": "g1"},
            "spec": {"size": 1},
        }
        assert http.post(PATH, json=body).status_code == 201

        # Create: the handler ran, its status patch and result landed, the finalizer was added.
        done = eventually(lambda: (g := gadget(http, "g1")) and g.get("status", {}).get("created") and g)
        assert done["status"]["phase"] == "Created"
        assert done["status"]["created"] == {"size": 1}
        assert "toys.example.org/finalizer" in done["metadata"]["finalizers"]

        # Update: a spec change reaches the update handler.
        assert http.patch(f"{PATH}/g1", json={"spec": {"size": 2}}, headers=MERGE).status_code == 200
        assert operator.updated.wait(20)
        eventually(lambda: (g := gadget(http, "g1")) and g.get("status", {}).get("size") == 2)

        # Events: the explicit one and the handler's log line, both posted (with generateName).
        def events() -> list[dict[str, Any]]:
            selector = {"fieldSelector": "involvedObject.name=g1"}
            return http.get("/api/v1/namespaces/default/events", params=selector).json()["items"]

        posted = eventually(lambda: (found := events()) and len(found) >= 2 and found)
        assert "the gadget is built" in {event["message"] for event in posted}
        assert len({event["metadata"]["name"] for event in posted}) == len(posted)

        # Delete: the delete handler runs, releases the finalizer, and the object goes.
        assert http.delete(f"{PATH}/g1").status_code == 200
        eventually(lambda: gadget(http, "g1") is None)
        assert operator.deleted == ["g1"]

    assert runner.exit_code == 0, runner.output
    assert runner.exception is None

    # What the operator called, told apart from this test's own calls by the User-Agent.
    kopf_calls = api.calls(user_agent="kopf/")
    assert all(call.code < 500 for call in kopf_calls), [c for c in kopf_calls if c.code >= 500]
    verbs = {(call.verb, call.rbac_resource) for call in kopf_calls}
    assert {("watch", PLURAL), ("patch", PLURAL), ("create", "events")} <= verbs
    assert not api.calls(user_agent="kopf/", resource="gadgets", verb="create")


def test_kopf_survives_a_failed_patch_and_cut_watches(api: ApiServerThread, http: httpx.Client) -> None:
    operator = ToyOperator(api.url)
    with operator.run("--standalone"):
        body = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "Gadget",
            "metadata": {"name": "g2"},
            "spec": {"size": 1},
        }
        http.post(PATH, json=body)
        eventually(lambda: (g := gadget(http, "g2")) and g.get("status", {}).get("created"))
        api.cut_watches()
        api.inject(500, verb="patch", resource=PLURAL, user_agent="kopf/", times=1)
        http.patch(f"{PATH}/g2", json={"spec": {"size": 3}}, headers=MERGE)
        eventually(lambda: (g := gadget(http, "g2")) and g.get("status", {}).get("size") == 3)
        assert [call.code for call in api.calls(user_agent="kopf/", verb="patch")].count(500) == 1
        http.delete(f"{PATH}/g2")
        eventually(lambda: gadget(http, "g2") is None)


def test_kopf_peering_works_once_its_crd_exists(api: ApiServerThread, http: httpx.Client) -> None:
    api.apply(PEERING_CRD)
    api.apply(
        {
            "apiVersion": "kopf.dev/v1",
            "kind": "KopfPeering",
            "metadata": {"name": "toys", "namespace": "default"},
        }
    )
    operator = ToyOperator(api.url)
    with operator.run("--peering=toys"):
        peering = "/apis/kopf.dev/v1/namespaces/default/kopfpeerings/toys"
        eventually(lambda: http.get(peering).json().get("status"))
    assert api.calls(user_agent="kopf/", resource="kopfpeerings", verb="patch")
