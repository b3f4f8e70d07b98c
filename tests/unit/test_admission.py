"""The ObStopRequest admission matrix: what kube-apiserver would refuse or store for the real CRD
(deploy/crds), judged offline by obstop.testing.admission (OpenAPI schema with jsonschema, CEL with
cel-python). Nothing is mocked: the CRD file and the validator are the ones the emulated API server uses."""

from __future__ import annotations

import copy
import ipaddress
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from obstop.obshell.address import InvalidAddress, parse_endpoint, split_host_port
from obstop.testing.admission import AdmissionError, Cause, CrdValidator, to_status_body

CRD_PATH = (
    Path(__file__).resolve().parents[2] / "deploy" / "crds" / "obshell.oceanbase.com_obstoprequests.yaml"
)
IMMUTABLE = "spec is immutable: create a new ObStopRequest for a different stop"
NOT_CHECKED = "some validation rules were not checked because the object was invalid"
SERVER_TARGETS = "SERVER targets must be obshell agent addresses"
ZONE_TARGETS = "ZONE targets must be zone names: 1 to 128 letters, digits, '_' or '-'"
ADDRESS_FORM = "the address must be host[:port] (port 1-65535, default 2886)"


@pytest.fixture(scope="module")
def validator() -> CrdValidator:
    return CrdValidator.from_file(CRD_PATH)


def request(**spec: Any) -> dict[str, Any]:
    """A valid ZONE stop, with top-level spec keys replaced by `spec`."""
    body: dict[str, Any] = {
        "obshell": {"address": "10.0.0.1:2886", "passwordSecretRef": {"name": "obshell-root"}},
        "scope": {"type": "ZONE", "target": ["zone1"]},
    }
    body.update(spec)
    return {
        "apiVersion": "obshell.oceanbase.com/v1alpha1",
        "kind": "ObStopRequest",
        "metadata": {"name": "stop", "namespace": "default"},
        "spec": body,
    }


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


def refusal(validator: CrdValidator, obj: dict[str, Any], old: dict[str, Any] | None = None) -> list[Cause]:
    with pytest.raises(AdmissionError) as caught:
        validator.admit(obj, old)
    return caught.value.causes


# (id, object, field of the cause, text the cause's message must contain)
INVALID: list[tuple[str, dict[str, Any], str, str]] = [
    ("unknown-scope-type", request(scope={"type": "CLUSTER", "target": []}), "spec.scope.type",
     'Unsupported value: "CLUSTER": supported values: "GLOBAL", "ZONE", "SERVER"'),
    ("lowercase-scope-type", request(scope={"type": "zone", "target": ["z1"]}), "spec.scope.type",
     'Unsupported value: "zone"'),
    ("force-not-bool", global_stop(force="yes"), "spec.force",
     'Invalid value: "yes": spec.force in body must be of type boolean: "string"'),
    ("target-not-list", request(scope={"type": "ZONE", "target": "zone1"}), "spec.scope.target",
     "spec.scope.target in body must be of type array"),
    ("target-item-not-string", zone_stop(7), "spec.scope.target[0]", "must be of type string"),
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
    ("zone-name-too-long", zone_stop("z" * 129), "spec.scope.target[0]", "Too long: may not be more than 128"),
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
    ("global-without-force-or-terminate", global_stop(), "spec",
     "a GLOBAL stop needs force: true or terminate: true"),
    ("global-explicitly-neither", global_stop(force=False, terminate=False), "spec",
     "a GLOBAL stop needs force: true or terminate: true"),
    ("force-and-terminate", server_stop("10.0.0.2", terminate=True), "spec",
     "force and terminate cannot both be true"),
    ("global-with-targets", request(scope={"type": "GLOBAL", "target": ["zone1"]}, force=True), "spec.scope.target",
     "a GLOBAL stop takes no targets (obshell would silently ignore them)"),
    ("dag-id-letters", request(forcePassDag=["2abc"]), "spec.forcePassDag[0]",
     "spec.forcePassDag[0] in body should match '^[1-5][0-9]{1,60}$'"),
    ("dag-id-unknown-kind", request(forcePassDag=["61234"]), "spec.forcePassDag[0]", "should match"),
    ("dag-id-too-short", request(forcePassDag=["1"]), "spec.forcePassDag[0]", "should match"),
    ("dag-id-number", request(forcePassDag=[21234]), "spec.forcePassDag[0]", "must be of type string"),
    ("dag-id-too-long", request(forcePassDag=["1" + "0" * 61]), "spec.forcePassDag[0]", "Too long"),
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
     "spec.obshell.passwordSecretRef.name", "should match"),
    ("secret-key-with-slash",
     request(obshell={"address": "h", "passwordSecretRef": {"name": "s", "key": "a/b"}}),
     "spec.obshell.passwordSecretRef.key", "should match"),
    ("ca-secret-without-name", request(obshell={"address": "https://h", "passwordSecretRef": {"name": "s"},
                                                "caSecretRef": {"key": "ca.crt"}}),
     "spec.obshell.caSecretRef.name", "Required value"),
    ("address-empty", with_address(""), "spec.obshell.address", "should be at least 1 chars long"),
    ("address-too-long", with_address("a" * 513), "spec.obshell.address", "Too long: may not be more than 512"),
    ("address-ftp-scheme", with_address("ftp://obshell:2886"), "spec.obshell.address",
     "a URL address must start with http:// or https://"),
    ("address-url-with-path", with_address("http://obshell:2886/api/v1"), "spec.obshell.address",
     "a URL address may not have a path, query, fragment or user part"),
    ("address-url-with-query", with_address("https://obshell?x=1"), "spec.obshell.address",
     "may not have a path, query"),
    ("address-url-with-user", with_address("https://root@obshell:2886"), "spec.obshell.address",
     "may not have a path, query"),
    ("address-bad-ipv4", with_address("999.1.1.1:2886"), "spec.obshell.address",
     "the host is not a valid IPv4 address"),
    ("address-ipv4-short", with_address("http://10.0.1"), "spec.obshell.address",
     "the host is not a valid IPv4 address"),
    ("address-port-out-of-range", with_address("10.0.0.1:99999"), "spec.obshell.address", ADDRESS_FORM),
    ("address-ipv6-without-brackets", with_address("fd00::1"), "spec.obshell.address", ADDRESS_FORM),
    ("address-with-space", with_address("obshell host:2886"), "spec.obshell.address", ADDRESS_FORM),
    ("address-label-starts-with-dash", with_address("-obshell:2886"), "spec.obshell.address", ADDRESS_FORM),
    ("address-host-over-253", with_address(".".join(["a" * 63] * 4) + ":2886"), "spec.obshell.address",
     "the host name may not be longer than 253 characters"),
    ("deadline-zero", request(activeDeadlineSeconds=0), "spec.activeDeadlineSeconds",
     "should be greater than or equal to 1"),
    ("deadline-string", request(activeDeadlineSeconds="60"), "spec.activeDeadlineSeconds",
     "must be of type integer"),
    ("deadline-fraction", request(activeDeadlineSeconds=1.5), "spec.activeDeadlineSeconds",
     "must be of type integer"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("obj", "field", "text"), [case[1:] for case in INVALID], ids=[c[0] for c in INVALID]
)
def test_invalid_request_is_refused_with_its_own_message(
    validator: CrdValidator, obj: dict[str, Any], field: str, text: str
) -> None:
    causes = refusal(validator, obj)
    assert any(c.field == field and text in c.message for c in causes), [str(c) for c in causes]


def test_the_matrix_is_big_and_every_case_has_a_distinct_message() -> None:
    assert len(INVALID) >= 30
    assert len({case[0] for case in INVALID}) == len(INVALID)


def test_error_string_and_status_body_are_kube_apiservers(validator: CrdValidator) -> None:
    with pytest.raises(AdmissionError) as caught:
        validator.admit(global_stop())
    err = caught.value
    expected_cause = (
        'spec: Invalid value: "object": a GLOBAL stop needs force: true or terminate: true '
        "(obshell refuses to stop every observer without one of them)"
    )
    assert str(err) == f'ObStopRequest.obshell.oceanbase.com "stop" is invalid: {expected_cause}'
    body = to_status_body(err, "ObStopRequest", "stop")
    assert body["kind"] == "Status" and body["apiVersion"] == "v1"
    assert body["code"] == 422 and body["reason"] == "Invalid" and body["status"] == "Failure"
    assert body["message"] == str(err)
    assert body["details"]["group"] == "obshell.oceanbase.com"
    assert body["details"]["name"] == "stop" and body["details"]["kind"] == "ObStopRequest"
    assert body["details"]["causes"] == [
        {"reason": "FieldValueInvalid", "message": expected_cause.removeprefix("spec: "), "field": "spec"}
    ]


def test_every_violation_is_listed_at_once(validator: CrdValidator) -> None:
    obj = request(scope={"type": "GLOBAL", "target": ["z1"]}, force=True, terminate=True)
    obj["spec"]["obshell"]["address"] = "gopher://x"
    messages = "\n".join(str(c) for c in refusal(validator, obj))
    assert "force and terminate cannot both be true" in messages
    assert "a GLOBAL stop takes no targets" in messages
    assert "a URL address must start with http:// or https://" in messages
    assert str(refusal(validator, obj)).count("Cause(") >= 3


def test_schema_errors_that_block_cel_say_so_and_cel_is_not_run(validator: CrdValidator) -> None:
    # force/terminate both "true" but as strings: a type error, so the force-and-terminate rule is not run.
    causes = refusal(validator, global_stop(force="true", terminate="true"))
    assert [c.field for c in causes] == ["spec.force", "spec.terminate", "<nil>"]
    assert (
        causes[-1].message
        == f'Invalid value: "null": {NOT_CHECKED}; correct the existing errors to complete validation'
    )
    assert all("cannot both be true" not in c.message for c in causes)


def test_pattern_violations_do_not_block_cel(validator: CrdValidator) -> None:
    causes = refusal(validator, request(forcePassDag=["x"], scope={"type": "GLOBAL"}))
    assert any("a GLOBAL stop needs force" in c.message for c in causes)
    assert all(NOT_CHECKED not in c.message for c in causes)


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
def test_valid_addresses_are_accepted_and_the_controller_can_parse_them(
    validator: CrdValidator, address: str
) -> None:
    stored = validator.admit(with_address(address))
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
def test_valid_server_targets_are_accepted(validator: CrdValidator, targets: list[str]) -> None:
    stored = validator.admit(server_stop(*targets))
    assert stored["spec"]["scope"]["target"] == targets


def test_longest_zone_names_most_dag_ids_and_longest_dag_ids_are_accepted(validator: CrdValidator) -> None:
    longest_zone = "Zone_" + "x" * 118 + "-9_ab"
    assert len(longest_zone) == 128
    dag_ids = [f"3{i:060d}" for i in range(64)]
    stored = validator.admit(
        request(scope={"type": "ZONE", "target": [longest_zone, "z2"]}, forcePassDag=dag_ids)
    )
    assert stored["spec"]["scope"]["target"] == [longest_zone, "z2"]
    assert stored["spec"]["forcePassDag"] == dag_ids


def test_global_with_force_or_terminate_and_deadline_is_accepted(validator: CrdValidator) -> None:
    assert validator.admit(global_stop(force=True))["spec"]["force"] is True
    stored = validator.admit(global_stop(terminate=True, activeDeadlineSeconds=1))
    assert stored["spec"]["terminate"] is True and stored["spec"]["activeDeadlineSeconds"] == 1


def test_defaults_are_applied(validator: CrdValidator) -> None:
    stored = validator.admit(request(scope={"type": "GLOBAL"}, terminate=True))
    spec = stored["spec"]
    assert spec["obshell"]["passwordSecretRef"] == {"name": "obshell-root", "key": "password"}
    assert spec["obshell"]["insecureSkipTLSVerify"] is False
    assert "caSecretRef" not in spec["obshell"]  # an optional object is not invented
    assert spec["scope"]["target"] == []
    assert spec["force"] is False and spec["terminate"] is True
    assert spec["forcePassDag"] == []
    assert "activeDeadlineSeconds" not in spec


def test_ca_secret_key_defaults_and_nulls_take_the_default(validator: CrdValidator) -> None:
    obj = request(force=None)
    obj["spec"]["obshell"]["caSecretRef"] = {"name": "obshell-ca"}
    obj["spec"]["obshell"]["passwordSecretRef"]["key"] = None
    stored = validator.admit(obj)
    assert stored["spec"]["obshell"]["caSecretRef"] == {"name": "obshell-ca", "key": "ca.crt"}
    assert stored["spec"]["obshell"]["passwordSecretRef"]["key"] == "password"
    assert stored["spec"]["force"] is False


def test_unknown_fields_are_pruned_and_metadata_is_kept(validator: CrdValidator) -> None:
    obj = request(forceful=True)
    obj["spec"]["obshell"]["password"] = "s3cret"  # a tempting mistake: pruned, never stored
    obj["spec"]["scope"]["zones"] = ["zone1"]
    obj["extra"] = {"a": 1}
    obj["metadata"]["labels"] = {"team": "dba"}
    obj["metadata"]["annotations"] = {"note": "x"}
    stored = validator.admit(obj)
    assert "forceful" not in stored["spec"]
    assert "password" not in stored["spec"]["obshell"]
    assert "zones" not in stored["spec"]["scope"]
    assert "extra" not in stored
    assert stored["metadata"] == obj["metadata"]
    assert stored["apiVersion"] == obj["apiVersion"] and stored["kind"] == obj["kind"]
    assert obj["spec"]["obshell"]["password"] == "s3cret"  # the caller's object is not modified


# --- updates ----------------------------------------------------------------------------------------------


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
def test_a_changed_spec_is_refused(validator: CrdValidator, change: Callable[[dict[str, Any]], None]) -> None:
    stored = validator.admit(request(force=True))
    updated = copy.deepcopy(stored)
    change(updated["spec"])
    causes = refusal(validator, updated, stored)
    assert [(c.field, c.reason) for c in causes] == [("spec", "FieldValueInvalid")]
    assert causes[0].message == f'Invalid value: "object": {IMMUTABLE}'


def test_the_immutability_rule_is_not_applied_on_create(validator: CrdValidator) -> None:
    assert validator.admit(request())["spec"]["scope"]["type"] == "ZONE"


def test_an_update_that_only_adds_defaults_or_changes_metadata_is_accepted(validator: CrdValidator) -> None:
    stored = validator.admit(request())
    update = request()  # as a client would send it again: without the defaulted fields
    update["metadata"]["labels"] = {"a": "b"}
    assert validator.admit(update, stored)["metadata"]["labels"] == {"a": "b"}


def status_update(stored: dict[str, Any], **status: Any) -> dict[str, Any]:
    obj = copy.deepcopy(stored)
    obj["status"] = status
    return obj


def test_a_status_only_update_does_not_trip_the_immutability_rule(validator: CrdValidator) -> None:
    stored = validator.admit(server_stop("[fd00::2]:2886"))
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
    result = validator.admit(status_update(stored, **status), stored, subresource="status")
    assert result["status"] == status
    assert result["spec"] == stored["spec"]


def test_a_status_write_keeps_the_stored_spec(validator: CrdValidator) -> None:
    stored = validator.admit(request())
    sneaky = status_update(stored, phase="Pending")
    sneaky["spec"]["scope"]["target"] = ["zone2"]
    result = validator.admit(sneaky, stored, subresource="status")
    assert result["spec"]["scope"]["target"] == ["zone1"]
    assert result["status"] == {"phase": "Pending"}


def test_a_status_write_is_not_refused_for_a_stored_spec_the_rules_would_now_refuse(
    validator: CrdValidator,
) -> None:
    # Stored before today's rules (or by a server that skipped them): the spec is unchanged, so it ratchets.
    stored = copy.deepcopy(request(scope={"type": "GLOBAL", "target": []}, force=False, terminate=False))
    assert validator.admit(status_update(stored, phase="Failed"), stored, subresource="status")["status"] == {
        "phase": "Failed"
    }


@pytest.mark.parametrize(
    ("status", "field", "text"),
    [
        ({"phase": "Done"}, "status.phase", 'Unsupported value: "Done"'),
        ({"startTime": "yesterday"}, "status.startTime", "must be of type date-time"),
        ({"completionTime": "2025-13-01T00:00:00Z"}, "status.completionTime", "must be of type date-time"),
        ({"attempts": -1}, "status.attempts", "should be greater than or equal to 0"),
        ({"attempts": 2**31}, "status.attempts", "must be of type int32"),
        ({"dag": {"stage": "3"}}, "status.dag.stage", "must be of type integer"),
        ({"conditions": [{"type": "Ready"}]}, "status.conditions[0].status", "Required value"),
        (
            {"conditions": [{"type": "Ready", "status": "True"}, {"type": "Ready", "status": "False"}]},
            "status.conditions[1]",
            'Duplicate value: map[string]interface {}{"type":"Ready"}',
        ),
        (
            {"conditions": [{"type": "Ready", "status": "Yes"}]},
            "status.conditions[0].status",
            "Unsupported value",
        ),
    ],
)
def test_a_bad_status_is_refused(
    validator: CrdValidator, status: dict[str, Any], field: str, text: str
) -> None:
    stored = validator.admit(request())
    with pytest.raises(AdmissionError) as caught:
        validator.admit(status_update(stored, **status), stored, subresource="status")
    assert any(c.field == field and text in c.message for c in caught.value.causes), caught.value.causes


def test_unknown_status_fields_are_pruned(validator: CrdValidator) -> None:
    stored = validator.admit(request())
    result = validator.admit(
        status_update(stored, phase="Running", password="x", dag={"id": "11", "secret": 1}),
        stored,
        subresource="status",
    )
    assert result["status"] == {"phase": "Running", "dag": {"id": "11"}}


# --- agreement with the controller's parsers ----------------------------------------------------------------

_ADDRESS_PIECES = st.sampled_from(
    ["http://", "https://", "ftp://", "[", "]", ":", "::", "/", ".", "-", "a", "Z", "0", "1", "9", "25", "255",
     "256", "2886", "65535", "65536", "fd00", "ffff", "@", "?", " ", "obshell", "example"]
)  # fmt: skip


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(address=st.lists(_ADDRESS_PIECES, min_size=1, max_size=12).map("".join))
def test_every_address_the_crd_admits_is_one_the_controller_can_use(
    validator: CrdValidator, address: str
) -> None:
    try:
        validator.admit(with_address(address))
    except AdmissionError:
        return
    endpoint = parse_endpoint(address)
    assert endpoint.scheme in ("http", "https")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(target=st.lists(_ADDRESS_PIECES, min_size=1, max_size=10).map("".join))
def test_every_server_target_the_crd_admits_is_an_agent_address(validator: CrdValidator, target: str) -> None:
    try:
        validator.admit(server_stop(target))
    except AdmissionError:
        return
    host, _port = split_host_port(target)
    ipaddress.ip_address(host)  # an IP, never a name


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ip=st.ip_addresses(), port=st.integers(1, 65535))
def test_every_ip_address_is_admitted_in_every_spelling(
    validator: CrdValidator, ip: ipaddress.IPv4Address | ipaddress.IPv6Address, port: int
) -> None:
    if ip.version == 4:
        spellings = [str(ip), f"{ip}:{port}"]
    else:
        spellings = [f"[{ip.compressed}]", f"[{ip.exploded}]:{port}", f"[{ip.compressed.upper()}]:{port}"]
    validator.admit(server_stop(*spellings))
    for spelling in spellings:
        validator.admit(with_address(spelling))
        validator.admit(with_address(f"https://{spelling}"))


def test_the_controller_refuses_what_the_crd_refuses_for_addresses() -> None:
    # The cross-check above only runs one way; make sure both parsers really refuse some shared cases.
    for address in ("ftp://x", "http://x/p", "999.1.1.1", "[fd00::g]:1", "x:0"):
        with pytest.raises(InvalidAddress):
            parse_endpoint(address)


# --- the validator on other CRDs (what the emulated API server relies on) --------------------------------------

TOY_CRD: dict[str, Any] = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "toys.example.com"},
    "spec": {
        "group": "example.com",
        "names": {"kind": "Toy", "plural": "toys"},
        "scope": "Namespaced",
        "versions": [
            {
                "name": "v1",
                "served": True,
                "storage": True,
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "properties": {
                            "spec": {
                                "type": "object",
                                "x-kubernetes-validations": [
                                    {
                                        "rule": "self.replicas <= self.max",
                                        "messageExpression": "'replicas ' + string(self.replicas) + ' over max'",
                                        "fieldPath": ".replicas",
                                        "reason": "FieldValueForbidden",
                                    },
                                    {"rule": "!has(self.note) || self.note != 'bad'"},
                                ],
                                "properties": {
                                    "replicas": {"type": "integer", "default": 1},
                                    "max": {"type": "integer", "default": 3},
                                    "note": {"type": "string", "nullable": True},
                                    "size": {"x-kubernetes-int-or-string": True},
                                    "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
                                    "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                                },
                            },
                        },
                    }
                },
            }
        ],
    },
}


def toy(**spec: Any) -> dict[str, Any]:
    return {"apiVersion": "example.com/v1", "kind": "Toy", "metadata": {"name": "t"}, "spec": spec}


def test_generic_features_prune_default_preserve_nullable_int_or_string() -> None:
    validator = CrdValidator(TOY_CRD)
    stored = validator.admit(
        toy(note=None, size="50%", free={"any": {"thing": 1}}, labels={"a": "b"}, junk=1)
    )
    assert stored["spec"] == {
        "note": None,
        "size": "50%",
        "free": {"any": {"thing": 1}},
        "labels": {"a": "b"},
        "replicas": 1,
        "max": 3,
    }
    assert validator.admit(toy(size=3))["spec"]["size"] == 3
    with pytest.raises(AdmissionError) as caught:
        validator.admit(toy(size=1.5, labels={"a": 1}))
    assert {c.field for c in caught.value.causes} >= {"spec.size", "spec.labels.a"}


def test_generic_features_message_expression_field_path_reason_default_message() -> None:
    validator = CrdValidator(TOY_CRD)
    with pytest.raises(AdmissionError) as caught:
        validator.admit(toy(replicas=5, note="bad"))
    assert [(c.field, c.reason, c.message) for c in caught.value.causes] == [
        ("spec.replicas", "FieldValueForbidden", "Forbidden: replicas 5 over max"),
        (
            "spec",
            "FieldValueInvalid",
            "Invalid value: \"object\": failed rule: !has(self.note) || self.note != 'bad'",
        ),
    ]
    assert str(caught.value).startswith(
        'Toy.example.com "t" is invalid: [spec.replicas: Forbidden: replicas 5'
    )


def test_a_crd_with_a_broken_rule_is_refused() -> None:
    broken = copy.deepcopy(TOY_CRD)
    spec_schema = broken["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    spec_schema["x-kubernetes-validations"] = [{"rule": "self.replicas >"}]
    with pytest.raises(ValueError, match="does not compile"):
        CrdValidator(broken)


def test_the_statuses_the_controller_writes_are_stored_unchanged(validator: CrdValidator) -> None:
    """The controller's real status decisions go through a status write without a field pruned or refused."""
    from datetime import UTC, datetime, timedelta

    from obstop.controller import reconcile
    from obstop.controller.settings import Settings

    stored = validator.admit(request())
    now = datetime(2025, 6, 1, 10, 0, tzinfo=UTC)
    agent_clock = datetime(2025, 6, 1, 18, 0, 3, 250000, tzinfo=timezone_plus_8())
    status = reconcile.begin({}, 1, now).status
    status = reconcile.record_submission(status, "http://10.0.0.1:2886", agent_clock, 1, now).status
    status = reconcile.fault(
        status, "Secret obshell-root not found", 1, now + timedelta(seconds=1), Settings()
    ).status
    steps = [
        status,
        reconcile.failed(status, "OB.Cluster.ForceStopRequired", "please stop with 'force'", 1, now).status,
    ]
    for written in steps:
        result = validator.admit(status_update(stored, **written), stored, subresource="status")
        assert result["status"] == written


def timezone_plus_8() -> Any:
    from datetime import timedelta, timezone

    return timezone(timedelta(hours=8))
