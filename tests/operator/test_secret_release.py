"""The root password goes only where its Secret's owner allows (docs/security.md), end to end: a real
`obstop run` on a real kube-apiserver, the obshell simulator, and a rogue "agent" on loopback that counts every
TCP connection it is offered. Each refused request must fail with its reason, and the rogue must receive
nothing at all: no key fetch, no connection. Nothing is mocked.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from obstop.testing.controlplane import ControlPlane
from obstop.testing.stack import ALLOWED_AGENTS, Stack, stop_request

pytestmark = pytest.mark.timeout(180)

MALLORY = "mallory"  # may create and read ObStopRequests in the namespace, nothing else


class Rogue:
    """A TCP listener on loopback that accepts and counts connections (and answers nothing)."""

    def __init__(self) -> None:
        self._sock = socket.create_server(("127.0.0.1", 0))
        self._sock.settimeout(0.2)
        self.port = self._sock.getsockname()[1]
        self.address = f"127.0.0.1:{self.port}"
        self.connections = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            self.connections += 1
            conn.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._sock.close()


@pytest.fixture(scope="module")
def control_plane_with_mallory() -> Iterator[ControlPlane]:
    with ControlPlane(users={MALLORY: ["team-a"]}) as cp:
        yield cp


@pytest.fixture(scope="module")
def stack(control_plane_with_mallory: ControlPlane) -> Iterator[Stack]:
    with Stack(clusters=2, stage_seconds=0.2, control_plane=control_plane_with_mallory) as s:
        s.start_controller()
        yield s


@pytest.fixture
def rogue() -> Iterator[Rogue]:
    r = Rogue()
    yield r
    r.close()


def refused(stack: Stack, name: str, reason: str) -> dict[str, Any]:
    status = stack.wait_for(name, timeout=60)
    assert status["phase"] == "Failed", status
    assert status["reason"] == reason, status
    return status


def test_an_unannotated_secret_is_never_used(stack: Stack, rogue: Rogue) -> None:
    stack.put_secret(stack.namespace, "plain", {"password": stack.password}, annotations={})
    stack.create(stop_request("unannotated", rogue.address, force=True, secret="plain"))
    status = refused(stack, "unannotated", "SecretNotAllowed")
    assert ALLOWED_AGENTS in status["message"] and f"{stack.namespace}/plain" in status["message"]
    assert rogue.address in status["message"]
    assert rogue.connections == 0


def test_an_address_the_secret_does_not_allow(stack: Stack, rogue: Rogue) -> None:
    stack.create(stop_request("elsewhere", rogue.address, force=True))  # the stack's Secret: its agents only
    status = refused(stack, "elsewhere", "AgentNotAllowed")
    assert f"does not allow agent {rogue.address}" in status["message"]
    assert rogue.connections == 0


def test_a_dns_name_is_not_judged_by_a_network(stack: Stack, rogue: Rogue) -> None:
    """The Secret allows 127.0.0.0/8; `localhost` resolves there, but a name could resolve anywhere by the time
    of the connection: it must be allowed as a name."""
    stack.put_secret(
        stack.namespace,
        "loopback",
        {"password": stack.password},
        annotations={ALLOWED_AGENTS: "127.0.0.0/8:*"},
    )
    stack.create(stop_request("by-name", f"localhost:{rogue.port}", force=True, secret="loopback"))
    refused(stack, "by-name", "AgentNotAllowed")
    assert rogue.connections == 0


def test_another_namespaces_agents_are_not_allowed(stack: Stack, rogue: Rogue) -> None:
    stack.put_secret(
        stack.namespace,
        "team-a-root",
        {"password": stack.password},
        annotations={ALLOWED_AGENTS: "*.team-a.svc.cluster.local"},
    )
    stack.create(
        stop_request("team-b", "agent.team-b.svc.cluster.local:2886", force=True, secret="team-a-root")
    )
    status = refused(stack, "team-b", "AgentNotAllowed")
    assert "agent.team-b.svc.cluster.local:2886" in status["message"]


def test_an_unrelated_key_of_an_allowed_secret_is_not_released(stack: Stack, rogue: Rogue) -> None:
    """The owner allows this Secret to go to the rogue's address, but only its `password` key: a request naming
    the Secret's other key gets nothing."""
    stack.put_secret(
        stack.namespace,
        "two-keys",
        {"password": stack.password, "cloud-token": "tok-" + stack.password},
        annotations={ALLOWED_AGENTS: rogue.address},
    )
    stack.create(stop_request("other-key", rogue.address, force=True, secret="two-keys", key="cloud-token"))
    status = refused(stack, "other-key", "SecretNotAllowed")
    assert "'cloud-token'" in status["message"]
    assert rogue.connections == 0


def test_a_ca_secret_is_covered_by_the_same_rule(stack: Stack, rogue: Rogue) -> None:
    stack.put_secret(
        stack.namespace,
        "https-root",
        {"password": stack.password},
        annotations={ALLOWED_AGENTS: rogue.address},
    )
    stack.put_secret(stack.namespace, "any-ca", {"ca.crt": "not used"}, annotations={})
    manifest = stop_request("https-ca", f"https://{rogue.address}", force=True, secret="https-root")
    manifest["spec"]["obshell"]["caSecretRef"] = {"name": "any-ca"}
    stack.create(manifest)
    status = refused(stack, "https-ca", "SecretNotAllowed")
    assert f"{stack.namespace}/any-ca" in status["message"]
    assert rogue.connections == 0


def test_removing_the_annotation_stops_the_next_calls(stack: Stack) -> None:
    """Mid-DAG, the owner withdraws the Secret: the controller makes no further call to the agent."""
    agent = stack.agent(1)
    stack.put_secret(
        stack.namespace, "withdrawn", {"password": stack.password}, annotations={ALLOWED_AGENTS: agent}
    )
    stack.sim.clusters[1].stage_seconds = 1.0
    stack.create(stop_request("withdrawn", agent, terminate=True, secret="withdrawn"))
    stack.wait_for("withdrawn", lambda s: s.get("phase") == "Running", timeout=60)
    stack.put_secret(stack.namespace, "withdrawn", {"password": stack.password}, annotations={})
    status = refused(stack, "withdrawn", "SecretNotAllowed")
    calls_then = len(stack.sim.load()[agent]["times"])
    time.sleep(3)  # what the controller would have polled in that time
    assert len(stack.sim.load()[agent]["times"]) == calls_then
    assert status["dag"]["id"]  # the DAG it had started is still named for a person to follow up


def test_the_controller_wide_networks_restrict_further(control_plane: ControlPlane, rogue: Rogue) -> None:
    with Stack(clusters=1, stage_seconds=0.1, control_plane=control_plane) as s:
        s.put_secret(
            s.namespace, "rogue-ok", {"password": s.password}, annotations={ALLOWED_AGENTS: rogue.address}
        )
        s.start_controller(env={"OBSTOP_ALLOWED_AGENT_NETWORKS": "10.0.0.0/8"})
        s.create(stop_request("outside", rogue.address, force=True, secret="rogue-ok"))
        status = refused(s, "outside", "AgentNotAllowed")
        assert "OBSTOP_ALLOWED_AGENT_NETWORKS" in status["message"]
        assert rogue.connections == 0
        s.stop_controller()
        s.start_controller(env={"OBSTOP_ALLOWED_AGENT_NETWORKS": "127.0.0.0/8"})
        s.create(stop_request("inside", s.agent(0), force=True))
        assert s.wait_for("inside", timeout=60)["phase"] == "Succeeded"


def test_a_user_who_may_only_create_requests_learns_no_secret(
    stack: Stack, control_plane_with_mallory: ControlPlane, rogue: Rogue
) -> None:
    """Mallory may create ObStopRequests in the namespace, not read its Secrets. Whatever Secret, key and
    address she names, the rogue agent she controls is never contacted, and nothing she can read (the requests'
    status, the events) carries a Secret's value."""
    cp, ns = control_plane_with_mallory, stack.namespace
    with cp.http() as admin:
        role = {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": {"name": "requester"},
            "rules": [
                {
                    "apiGroups": ["obshell.oceanbase.com"],
                    "resources": ["obstoprequests"],
                    "verbs": ["create", "get"],
                },
                {"apiGroups": [""], "resources": ["events"], "verbs": ["list"]},
            ],
        }
        binding = {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": "requester"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "requester"},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": MALLORY}],
        }
        for kind, body in (("roles", role), ("rolebindings", binding)):
            created = admin.post(
                f"{cp.url}/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/{kind}", json=body
            )
            assert created.status_code == 201, created.text
    stack.put_secret(ns, "plain-2", {"password": stack.password}, annotations={})
    tries = [("obshell-root", "password"), ("plain-2", "password"), ("obshell-root", "token")]
    base = f"{cp.url}/apis/obshell.oceanbase.com/v1alpha1/namespaces/{ns}/obstoprequests"
    with cp.http(user=MALLORY) as mallory:
        assert mallory.get(f"{cp.url}/api/v1/namespaces/{ns}/secrets/obshell-root").status_code == 403
        for index, (secret, key) in enumerate(tries):
            for address in (rogue.address, f"http://{rogue.address}", f"localhost:{rogue.port}"):
                name = f"mallory-{index}-{abs(hash(address)) % 10_000}"
                body = stop_request(name, address, force=True, secret=secret, key=key)
                assert mallory.post(base, json=body).status_code == 201
                status = stack.wait_for(name, timeout=60)
                assert status["phase"] == "Failed" and status["reason"] in (
                    "SecretNotAllowed",
                    "AgentNotAllowed",
                )
                seen = mallory.get(f"{base}/{name}").text + _events(mallory, cp, ns)
                assert stack.password not in seen
    assert rogue.connections == 0


def _events(client: httpx.Client, cp: ControlPlane, ns: str) -> str:
    return client.get(f"{cp.url}/api/v1/namespaces/{ns}/events").text
