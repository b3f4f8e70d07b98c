"""The ObStopRequest admission matrix, judged by a real kube-apiserver (v1.37, etcd behind it).

The CRD is deploy/crds' file, installed on the session's control plane. Every example is sent over HTTPS as a
server-side dry-run (`dryRun=All`: the whole admission chain runs, the OpenAPI schema, defaults, pruning and
the CEL rules, and nothing is stored); a refusal must be the server's own 422 Status, naming the field and the
rule. Updates (the immutability rule, status writes) go to real stored objects. The CRD itself is judged too:
variants with a broken rule or a missing bound are refused by the server. Nothing is mocked or emulated.
"""

from __future__ import annotations

import base64
import copy
import ipaddress
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from obstop.obshell.address import InvalidAddress, parse_endpoint, split_host_port
from obstop.testing.controlplane import ControlPlane
from obstop.testing.stack import approval_crd_path, crd_path, minimal_request
from obstop.testing.waiting import wait_until

ROOT = Path(__file__).resolve().parents[2]
CRD_PATH = crd_path()  # deploy/crds' file (the one Stack installs; $OBSTOP_CRD overrides both)
APPROVAL_CRD_PATH = approval_crd_path()
EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))
GROUP, VERSION, PLURAL = "obshell.oceanbase.com", "v1alpha1", "obstoprequests"
CRDS = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"

IMMUTABLE = "spec is immutable: create a new ObStopRequest for a different stop"
NOT_CHECKED = (
    "Invalid value: null: some validation rules were not checked because the object was invalid; "
    "correct the existing errors to complete validation"
)
SERVER_TARGETS = "SERVER targets must be obshell agent addresses"
ZONE_TARGETS = "ZONE targets must be zone names: 1 to 128 letters, digits, '_' or '-'"
ADDRESS_FORM = "the address must be host[:port] (port 1-65535, default 2886)"
GLOBAL_NEEDS_MODE = (
    "a GLOBAL stop needs force: true or terminate: true "
    "(obshell refuses to stop every observer without one of them)"
)
COST_EXCEEDED = "estimated rule cost exceeds budget"
pytestmark = pytest.mark.timeout(180)


# --- the server -----------------------------------------------------------------------------------------------


def _check(response: httpx.Response, *codes: int) -> dict[str, Any]:
    assert response.status_code in codes, f"{response.status_code}: {response.text}"
    body: dict[str, Any] = response.json()
    return body


def install_crd(client: httpx.Client, url: str, crd: dict[str, Any], namespace: str) -> None:
    """Create (or replace) a CRD, then wait until the server serves its resource in `namespace`."""
    name = crd["metadata"]["name"]
    created = client.post(f"{url}{CRDS}", json=crd)
    if created.status_code == 409:
        current = _check(client.get(f"{url}{CRDS}/{name}"), 200)
        crd = {
            **crd,
            "metadata": {**crd["metadata"], "resourceVersion": current["metadata"]["resourceVersion"]},
        }
        _check(client.put(f"{url}{CRDS}/{name}", json=crd), 200)
    else:
        _check(created, 201)
    group, plural = crd["spec"]["group"], crd["spec"]["names"]["plural"]
    version = crd["spec"]["versions"][0]["name"]
    listing = f"{url}/apis/{group}/{version}/namespaces/{namespace}/{plural}"
    # The server needs a moment before it serves a new CRD.
    wait_until(lambda: client.get(listing).status_code == 200, 30, f"{name} served", interval=0.05)


@dataclass
class Api:
    """ObStopRequests in one namespace of the real server, over one keep-alive HTTPS client."""

    client: httpx.Client
    url: str
    namespace: str

    @property
    def base(self) -> str:
        return f"{self.url}/apis/{GROUP}/{VERSION}/namespaces/{self.namespace}/{PLURAL}"

    def create(self, obj: dict[str, Any], *, dry_run: bool = True) -> httpx.Response:
        return self.client.post(self.base, json=obj, params={"dryRun": "All"} if dry_run else None)

    def update(self, obj: dict[str, Any], *, status: bool = False, dry_run: bool = True) -> httpx.Response:
        path = f"{self.base}/{obj['metadata']['name']}" + ("/status" if status else "")
        return self.client.put(path, json=obj, params={"dryRun": "All"} if dry_run else None)

    def merge_patch(self, name: str, patch: dict[str, Any]) -> httpx.Response:
        """A dry-run JSON merge patch (what `kubectl patch --type merge` sends)."""
        headers = {"Content-Type": "application/merge-patch+json"}
        return self.client.patch(f"{self.base}/{name}", json=patch, headers=headers, params={"dryRun": "All"})

    def get(self, name: str) -> dict[str, Any]:
        return _check(self.client.get(f"{self.base}/{name}"), 200)

    def admit(self, obj: dict[str, Any]) -> dict[str, Any]:
        """What the server would store for a create (dry-run): the object, defaulted and pruned."""
        return _check(self.create(obj), 201)

    def store(self, obj: dict[str, Any]) -> dict[str, Any]:
        """Really create `obj` under a fresh name; the stored object."""
        obj = copy.deepcopy(obj)
        obj["metadata"]["name"] = f"stored-{secrets.token_hex(4)}"
        return _check(self.create(obj, dry_run=False), 201)


@pytest.fixture(scope="module")
def api(control_plane: ControlPlane) -> Iterator[Api]:
    namespace = f"obstop-{secrets.token_hex(4)}"
    with control_plane.http(timeout=30) as client:
        ns = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}
        _check(client.post(f"{control_plane.url}/api/v1/namespaces", json=ns), 201)
        install_crd(client, control_plane.url, yaml.safe_load(CRD_PATH.read_text()), namespace)
        install_crd(client, control_plane.url, yaml.safe_load(APPROVAL_CRD_PATH.read_text()), namespace)
        yield Api(client, control_plane.url, namespace)


def refusal(response: httpx.Response) -> list[dict[str, str]]:
    """The causes of a 422 Invalid; each also appears, as `field: message`, in the Status message."""
    body = _check(response, 422)
    assert body["reason"] == "Invalid", body
    causes: list[dict[str, str]] = body["details"]["causes"]
    for cause in causes:
        assert f"{cause['field']}: {cause['message']}" in body["message"], (cause, body["message"])
    return causes


# --- the requests -------------------------------------------------------------------------------------------


def request(**spec: Any) -> dict[str, Any]:
    """A valid ZONE stop named `stop`, with top-level spec keys replaced by `spec`."""
    return minimal_request("stop", **spec)


def with_address(address: str) -> dict[str, Any]:
    return request(obshell={"address": address, "passwordSecretRef": {"name": "obshell-root"}})


def server_stop(*targets: Any, **spec: Any) -> dict[str, Any]:
    return request(scope={"type": "SERVER", "target": list(targets)}, force=True, **spec)


def zone_stop(*targets: Any) -> dict[str, Any]:
    return request(scope={"type": "ZONE", "target": list(targets)})


def global_stop(**spec: Any) -> dict[str, Any]:
    return request(scope={"type": "GLOBAL"}, **spec)


def without(path: str) -> dict[str, Any]:
    obj = request()
    *parents, last = path.split(".")
    node = obj
    for part in parents:
        node = node[part]
    del node[last]
    return obj


# (id, object, field of the cause, text the cause's message must contain): the server's own words.
INVALID: list[tuple[str, dict[str, Any], str, str]] = [
    ("unknown-scope-type", request(scope={"type": "CLUSTER", "target": []}), "spec.scope.type",
     'Unsupported value: "CLUSTER": supported values: "GLOBAL", "ZONE", "SERVER"'),
    ("lowercase-scope-type", request(scope={"type": "zone", "target": ["z1"]}), "spec.scope.type",
     'Unsupported value: "zone"'),
    ("force-not-bool", global_stop(force="yes"), "spec.force",
     'Invalid value: "string": spec.force in body must be of type boolean: "string"'),
    ("target-not-list", request(scope={"type": "ZONE", "target": "zone1"}), "spec.scope.target",
     'spec.scope.target in body must be of type array: "string"'),
    ("target-item-not-string", zone_stop(7), "spec.scope.target[0]", 'must be of type string: "integer"'),
    ("zone-empty-targets", zone_stop(), "spec.scope.target",
     "Required value: a ZONE or SERVER stop needs at least one target"),
    ("server-no-targets", request(scope={"type": "SERVER"}, force=True), "spec.scope.target",
     "Required value: a ZONE or SERVER stop needs at least one target"),
    ("duplicate-zones", zone_stop("zone1", "zone2", "zone1"), "spec.scope.target[2]", 'Duplicate value: "zone1"'),
    ("duplicate-servers", server_stop("10.0.0.2:2886", "10.0.0.2:2886"), "spec.scope.target[1]",
     'Duplicate value: "10.0.0.2:2886"'),
    ("empty-zone-name", zone_stop(""), "spec.scope.target[0]", "should be at least 1 chars long"),
    ("zone-name-with-space", zone_stop("zone 1"), "spec.scope.target", ZONE_TARGETS),
    ("zone-name-with-dot", zone_stop("zone.1"), "spec.scope.target", ZONE_TARGETS),
    ("zone-name-too-long", zone_stop("z" * 129), "spec.scope.target[0]", "Too long: may not be more than 128 bytes"),
    ("ipv4-octet-256", server_stop("10.0.0.256:2886"), "spec.scope.target", SERVER_TARGETS),
    ("ipv4-three-octets", server_stop("10.0.1:2886"), "spec.scope.target", SERVER_TARGETS),
    ("ipv4-leading-zero", server_stop("10.0.0.01"), "spec.scope.target", SERVER_TARGETS),
    ("port-zero", server_stop("10.0.0.2:0"), "spec.scope.target", SERVER_TARGETS),
    ("port-65536", server_stop("10.0.0.2:65536"), "spec.scope.target", SERVER_TARGETS),
    ("port-empty", server_stop("10.0.0.2:"), "spec.scope.target", SERVER_TARGETS),
    ("ipv6-without-brackets", server_stop("fd00::2:2886"), "spec.scope.target", SERVER_TARGETS),
    ("ipv6-bad-group", server_stop("[fd00::g1]:2886"), "spec.scope.target", SERVER_TARGETS),
    ("ipv6-two-gaps", server_stop("[fd00::1::2]:2886"), "spec.scope.target", SERVER_TARGETS),
    ("server-by-dns-name", server_stop("obs2.example.com:2886"), "spec.scope.target", SERVER_TARGETS),
    ("too-many-targets", server_stop(*(f"10.0.{i // 250}.{i % 250}" for i in range(257))), "spec.scope.target",
     "Too many: 257: must have at most 256 items"),
    ("global-without-force-or-terminate", global_stop(), "spec", GLOBAL_NEEDS_MODE),
    ("global-explicitly-neither", global_stop(force=False, terminate=False), "spec", GLOBAL_NEEDS_MODE),
    ("force-and-terminate", server_stop("10.0.0.2", terminate=True), "spec",
     "force and terminate cannot both be true"),
    ("global-with-targets", request(scope={"type": "GLOBAL", "target": ["zone1"]}, force=True), "spec.scope.target",
     "a GLOBAL stop takes no targets (obshell would silently ignore them)"),
    ("dag-id-letters", request(forcePassDag=["2abc"]), "spec.forcePassDag[0]",
     "spec.forcePassDag[0] in body should match '^[1-5][0-9]{1,60}$'"),
    ("dag-id-unknown-kind", request(forcePassDag=["61234"]), "spec.forcePassDag[0]", 'Invalid value: "61234"'),
    ("dag-id-too-short", request(forcePassDag=["1"]), "spec.forcePassDag[0]", 'Invalid value: "1": '),
    ("dag-id-number", request(forcePassDag=[21234]), "spec.forcePassDag[0]", 'must be of type string: "integer"'),
    ("dag-id-too-long", request(forcePassDag=["1" + "0" * 61]), "spec.forcePassDag[0]",
     "Too long: may not be more than 61 bytes"),
    ("dag-ids-duplicate", request(forcePassDag=["11", "12", "11"]), "spec.forcePassDag[2]", 'Duplicate value: "11"'),
    ("too-many-dag-ids", request(forcePassDag=[f"1{i}" for i in range(65)]), "spec.forcePassDag",
     "Too many: 65: must have at most 64 items"),
    ("missing-spec", without("spec"), "spec", "Required value"),
    ("missing-scope", without("spec.scope"), "spec.scope", "Required value"),
    ("missing-scope-type", without("spec.scope.type"), "spec.scope.type", "Required value"),
    ("missing-address", without("spec.obshell.address"), "spec.obshell.address", "Required value"),
    ("missing-secret-ref", without("spec.obshell.passwordSecretRef"), "spec.obshell.passwordSecretRef",
     "Required value"),
    ("missing-secret-name", without("spec.obshell.passwordSecretRef.name"), "spec.obshell.passwordSecretRef.name",
     "Required value"),
    ("secret-name-not-dns", request(obshell={"address": "h", "passwordSecretRef": {"name": "Obshell_Root"}}),
     "spec.obshell.passwordSecretRef.name", 'Invalid value: "Obshell_Root": '),
    ("secret-key-with-slash",
     request(obshell={"address": "h", "passwordSecretRef": {"name": "s", "key": "a/b"}}),
     "spec.obshell.passwordSecretRef.key", "spec.obshell.passwordSecretRef.key in body should match '^[-._a-zA-Z0-9]+$'"),
    ("ca-secret-without-name", request(obshell={"address": "https://h", "passwordSecretRef": {"name": "s"},
                                                "caSecretRef": {"key": "ca.crt"}}),
     "spec.obshell.caSecretRef.name", "Required value"),
    ("address-empty", with_address(""), "spec.obshell.address", "should be at least 1 chars long"),
    ("address-too-long", with_address("a" * 513), "spec.obshell.address", "Too long: may not be more than 512 bytes"),
    ("address-ftp-scheme", with_address("ftp://obshell:2886"), "spec.obshell.address",
     'Invalid value: "ftp://obshell:2886": a URL address must start with http:// or https://'),
    ("address-url-with-path", with_address("http://obshell:2886/api/v1"), "spec.obshell.address",
     "a URL address may not have a path, query, fragment or user part"),
    ("address-url-with-query", with_address("https://obshell?x=1"), "spec.obshell.address",
     'Invalid value: "https://obshell?x=1": a URL address may not have a path, query'),
    ("address-url-with-user", with_address("https://root@obshell:2886"), "spec.obshell.address",
     'Invalid value: "https://root@obshell:2886": a URL address may not have a path, query'),
    ("address-bad-ipv4", with_address("999.1.1.1:2886"), "spec.obshell.address",
     "the host is not a valid IPv4 address"),
    ("address-ipv4-short", with_address("http://10.0.1"), "spec.obshell.address",
     'Invalid value: "http://10.0.1": the host is not a valid IPv4 address'),
    ("address-port-out-of-range", with_address("10.0.0.1:99999"), "spec.obshell.address", ADDRESS_FORM),
    ("address-ipv6-without-brackets", with_address("fd00::1"), "spec.obshell.address", ADDRESS_FORM),
    ("address-with-space", with_address("obshell host:2886"), "spec.obshell.address", ADDRESS_FORM),
    ("address-label-starts-with-dash", with_address("-obshell:2886"), "spec.obshell.address", ADDRESS_FORM),
    ("address-host-over-253", with_address(".".join(["a" * 63] * 4) + ":2886"), "spec.obshell.address",
     "the host name may not be longer than 253 characters"),
    ("deadline-zero", request(activeDeadlineSeconds=0), "spec.activeDeadlineSeconds",
     "Invalid value: 0: spec.activeDeadlineSeconds in body should be greater than or equal to 1"),
    ("deadline-string", request(activeDeadlineSeconds="60"), "spec.activeDeadlineSeconds",
     'must be of type integer: "string"'),
    ("deadline-fraction", request(activeDeadlineSeconds=1.5), "spec.activeDeadlineSeconds",
     'spec.activeDeadlineSeconds in body must be of type int64: "float64"'),
]  # fmt: skip


@pytest.mark.parametrize(
    ("obj", "field", "text"), [case[1:] for case in INVALID], ids=[c[0] for c in INVALID]
)
def test_invalid_request_is_refused_with_its_own_message(
    api: Api, obj: dict[str, Any], field: str, text: str
) -> None:
    causes = refusal(api.create(obj))
    assert any(c["field"] == field and text in c["message"] for c in causes), causes


def test_the_matrix_is_big_and_every_case_has_a_distinct_name() -> None:
    assert len(INVALID) >= 30
    assert len({case[0] for case in INVALID}) == len(INVALID)


def test_the_refusal_is_kube_apiservers_422_status(api: Api) -> None:
    response = api.create(global_stop())
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert body["kind"] == "Status" and body["apiVersion"] == "v1"
    assert body["code"] == 422 and body["reason"] == "Invalid" and body["status"] == "Failure"
    # A CEL rule on an object names no value: `Invalid value: <message>`.
    expected = f"Invalid value: {GLOBAL_NEEDS_MODE}"
    assert body["message"] == f'ObStopRequest.obshell.oceanbase.com "stop" is invalid: spec: {expected}'
    details = body["details"]
    assert (details["group"], details["kind"], details["name"]) == (GROUP, "ObStopRequest", "stop")
    assert details["causes"] == [{"reason": "FieldValueInvalid", "message": expected, "field": "spec"}]


def test_every_violation_is_listed_at_once(api: Api) -> None:
    obj = request(scope={"type": "GLOBAL", "target": ["z1"]}, force=True, terminate=True)
    obj["spec"]["obshell"]["address"] = "gopher://x"
    response = api.create(obj)
    causes = refusal(response)
    messages = "\n".join(c["message"] for c in causes)
    assert "force and terminate cannot both be true" in messages
    assert "a GLOBAL stop takes no targets" in messages
    assert 'Invalid value: "gopher://x": a URL address must start with http:// or https://' in messages
    assert len(causes) >= 3
    # Several causes are shown as one bracketed list, as kubectl prints it.
    assert response.json()["message"].startswith('ObStopRequest.obshell.oceanbase.com "stop" is invalid: [')


def test_schema_errors_that_block_cel_say_so_and_cel_is_not_run(api: Api) -> None:
    # force/terminate both "true" but as strings: a type error, so the force-and-terminate rule is not run.
    causes = refusal(api.create(global_stop(force="true", terminate="true")))
    # The schema errors come in no fixed order (the server walks Go maps); the note that CEL was skipped is last.
    *schema_errors, last = [c["field"] for c in causes]
    assert sorted(schema_errors) == ["spec.force", "spec.terminate"] and last == "<nil>"
    assert causes[-1]["message"] == NOT_CHECKED
    assert all("cannot both be true" not in c["message"] for c in causes)


def test_pattern_and_length_violations_do_not_block_cel(api: Api) -> None:
    causes = refusal(api.create(request(forcePassDag=["x"], scope={"type": "GLOBAL"})))
    assert any(GLOBAL_NEEDS_MODE in c["message"] for c in causes)
    assert all(c["message"] != NOT_CHECKED for c in causes)
    # minLength does not block CEL either: an empty zone name breaks the length and the zone-name rule.
    causes = refusal(api.create(zone_stop("")))
    assert {c["field"] for c in causes} == {"spec.scope.target[0]", "spec.scope.target"}


def test_an_over_long_value_is_reported_once_not_also_against_its_pattern(api: Api) -> None:
    causes = refusal(api.create(request(forcePassDag=["1" + "0" * 61])))
    assert [c["reason"] for c in causes] == ["FieldValueTooLong", "FieldValueInvalid"]
    assert causes[1] == {"reason": "FieldValueInvalid", "message": NOT_CHECKED, "field": "<nil>"}


def test_a_fraction_for_an_int64_also_fails_the_format_check(api: Api) -> None:
    causes = refusal(api.create(request(activeDeadlineSeconds=1.5)))
    assert {"reason": "FieldValueInvalid", "field": "<nil>",
            "message": 'Invalid value: "": Checked value must be of type integer with format int64 in '
                       "spec.activeDeadlineSeconds"} in causes  # fmt: skip


# --- valid edge cases -------------------------------------------------------------------------------------

VALID_ADDRESSES = [
    "10.0.0.1",
    "10.0.0.1:2886",
    "255.255.255.255:65535",
    "0.0.0.0:1",
    "[::1]",
    "[::1]:2886",
    "[fd00:0:0:0:0:0:0:1]:2886",
    "[::ffff:10.0.0.1]:2886",
    "obshell",
    "obshell.oceanbase.svc.cluster.local.",
    "obshell-0.obshell.ob.svc:2886",
    "http://10.0.0.1:2886",
    "http://obshell/",
    "https://obshell.example.com",
    "https://[fd00::1]:443",
    ".".join(["a" * 63] * 3 + ["b" * 61]) + ":2886",  # a host of exactly 253 characters
]


@pytest.mark.parametrize("address", VALID_ADDRESSES)
def test_valid_addresses_are_accepted_and_the_controller_can_parse_them(api: Api, address: str) -> None:
    stored = api.admit(with_address(address))
    assert stored["spec"]["obshell"]["address"] == address
    parse_endpoint(address)  # the controller's parser agrees


@pytest.mark.parametrize(
    "targets",
    [
        ["10.0.0.2"],
        ["10.0.0.2:2886", "10.0.0.3:1", "10.0.0.4:65535"],
        ["[fd00::2]:2886", "[::1]", "[2001:db8::8a2e:370:7334]:2886"],
        [f"10.0.{i // 250}.{i % 250}:2886" for i in range(256)],  # the most targets allowed
    ],
    ids=["bare-ipv4", "ports", "ipv6", "256-targets"],
)
def test_valid_server_targets_are_accepted(api: Api, targets: list[str]) -> None:
    assert api.admit(server_stop(*targets))["spec"]["scope"]["target"] == targets


def test_longest_zone_names_most_dag_ids_and_longest_dag_ids_are_accepted(api: Api) -> None:
    longest_zone = "Zone_" + "x" * 118 + "-9_ab"
    assert len(longest_zone) == 128
    dag_ids = [f"3{i:060d}" for i in range(64)]
    stored = api.admit(request(scope={"type": "ZONE", "target": [longest_zone, "z2"]}, forcePassDag=dag_ids))
    assert stored["spec"]["scope"]["target"] == [longest_zone, "z2"]
    assert stored["spec"]["forcePassDag"] == dag_ids


def test_global_with_force_or_terminate_and_deadline_is_accepted(api: Api) -> None:
    assert api.admit(global_stop(force=True))["spec"]["force"] is True
    stored = api.admit(global_stop(terminate=True, activeDeadlineSeconds=1))
    assert stored["spec"]["terminate"] is True and stored["spec"]["activeDeadlineSeconds"] == 1


def test_defaults_are_applied(api: Api) -> None:
    stored = api.admit(request(scope={"type": "GLOBAL"}, terminate=True))
    spec = stored["spec"]
    assert spec["obshell"]["passwordSecretRef"] == {"name": "obshell-root", "key": "password"}
    assert spec["obshell"]["insecureSkipTLSVerify"] is False
    assert "caSecretRef" not in spec["obshell"]  # an optional object is not invented
    assert spec["scope"]["target"] == []
    assert spec["force"] is False and spec["terminate"] is True
    assert spec["forcePassDag"] == []
    assert "activeDeadlineSeconds" not in spec
    assert "status" not in stored
    assert stored["metadata"]["generation"] == 1


def test_ca_secret_key_defaults_and_nulls_take_the_default(api: Api) -> None:
    obj = request(force=None)
    obj["spec"]["obshell"]["caSecretRef"] = {"name": "obshell-ca"}
    obj["spec"]["obshell"]["passwordSecretRef"]["key"] = None
    stored = api.admit(obj)
    assert stored["spec"]["obshell"]["caSecretRef"] == {"name": "obshell-ca", "key": "ca.crt"}
    assert stored["spec"]["obshell"]["passwordSecretRef"]["key"] == "password"
    assert stored["spec"]["force"] is False


def test_unknown_fields_are_pruned_with_a_warning_and_metadata_is_kept(api: Api) -> None:
    obj = request(forceful=True)
    obj["spec"]["obshell"]["password"] = "s3cret"  # a tempting mistake: pruned, never stored
    obj["spec"]["scope"]["zones"] = ["zone1"]
    obj["extra"] = {"a": 1}
    obj["metadata"]["labels"] = {"team": "dba"}
    obj["metadata"]["annotations"] = {"note": "x"}
    response = api.create(obj)
    stored = _check(response, 201)
    assert "forceful" not in stored["spec"]
    assert "password" not in stored["spec"]["obshell"]
    assert "zones" not in stored["spec"]["scope"]
    assert "extra" not in stored
    assert stored["metadata"]["labels"] == {"team": "dba"}
    assert stored["metadata"]["annotations"] == {"note": "x"}
    assert (stored["metadata"]["name"], stored["metadata"]["namespace"]) == ("stop", api.namespace)
    assert stored["apiVersion"] == obj["apiVersion"] and stored["kind"] == obj["kind"]
    # The server's default field validation (Warn) names every dropped field in a Warning header.
    assert sorted(response.headers.get_list("warning")) == [
        f'299 - "unknown field \\"{path}\\""'
        for path in ("extra", "spec.forceful", "spec.obshell.password", "spec.scope.zones")
    ]


def test_strict_field_validation_refuses_unknown_fields(api: Api) -> None:
    obj = request(forceful=True)
    response = api.client.post(api.base, json=obj, params={"dryRun": "All", "fieldValidation": "Strict"})
    body = _check(response, 400)
    assert body["reason"] == "BadRequest"
    assert body["message"] == (
        'ObStopRequest in version "v1alpha1" cannot be handled as a ObStopRequest: '
        'strict decoding error: unknown field "spec.forceful"'
    )


# --- the examples ---------------------------------------------------------------------------------------------


def load_example(path: Path) -> dict[str, Any]:
    documents = [d for d in yaml.safe_load_all(path.read_text()) if d]
    assert len(documents) == 1, f"{path.name}: one manifest per file"
    return documents[0]  # type: ignore[no-any-return]


def test_a_dry_run_takes_no_approval(api: Api) -> None:
    causes = refusal(api.create(request(force=True, dryRun=True, approval="Manual")))
    assert any("a dryRun stops nothing, so it takes no approval" in c["message"] for c in causes), causes
    assert refusal(api.create(request(force=True, approval="Sometimes")))


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_every_example_is_admitted(api: Api, path: Path) -> None:
    example = load_example(path)
    if example["kind"] == "Secret":
        url = f"{api.url}/api/v1/namespaces/{api.namespace}/secrets"
        response = api.client.post(url, json=example, params={"dryRun": "All", "fieldValidation": "Strict"})
        stored = _check(response, 201)
        assert "stringData" not in stored  # the server folds stringData into data
        assert stored["data"] == {
            k: base64.b64encode(v.encode()).decode() for k, v in example["stringData"].items()
        }
        return
    if example["kind"] == "ObStopApproval":
        url = f"{api.url}/apis/{GROUP}/{VERSION}/namespaces/{api.namespace}/obstopapprovals"
        response = api.client.post(url, json=example, params={"dryRun": "All", "fieldValidation": "Strict"})
        stored = _check(response, 201)
        assert response.headers.get_list("warning") == []
        assert stored["spec"]["requestName"] and stored["spec"]["approvedBy"]
        return
    # Strict: an example with a misspelt field would be refused, not silently pruned.
    response = api.client.post(api.base, json=example, params={"dryRun": "All", "fieldValidation": "Strict"})
    stored = _check(response, 201)
    assert response.headers.get_list("warning") == []
    assert stored["spec"]["obshell"]["passwordSecretRef"] == {"name": "obshell-root", "key": "password"}
    assert "status" not in stored


# --- updates ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def stored(api: Api) -> dict[str, Any]:
    """One real ZONE stop in the namespace; the tests' updates are dry-runs, so it stays as it is."""
    return api.store(request(force=True))


@pytest.mark.parametrize(
    "change",
    [
        lambda spec: spec.update(force=False, terminate=True),
        lambda spec: spec["scope"]["target"].append("zone9"),
        lambda spec: spec["obshell"].update(address="10.0.0.9:2886"),
        lambda spec: spec.update(activeDeadlineSeconds=60),
    ],
    ids=["mode", "targets", "address", "deadline"],
)
def test_a_changed_spec_is_refused(
    api: Api, stored: dict[str, Any], change: Callable[[dict[str, Any]], None]
) -> None:
    updated = copy.deepcopy(stored)
    change(updated["spec"])
    causes = refusal(api.update(updated))
    assert causes == [
        {"reason": "FieldValueInvalid", "message": f"Invalid value: {IMMUTABLE}", "field": "spec"}
    ]


def test_a_merge_patch_of_the_spec_is_refused_too(api: Api, stored: dict[str, Any]) -> None:
    causes = refusal(api.merge_patch(stored["metadata"]["name"], {"spec": {"scope": {"target": ["zone2"]}}}))
    assert [c["message"] for c in causes] == [f"Invalid value: {IMMUTABLE}"]
    assert api.get(stored["metadata"]["name"])["spec"] == stored["spec"]


def test_the_immutability_rule_is_not_applied_on_create(api: Api) -> None:
    assert api.store(request())["spec"]["scope"]["type"] == "ZONE"


def test_an_update_that_only_adds_defaults_or_changes_metadata_is_accepted(
    api: Api, stored: dict[str, Any]
) -> None:
    update = request(force=True)  # as a client would send it again: without the defaulted fields
    update["metadata"] = {
        "name": stored["metadata"]["name"],
        "resourceVersion": stored["metadata"]["resourceVersion"],
        "labels": {"a": "b"},
    }
    result = _check(api.update(update), 200)
    assert result["metadata"]["labels"] == {"a": "b"}
    assert result["spec"] == stored["spec"]
    assert result["metadata"]["generation"] == 1  # metadata is not the spec: no new generation


def test_an_update_without_a_resource_version_is_refused(api: Api, stored: dict[str, Any]) -> None:
    update = copy.deepcopy(stored)
    del update["metadata"]["resourceVersion"]
    response = api.update(update)
    assert response.status_code == 422, response.text
    assert response.json()["message"] == (
        f'{PLURAL}.{GROUP} "{stored["metadata"]["name"]}" is invalid: '
        "metadata.resourceVersion: Invalid value: 0: must be specified for an update"
    )


def status_update(stored: dict[str, Any], **status: Any) -> dict[str, Any]:
    obj = copy.deepcopy(stored)
    obj["status"] = status
    return obj


def test_a_status_only_update_does_not_trip_the_immutability_rule(api: Api) -> None:
    obj = api.store(server_stop("[fd00::2]:2886"))
    status = {
        "phase": "Running",
        "observedGeneration": 1,
        "startTime": "2025-06-01T10:00:00Z",
        "progress": "3/5",
        "attempts": 0,
        "submission": {"agent": "http://10.0.0.1:2886", "requestedAt": "2025-06-01T10:00:00.5+08:00"},
        "dag": {"id": "20167772161028861", "dagId": 1, "name": "Stop OB", "stage": 3, "maxStage": 5,
                "state": "RUNNING", "operator": "RUN", "startTime": "2025-06-01T10:00:01.123+08:00",
                "currentNode": "Stop observer"},
        "conditions": [
            {"type": "Ready", "status": "False", "observedGeneration": 1,
             "lastTransitionTime": "2025-06-01T10:00:00Z", "reason": "Running", "message": "stage 3/5"},
        ],
    }  # fmt: skip
    result = _check(api.update(status_update(obj, **status), status=True, dry_run=False), 200)
    assert result["status"] == status
    again = api.get(obj["metadata"]["name"])  # really stored
    assert again["status"] == status and again["spec"] == obj["spec"]
    assert again["metadata"]["generation"] == 1


def test_a_status_write_keeps_the_stored_spec(api: Api, stored: dict[str, Any]) -> None:
    sneaky = status_update(stored, phase="Pending")
    sneaky["spec"]["scope"]["target"] = ["zone2"]
    result = _check(api.update(sneaky, status=True), 200)
    assert result["spec"]["scope"]["target"] == ["zone1"]
    assert result["status"] == {"phase": "Pending"}


def test_a_main_resource_write_does_not_change_the_status(api: Api) -> None:
    obj = api.store(request())
    obj["status"] = {"phase": "Succeeded"}
    obj["metadata"]["labels"] = {"seen": "yes"}
    result = _check(api.update(obj, dry_run=False), 200)
    assert result["metadata"]["labels"] == {"seen": "yes"}
    assert "status" not in result


def crd_under(group: str) -> dict[str, Any]:
    """The CRD under another group, without its short name and category (`kubectl get obstop` and `kubectl get
    oceanbase` stay the real CRD's)."""
    crd = yaml.safe_load(CRD_PATH.read_text())
    crd["metadata"]["name"] = f"{PLURAL}.{group}"
    crd["spec"]["group"] = group
    del crd["spec"]["names"]["shortNames"], crd["spec"]["names"]["categories"]
    return crd  # type: ignore[no-any-return]


def strip_rules(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: strip_rules(v) for k, v in node.items() if k != "x-kubernetes-validations"}
    if isinstance(node, list):
        return [strip_rules(v) for v in node]
    return node


def test_a_status_write_is_not_refused_for_a_stored_spec_the_rules_would_now_refuse(api: Api) -> None:
    # Stored before today's rules: with CRD validation ratcheting, a write that leaves the spec as it was passes.
    group = f"r{secrets.token_hex(3)}.obstop.test"
    crd = crd_under(group)
    base = f"{api.url}/apis/{group}/{VERSION}/namespaces/{api.namespace}/{PLURAL}"
    old_rules = request(scope={"type": "GLOBAL", "target": []}, force=False, terminate=False)
    old_rules["apiVersion"] = f"{group}/{VERSION}"
    install_crd(api.client, api.url, strip_rules(crd), api.namespace)
    try:
        obj = _check(api.client.post(base, json=old_rules), 201)
        install_crd(api.client, api.url, crd, api.namespace)  # now with every rule
        wait_until(
            lambda: api.client.post(base, json=old_rules, params={"dryRun": "All"}).status_code == 422,
            30,
            "the rules in force",
            interval=0.05,
        )
        name = obj["metadata"]["name"]
        result = _check(api.client.put(f"{base}/{name}/status", json=status_update(obj, phase="Failed")), 200)
        assert result["status"] == {"phase": "Failed"}
        labelled = copy.deepcopy(result)
        labelled["metadata"]["labels"] = {"kept": "yes"}
        labelled = _check(api.client.put(f"{base}/{name}", json=labelled), 200)
        assert labelled["metadata"]["labels"] == {"kept": "yes"}
        # A change to the spec is judged in full: the immutability rule and the rules the old spec breaks.
        changed = copy.deepcopy(labelled)
        changed["spec"]["scope"]["target"] = ["zone1"]
        causes = refusal(api.client.put(f"{base}/{name}", json=changed))
        assert {c["message"] for c in causes} == {
            f"Invalid value: {IMMUTABLE}",
            f"Invalid value: {GLOBAL_NEEDS_MODE}",
            "Invalid value: a GLOBAL stop takes no targets (obshell would silently ignore them): remove target, "
            "or use type ZONE or SERVER",
        }
    finally:
        api.client.delete(f"{api.url}{CRDS}/{crd['metadata']['name']}")


@pytest.mark.parametrize(
    ("status", "field", "text"),
    [
        ({"phase": "Done"}, "status.phase", 'Unsupported value: "Done"'),
        ({"startTime": "yesterday"}, "status.startTime",
         'Invalid value: "yesterday": startTime in body must be of type date-time: "yesterday"'),
        ({"completionTime": "2025-13-01T00:00:00Z"}, "status.completionTime", "must be of type date-time"),
        ({"attempts": -1}, "status.attempts", "Invalid value: -1: attempts in body should be greater than or equal to 0"),
        # An int32 overflow is a format error, reported against status, not status.attempts.
        ({"attempts": 2**31}, "status", "Checked value must be of type integer with format int32 in attempts"),
        ({"dag": {"stage": "3"}}, "status.dag.stage", 'dag.stage in body must be of type integer: "string"'),
        ({"conditions": [{"type": "Ready"}]}, "status.conditions[0].status", "Required value"),
        (
            {"conditions": [{"type": "Ready", "status": "True"}, {"type": "Ready", "status": "False"}]},
            "status.conditions[1]",
            'Duplicate value: {"type":"Ready"}',
        ),
        (
            {"conditions": [{"type": "Ready", "status": "Yes"}]},
            "status.conditions[0].status",
            'Unsupported value: "Yes": supported values: "True", "False", "Unknown"',
        ),
    ],
    ids=["phase", "start-time", "completion-time", "negative", "int32", "stage", "condition-status",
         "duplicate-condition", "condition-value"],
)  # fmt: skip
def test_a_bad_status_is_refused(
    api: Api, stored: dict[str, Any], status: dict[str, Any], field: str, text: str
) -> None:
    causes = refusal(api.update(status_update(stored, **status), status=True))
    assert any(c["field"] == field and text in c["message"] for c in causes), causes


def test_unknown_status_fields_are_pruned(api: Api, stored: dict[str, Any]) -> None:
    update = status_update(stored, phase="Running", password="x", dag={"id": "11", "secret": 1})
    response = api.update(update, status=True)
    assert _check(response, 200)["status"] == {"phase": "Running", "dag": {"id": "11"}}
    assert sorted(response.headers.get_list("warning")) == [
        '299 - "unknown field \\"status.dag.secret\\""',
        '299 - "unknown field \\"status.password\\""',
    ]


def test_the_statuses_the_controller_writes_are_stored_unchanged(api: Api, stored: dict[str, Any]) -> None:
    """The controller's real status decisions go through a status write without a field pruned or refused."""
    from datetime import UTC, datetime, timedelta, timezone

    from obstop.controller import decisions
    from obstop.controller.decisions import At
    from obstop.controller.settings import Settings
    from obstop.controller.status import AgentProgress, Reason, RequestStatus, Submission

    now = datetime(2025, 6, 1, 10, 0, tzinfo=UTC)
    agent_clock = datetime(2025, 6, 1, 18, 0, 3, 250000, tzinfo=timezone(timedelta(hours=8)))
    at = At(1, now)
    status = decisions.begin(RequestStatus(), at).status
    submission = Submission(
        agent="http://10.0.0.1:2886",
        requested_at=now,
        not_before=agent_clock,
        receiver="10.0.0.1:2886",
        obshell_version="4.4.1.0",
    )
    status = decisions.record_submission(status, submission, at).status
    later = At(1, now + timedelta(seconds=1))
    status = decisions.fault(
        status, Reason.WAITING_FOR_SECRET, "Secret obshell-root not found", later, Settings()
    ).status
    asked = decisions.cancel_requested(status, "Annotation", later)
    rows = [AgentProgress(agent="10.0.0.1:2886", sub_dag="21", node="Make sure all agents are ready",
                          state="FAILED", last_log="ERROR: x", observer_stopped=False)]  # fmt: skip
    steps = [
        status.to_wire(),
        decisions.failed(status, Reason.FORCE_STOP_REQUIRED, "please stop with 'force'", at).status.to_wire(),
        decisions.cancelled(
            asked, Reason.CANCELLED_ON_REQUEST, "cancelled", later, agents=rows
        ).status.to_wire(),
    ]
    for written in steps:
        response = api.update(status_update(stored, **written), status=True)
        assert _check(response, 200)["status"] == written
        assert response.headers.get_list("warning") == []


# --- agreement with the controller's parsers ----------------------------------------------------------------

_ADDRESS_PIECES = st.sampled_from(
    ["http://", "https://", "ftp://", "[", "]", ":", "::", "/", ".", "-", "a", "Z", "0", "1", "9", "25", "255",
     "256", "2886", "65535", "65536", "fd00", "ffff", "@", "?", " ", "obshell", "example"]
)  # fmt: skip
_PROPERTY = settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@_PROPERTY
@given(address=st.lists(_ADDRESS_PIECES, min_size=1, max_size=12).map("".join))
def test_every_address_the_crd_admits_is_one_the_controller_can_use(api: Api, address: str) -> None:
    response = api.create(with_address(address))
    if response.status_code == 422:
        return
    assert _check(response, 201)["spec"]["obshell"]["address"] == address
    endpoint = parse_endpoint(address)
    assert endpoint.scheme in ("http", "https")


@_PROPERTY
@given(target=st.lists(_ADDRESS_PIECES, min_size=1, max_size=10).map("".join))
def test_every_server_target_the_crd_admits_is_an_agent_address(api: Api, target: str) -> None:
    response = api.create(server_stop(target))
    if response.status_code == 422:
        return
    assert _check(response, 201)["spec"]["scope"]["target"] == [target]
    host, _port = split_host_port(target)
    ipaddress.ip_address(host)  # an IP, never a name


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ip=st.ip_addresses(), port=st.integers(1, 65535))
def test_every_ip_address_is_admitted_in_every_spelling(
    api: Api, ip: ipaddress.IPv4Address | ipaddress.IPv6Address, port: int
) -> None:
    if ip.version == 4:
        spellings = [str(ip), f"{ip}:{port}"]
    else:
        spellings = [f"[{ip.compressed}]", f"[{ip.exploded}]:{port}", f"[{ip.compressed.upper()}]:{port}"]
    api.admit(server_stop(*spellings))
    for spelling in spellings:
        api.admit(with_address(spelling))
        api.admit(with_address(f"https://{spelling}"))


def test_the_controller_refuses_what_the_crd_refuses_for_addresses(api: Api) -> None:
    # The cross-check above only runs one way; make sure both really refuse some shared cases.
    for address in ("ftp://x", "http://x/p", "999.1.1.1", "[fd00::g]:1", "x:0"):
        refusal(api.create(with_address(address)))
        with pytest.raises(InvalidAddress):
            parse_endpoint(address)


# --- the CRD itself, judged by the server -----------------------------------------------------------------------


def crd_variant(change: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    """The CRD under another group (a dry-run never clashes with the installed one), `change`d in its spec
    schema."""
    crd = crd_under("variant.obstop.test")
    change(crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"])
    return crd


def dry_run_crd(api: Api, crd: dict[str, Any]) -> httpx.Response:
    return api.client.post(
        f"{api.url}{CRDS}", json=crd, params={"dryRun": "All", "fieldValidation": "Strict"}
    )


def test_the_crd_is_accepted_established_and_without_warnings(api: Api) -> None:
    response = dry_run_crd(api, crd_variant(lambda spec: None))
    _check(response, 201)
    assert response.headers.get_list("warning") == []
    installed = _check(api.client.get(f"{api.url}{CRDS}/{PLURAL}.{GROUP}"), 200)
    conditions = {c["type"]: c["status"] for c in installed["status"]["conditions"]}
    assert conditions["Established"] == "True" and conditions["NamesAccepted"] == "True"
    assert installed["status"]["acceptedNames"]["shortNames"] == ["obstop"]


def test_a_crd_that_documents_metadata_is_refused(api: Api) -> None:
    """Why the CRD's metadata, alone of its fields, has no description (tests/unit/test_crd.py)."""
    crd = crd_under("variant.obstop.test")
    crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["metadata"]["description"] = "x"
    [cause] = refusal(dry_run_crd(api, crd))
    assert cause == {
        "reason": "FieldValueForbidden",
        "field": "spec.validation.openAPIV3Schema.properties[metadata]",
        "message": "Forbidden: must not specify anything other than name and generateName, "
        "but metadata is implicitly specified",
    }


def refused_spec_rule(api: Api, rule: str) -> dict[str, str]:
    """The one cause the server gives for a CRD whose spec has one more rule, `rule`."""
    crd = crd_under("variant.obstop.test")
    rules = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"][
        "x-kubernetes-validations"
    ]
    rules.append({"rule": rule, "message": "the new rule"})
    [cause] = refusal(dry_run_crd(api, crd))
    at = f"spec.validation.openAPIV3Schema.properties[spec].x-kubernetes-validations[{len(rules) - 1}].rule"
    assert (cause["field"], cause["reason"]) == (at, "FieldValueInvalid")
    return cause


def test_a_crd_with_a_rule_that_does_not_compile_is_refused(api: Api) -> None:
    cause = refused_spec_rule(api, "self.scope.type >")
    assert (
        "compilation failed: ERROR: <input>:1:18: Syntax error: mismatched input '<EOF>'" in cause["message"]
    )


def test_a_crd_with_a_rule_on_an_undeclared_field_is_refused(api: Api) -> None:
    cause = refused_spec_rule(api, "self.zones == 1")
    assert "compilation failed: ERROR: <input>:1:5: undefined field 'zones'" in cause["message"]


@pytest.mark.parametrize(
    ("change", "rule_at"),
    [
        (
            lambda spec: spec["properties"]["obshell"]["properties"]["address"].pop("maxLength"),
            "properties[spec].properties[obshell].properties[address].x-kubernetes-validations[",
        ),
        (
            lambda spec: spec["properties"]["scope"]["properties"]["target"].pop("maxItems"),
            "properties[spec].properties[scope].x-kubernetes-validations[",
        ),
        (
            lambda spec: spec["properties"]["scope"]["properties"]["target"]["items"].pop("maxLength"),
            "properties[spec].properties[scope].x-kubernetes-validations[",
        ),
    ],
    ids=["address-maxLength", "target-maxItems", "target-item-maxLength"],
)
def test_every_bound_the_rules_rely_on_is_needed(
    api: Api, change: Callable[[dict[str, Any]], None], rule_at: str
) -> None:
    """The CRD's strings and lists are bounded so that its rules fit the server's CEL cost budget: without any
    one of the bounds the server refuses the CRD."""
    causes = refusal(dry_run_crd(api, crd_variant(change)))
    over_budget = [c for c in causes if COST_EXCEEDED in c["message"]]
    assert over_budget, causes
    assert all(c["reason"] == "FieldValueForbidden" for c in causes)
    assert any(rule_at in c["field"] for c in over_budget), over_budget
