"""The simulator's obshell release profiles over real HTTP on loopback: each row of the fact sheet's §7
"Behaviour by obshell version" (with §1 for the error forms), for every named profile and a few versions
between them.

The expectations are written out here from the fact sheet, not computed from releases.py, so a wrong threshold
or a wrong wire shape fails. Requests are made by hand (httpx + the crypto helpers), never with ObshellClient,
so that these tests pin the simulator, whatever the client does with the answers.

Not observable and so not tested: that 4.2.3.0-4.2.5.x check Ts and password before the Uri. Those releases give
every auth failure the same 401 10008 and the same message, so the order shows in no answer.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from obshell_sim_helpers import PASSWORD, error_of, signed_header, sim_config, v1_header
from obstop.obshell import crypto
from obstop.testing.obshell_sim import KNOWN_RELEASES, NEWEST, ObshellSimulator, SimAgent, SimulatorConfig
from obstop.testing.obshell_sim.releases import DEFAULT_BUILD, Release
from obstop.testing.waiting import until

KEYS = bytes(range(32))


@dataclass(frozen=True)
class Expect:
    """What one obshell release answers (fact sheet §7), written out by hand."""

    version: str
    key_bits: int
    supported_auth: bool  # /api/v1/info supportedAuth: from 4.2.5.0
    agent_header: bool  # X-OCS-Agent-Header honoured: from 4.2.6.0
    err_codes: bool  # {code?, errCode, message}: from 4.3.1.0
    unauthorized: str  # message of 401 10008 before 4.3.1.0, "{}" = the detail
    decrypt_code: int | None  # `code` with errCode ...Header.DecryptFailed: 1 from 4.4.2.0
    history_route: bool  # GET /api/v1/task/dags/agent: from 4.3.0.0
    strict_stop: bool  # 4.4.1.0 stop checks
    v1: bool = False  # 4.2.2.0: auth v1 only (inferred from the SDKs)


EXPECT = {
    e.version: e
    for e in (
        Expect("4.2.2.0", 512, False, False, False, "err.unauthorized", None, False, False, v1=True),
        Expect("4.2.3.0", 512, False, False, False, "err.unauthorized", None, False, False),
        Expect("4.2.4.0", 512, False, False, False, "Verification failed", None, False, False),
        Expect("4.2.5.0", 512, True, False, False, "Verification failed", None, False, False),
        Expect("4.2.6.0", 512, True, True, False, "Verification failed: {}", None, False, False),
        Expect("4.3.0.0", 512, True, True, False, "Verification failed: {}", None, True, False),
        Expect("4.3.1.0", 512, True, True, True, "", None, True, False),
        Expect("4.4.0.0", 512, True, True, True, "", None, True, False),
        Expect("4.4.1.0", 512, True, True, True, "", None, True, True),
        Expect("4.4.1.1", 512, True, True, True, "", None, True, True),
        Expect("4.4.2.0", 1024, True, True, True, "", 1, True, True),
        Expect("4.5.0.0", 1024, True, True, True, "", 1, True, True),
    )
}
ALL = tuple(EXPECT)
V2 = tuple(v for v in ALL if not EXPECT[v].v1)
OLD = tuple(v for v in ALL if not EXPECT[v].err_codes)  # {code, message} only
OLD_V2 = tuple(v for v in OLD if not EXPECT[v].v1)


def test_every_named_profile_has_an_expectation() -> None:
    assert set(KNOWN_RELEASES) <= set(EXPECT) and NEWEST == "4.5.0.0" == KNOWN_RELEASES[-1]
    assert SimulatorConfig(password=PASSWORD).release.version == NEWEST


def old_unauthorized(expect: Expect, detail: str) -> dict[str, Any]:
    return {"code": 10008, "message": expect.unauthorized.format(detail)}


@pytest.fixture
async def sim(request: pytest.FixtureRequest) -> AsyncIterator[ObshellSimulator]:
    async with ObshellSimulator(sim_config(request.param)) as s:
        yield s


def _sign(sim: ObshellSimulator, agent: SimAgent, uri: str, **kwargs: Any) -> dict[str, str]:
    """Auth headers as a correct client makes them for this release: v1 on 4.2.2.0, else X-OCS-Header."""
    if sim.release.auth_v1_only:
        ts = kwargs.get("ts")
        return {"X-OCS-Auth": v1_header(agent, password=kwargs.get("password", PASSWORD), ts=ts)}
    return {"X-OCS-Header": signed_header(agent, uri=uri, **kwargs)}


async def call(
    sim: ObshellSimulator,
    method: str,
    uri: str,
    body: Any = None,
    *,
    agent: SimAgent | None = None,
    headers: dict[str, str] | None = None,
    **sign: Any,
) -> httpx.Response:
    """One signed request (body AES-encrypted for auth v2, plaintext for v1), as the SDKs send it."""
    agent = agent or sim.agents[0]
    if headers is None:
        headers = _sign(sim, agent, uri, **sign)
    content = None
    if body is not None:
        plain = json.dumps(body).encode()
        content = plain if sim.release.auth_v1_only else crypto.aes_encrypt(KEYS, plain).encode()
    async with httpx.AsyncClient(base_url=agent.url) as http:
        return await http.request(method, uri, headers=headers, content=content)


def stop_body(scope: str = "GLOBAL", targets: list[str] | None = None, **mode: bool) -> dict[str, Any]:
    return {
        "scope": {"type": scope, "target": targets or []},
        "force": mode.get("force", False),
        "terminate": mode.get("terminate", False),
        "forcePassDag": {"id": []},
    }


async def wait_dag(sim: ObshellSimulator, generic_id: str) -> dict[str, Any]:
    async def finished() -> dict[str, Any] | None:
        response = await call(sim, "GET", f"/api/v1/task/dag/{generic_id}")
        assert response.status_code == 200, response.text
        data: dict[str, Any] = response.json()["data"]
        return data if data["state"] in ("SUCCEED", "FAILED") else None

    return await until(finished, 60, f"DAG {generic_id} finished")


# ------------------------------------------------------------------------------------------------------
# Parsing versions


@pytest.mark.parametrize(
    ("text", "version", "status_version"),
    [
        ("4.4.1.0", "4.4.1.0", f"4.4.1.0-{DEFAULT_BUILD}"),
        ("4.4.1", "4.4.1.0", f"4.4.1.0-{DEFAULT_BUILD}"),
        ("4.4.1.0-100000012025090911", "4.4.1.0", "4.4.1.0-100000012025090911"),
        (" 4.3.2.0 ", "4.3.2.0", f"4.3.2.0-{DEFAULT_BUILD}"),
        ("4.10.0.0", "4.10.0.0", f"4.10.0.0-{DEFAULT_BUILD}"),
    ],
)
def test_version_forms(text: str, version: str, status_version: str) -> None:
    release = Release.parse(text)
    assert (release.version, release.status_version) == (version, status_version)


@pytest.mark.parametrize("text", ["", "4", "4.4", "4.x.1", "v4.4.1", "4.4.1.0.0", "4.2.1.9", "3.9.9.9"])
def test_unparseable_or_too_old_versions_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match=r"known profiles: 4\.2\.2\.0, 4\.2\.3\.0"):
        SimulatorConfig(password=PASSWORD, version=text)


def test_thresholds_between_the_named_profiles() -> None:
    # Versions that are not profiles land on the side of each threshold that §7 says.
    assert not Release.parse("4.2.4.99").supported_auth and Release.parse("4.2.5.0").supported_auth
    assert not Release.parse("4.2.5.9").uri_checked_first and Release.parse("4.2.6.0").uri_checked_first
    assert not Release.parse("4.2.9.0").dag_history_routes and Release.parse("4.3.0.0").dag_history_routes
    assert not Release.parse("4.3.0.5").err_codes and Release.parse("4.3.1.0").err_codes
    assert not Release.parse("4.4.0.9").strict_stop_checks and Release.parse("4.4.1.0").strict_stop_checks
    assert Release.parse("4.4.1.1").key_bits == 512 and Release.parse("4.4.2.0").key_bits == 1024
    assert (
        Release.parse("4.4.1.1").decrypt_failed_code == 0
        and Release.parse("4.4.2.0").decrypt_failed_code == 1
    )
    assert Release.parse("4.2.2.5").auth_v1_only and not Release.parse("4.2.3.0").auth_v1_only


# ------------------------------------------------------------------------------------------------------
# /api/v1/info, /api/v1/status, /api/v1/secret


@pytest.mark.parametrize("sim", ALL, indirect=True)
async def test_info_and_status_say_the_version(sim: ObshellSimulator) -> None:
    expect = EXPECT[sim.config.version]
    async with httpx.AsyncClient(base_url=sim.agents[0].url) as http:
        info = (await http.get("/api/v1/info")).json()["data"]
        status = (await http.get("/api/v1/status")).json()["data"]
    assert info["version"] == expect.version
    assert status["version"] == f"{expect.version}-{DEFAULT_BUILD}"
    if expect.supported_auth:
        assert info["supportedAuth"] == ["v2"]
    else:
        assert "supportedAuth" not in info
    assert info["identity"] == status["agent"]["identity"] == "CLUSTER AGENT"


@pytest.mark.parametrize("sim", ALL, indirect=True)
async def test_public_key_size(sim: ObshellSimulator) -> None:
    expect = EXPECT[sim.config.version]
    async with httpx.AsyncClient(base_url=sim.agents[0].url) as http:
        text = (await http.get("/api/v1/secret")).json()["data"]["public_key"]
    assert crypto.load_public_key(text).key_size == expect.key_bits
    if expect.key_bits == 512:
        assert text.startswith("MEgCQQ") and len(text) < 110
    else:
        assert text.startswith("MIGJAoGBA") and len(text) == 188


async def test_key_bits_overrides_the_release() -> None:
    async with ObshellSimulator(sim_config("4.2.3.0", zones=1, key_bits=1024)) as sim:
        assert sim.agents[0].key.key_size == 1024
        sim.rotate_key()
        assert sim.agents[0].key.key_size == 1024
    async with ObshellSimulator(sim_config("4.4.2.0", zones=1)) as sim:
        sim.rotate_key()
        assert sim.agents[0].key.key_size == 1024


# ------------------------------------------------------------------------------------------------------
# Unknown routes and the DAG history route


@pytest.mark.parametrize("sim", ALL, indirect=True)
async def test_unknown_route(sim: ObshellSimulator) -> None:
    expect = EXPECT[sim.config.version]
    response = await call(sim, "GET", "/api/v1/nothing/here")
    if expect.err_codes:
        assert response.status_code == 404
        assert error_of(response) == {
            "errCode": "Common.NotFound",
            "message": "Element not found: 404 not found",
        }
    else:
        assert response.status_code == 400
        assert error_of(response) == {"code": 1000, "message": "Bad request: 404 not found"}


@pytest.mark.parametrize("sim", ALL, indirect=True)
async def test_dag_history_route(sim: ObshellSimulator) -> None:
    expect = EXPECT[sim.config.version]
    created = await call(sim, "POST", "/api/v1/ob/stop", stop_body(force=True))
    assert created.status_code == 200, created.text
    response = await call(sim, "GET", "/api/v1/task/dags/agent")
    if expect.history_route:
        assert response.status_code == 200
        assert [d["id"] for d in response.json()["data"]["contents"]] == [created.json()["data"]["id"]]
    else:  # absent: the unknown-route answer, a 400 (so not "no such DAG")
        assert response.status_code == 400
        assert error_of(response) == {"code": 1000, "message": "Bad request: 404 not found"}


# ------------------------------------------------------------------------------------------------------
# Auth failures


@pytest.mark.parametrize("sim", ALL, indirect=True)
async def test_undecryptable_header(sim: ObshellSimulator) -> None:
    expect = EXPECT[sim.config.version]
    garbage = {"X-OCS-Header": base64.b64encode(b"\x01" * (expect.key_bits // 8)).decode()}
    response = await call(sim, "GET", "/api/v1/info", headers=garbage)
    if expect.v1:  # 4.2.2.0 does not know X-OCS-Header: an open route just answers
        assert response.status_code == 200
        return
    assert response.status_code == 401
    error = error_of(response)
    if not expect.err_codes:  # like a wrong password
        assert error == old_unauthorized(expect, "header decrypt failed")
        return
    # The detail after the prefix is the Go error text (which step failed), not pinned here.
    assert error["message"].startswith("Decrypt http header failed: ")
    wanted: dict[str, Any] = {
        "errCode": "Security.Authentication.Header.DecryptFailed",
        "message": error["message"],
    }
    if expect.decrypt_code is not None:
        wanted = {"code": expect.decrypt_code, **wanted}
    assert error == wanted and list(error) == list(wanted)


@pytest.mark.parametrize("sim", ["4.3.1.0", "4.4.1.0", "4.4.2.0", "4.5.0.0"], indirect=True)
async def test_header_made_with_an_old_key_after_rotation(sim: ObshellSimulator) -> None:
    expect = EXPECT[sim.config.version]
    old = sim.agents[0].key
    sim.rotate_key()
    header = crypto.rsa_encrypt(old.public_key(), json.dumps({"auth": PASSWORD}).encode())
    response = await call(sim, "GET", "/api/v1/task/dag/unfinish", headers={"X-OCS-Header": header})
    assert response.status_code == 401
    assert error_of(response).get("code") == expect.decrypt_code


@pytest.mark.parametrize("sim", ALL, indirect=True)
async def test_missing_header(sim: ObshellSimulator) -> None:
    expect = EXPECT[sim.config.version]
    response = await call(sim, "POST", "/api/v1/ob/stop", stop_body(force=True), headers={})
    if expect.err_codes:
        assert response.status_code == 400
        assert error_of(response) == {
            "errCode": "Request.Header.NotFound",
            "message": "X-OCS-Agent-Header or X-OCS-Header not found in http request header",
        }
    else:
        assert response.status_code == 401
        assert error_of(response) == old_unauthorized(expect, "header not found")
    assert sim.landed_stops() == []


@pytest.mark.parametrize("sim", ["4.2.2.0"], indirect=True)
async def test_auth_v2_header_on_a_v1_agent_is_refused(sim: ObshellSimulator) -> None:
    header = {"X-OCS-Header": signed_header(sim.agents[0], uri="/api/v1/task/dag/unfinish")}
    response = await call(sim, "GET", "/api/v1/task/dag/unfinish", headers=header)
    assert response.status_code == 401
    assert error_of(response) == {"code": 10008, "message": "err.unauthorized"}
    good = await call(sim, "GET", "/api/v1/task/dag/unfinish")  # X-OCS-Auth
    assert good.status_code == 200 and good.json()["data"] == {"contents": []}


@pytest.mark.parametrize("sim", ALL, indirect=True)
async def test_expired_header(sim: ObshellSimulator) -> None:
    expect = EXPECT[sim.config.version]
    expired = int(time.time()) - 5
    response = await call(sim, "GET", "/api/v1/task/dag/unfinish", ts=expired if expect.v1 else str(expired))
    assert response.status_code == 401
    if expect.err_codes:
        assert error_of(response) == {
            "code": 10008,
            "errCode": "Security.Authentication.Expired",
            "message": "Unauthorized: Authentication expired",
        }
    else:
        assert error_of(response) == old_unauthorized(expect, "auth expired")


@pytest.mark.parametrize("sim", ALL, indirect=True)
async def test_wrong_password(sim: ObshellSimulator) -> None:
    expect = EXPECT[sim.config.version]
    response = await call(sim, "POST", "/api/v1/ob/stop", stop_body(force=True), password="not-it")
    assert response.status_code == 401
    if expect.err_codes:
        assert error_of(response) == {
            "code": 10008,
            "errCode": "Security.Authentication.IncorrectOceanbasePassword",
            "message": "Unauthorized: OceanBase password is incorrect",
        }
    else:
        assert error_of(response) == old_unauthorized(expect, "access denied")
    assert "not-it" not in response.text and sim.landed_stops() == []


@pytest.mark.parametrize("sim", V2, indirect=True)
async def test_wrong_uri_and_wrong_password(sim: ObshellSimulator) -> None:
    """From 4.2.6.0 the Uri is checked first, so a bad Uri is what is reported."""
    expect = EXPECT[sim.config.version]
    uri = "/api/v1/task/dag/unfinish"
    response = await call(
        sim, "GET", uri, headers={"X-OCS-Header": signed_header(sim.agents[0], uri="/x", password="no")}
    )
    assert response.status_code == 401
    if expect.err_codes:
        assert error_of(response) == {
            "code": 10008,
            "errCode": "Security.Authentication.Header.UriMismatch",
            "message": "URI mismatch",  # not wrapped: no "Unauthorized: " prefix (§1.3)
        }
    else:
        assert error_of(response) == old_unauthorized(expect, "uri mismatch")


@pytest.mark.parametrize("sim", V2, indirect=True)
async def test_body_that_does_not_decrypt(sim: ObshellSimulator) -> None:
    expect = EXPECT[sim.config.version]
    header = {"X-OCS-Header": signed_header(sim.agents[0], uri="/api/v1/ob/stop")}
    async with httpx.AsyncClient(base_url=sim.agents[0].url) as http:
        response = await http.post("/api/v1/ob/stop", headers=header, json=stop_body(force=True))
    if expect.err_codes:
        assert response.status_code == 500
        assert error_of(response) == {
            "errCode": "Request.Body.Decrypt.AES.ContentLength.Invalid",
            "message": "Unauthorized: Decrypted string length is not a multiple of the block size",
        }
    else:
        assert response.status_code == 401
        assert error_of(response) == old_unauthorized(expect, "body decrypt failed")
    assert sim.landed_stops() == []


@pytest.mark.parametrize("sim", V2, indirect=True)
async def test_agent_header(sim: ObshellSimulator) -> None:
    """X-OCS-Agent-Header wins over X-OCS-Header from 4.2.6.0; older agents ignore it."""
    expect = EXPECT[sim.config.version]
    good = signed_header(sim.agents[0], uri="/api/v1/task/dag/unfinish")
    headers = {"X-OCS-Header": good, "X-OCS-Agent-Header": good}
    response = await call(sim, "GET", "/api/v1/task/dag/unfinish", headers=headers)
    if not expect.agent_header:
        assert response.status_code == 200
        return
    assert response.status_code == 401  # no agent password is set on these agents
    if expect.err_codes:
        assert error_of(response) == {
            "code": 10008,
            "errCode": "Security.Authentication.WithOceanBasePassword",
            "message": "Unauthorized: Should use oceanbase_password to verify: agent password is not initialized",
        }
    else:
        assert error_of(response) == old_unauthorized(
            expect, "agent password is not initialized, use oceanbase password to verify"
        )


# ------------------------------------------------------------------------------------------------------
# Stop validation


@pytest.mark.parametrize("sim", ALL, indirect=True)
async def test_stop_parameter_errors(sim: ObshellSimulator) -> None:
    expect = EXPECT[sim.config.version]
    cases = [
        (
            stop_body(),
            "OB.Cluster.ForceStopOrTerminateRequired",
            "Cannot stop all observers without 'force' and 'terminate'",
            "cannot stop all observer without 'force'",
        ),
        (
            stop_body(force=True, terminate=True),
            "OB.Cluster.StopModeConflict",
            "Cannot stop observer with 'force' and 'terminate' at the same time",
            "cannot stop observer with 'force' and 'terminate' at the same time",
        ),
        (
            stop_body("ZONE", force=True),
            "Common.IllegalArgument",
            "The input parameter 'target' is illegal: target is empty",
            "zone scope must have target",
        ),
        (
            stop_body("ZONE", ["zone9"], force=True),
            "OB.Zone.NotExist",
            "Zone 'zone9' does not exist",
            "zone 'zone9' not exist",
        ),
        (
            stop_body("CLUSTER", force=True),
            "OB.Cluster.Scope.Invalid",
            "Scope 'CLUSTER' is invalid",
            "unknow scope type 'CLUSTER'",
        ),
    ]
    for body, err_code, message, old_detail in cases:
        response = await call(sim, "POST", "/api/v1/ob/stop", body)
        assert response.status_code == 400, (body, response.text)
        if expect.err_codes:
            assert error_of(response) == {"errCode": err_code, "message": message}
        else:
            assert error_of(response) == {"code": 1001, "message": f"Illegal argument: {old_detail}"}
    assert sim.landed_stops() == []


@pytest.mark.parametrize("sim", ALL, indirect=True)
async def test_identity_error_of_a_non_cluster_agent(sim: ObshellSimulator) -> None:
    expect = EXPECT[sim.config.version]
    agent = sim.agents[0]
    sim.set_identity(agent.address, "SINGLE")
    async with httpx.AsyncClient(base_url=agent.url) as http:
        assert (await http.get("/api/v1/info")).json()["data"]["identity"] == "SINGLE"
        assert (await http.get("/api/v1/status")).json()["data"]["agent"]["identity"] == "SINGLE"
    # A SINGLE agent without an agent password accepts any decryptable header (§2.3): the stop itself refuses.
    response = await call(sim, "POST", "/api/v1/ob/stop", stop_body(force=True), password="anything")
    if expect.err_codes:
        assert response.status_code == 400
        assert error_of(response) == {
            "errCode": "Agent.Identify.NotSupportOperation",
            "message": f"'{agent.address}' is 'SINGLE', instead of 'CLUSTER AGENT', does not support this operation",
        }
    else:
        assert response.status_code == 500
        assert error_of(response) == {"code": 1010, "message": "Known error: agent identity is 'SINGLE'"}
    assert sim.landed_stops() == []
    sim.reset()
    assert agent.identity == "CLUSTER AGENT"


async def test_identity_must_be_a_simulated_one() -> None:
    async with ObshellSimulator(sim_config(zones=1)) as sim:
        with pytest.raises(ValueError, match="FOLLOWER"):
            sim.set_identity(sim.agents[0].address, "FOLLOWER")


@pytest.mark.parametrize("sim", ALL, indirect=True)
async def test_zone_stop_with_force_while_the_local_observer_is_down(sim: ObshellSimulator) -> None:
    expect = EXPECT[sim.config.version]
    sim.set_observer(sim.agents[0].address, running=False)
    response = await call(sim, "POST", "/api/v1/ob/stop", stop_body("ZONE", ["zone2"], force=True))
    if expect.strict_stop:
        assert response.status_code == 400
        assert error_of(response) == {
            "errCode": "OB.Cluster.ForceStopRequired",
            "message": "The current observer is not available, please stop with 'force'",
        }
        assert sim.landed_stops() == []
    else:  # up to 4.4.0.0 only `!force` needs the local observer
        assert response.status_code == 200, response.text
        assert (await wait_dag(sim, response.json()["data"]["id"]))["state"] == "SUCCEED"
    # Without force every release refuses, in its own form.
    refused = await call(sim, "POST", "/api/v1/ob/stop", stop_body("ZONE", ["zone2"], terminate=True))
    assert refused.status_code == 400
    if expect.err_codes:
        assert error_of(refused)["errCode"] == "OB.Cluster.ForceStopRequired"
    else:
        assert error_of(refused) == {
            "code": 1001,
            "message": "Illegal argument: The current observer is not available, please stop with 'force'",
        }


@pytest.mark.parametrize("sim", V2, indirect=True)
async def test_stop_sql_after_the_local_observer_went_away(sim: ObshellSimulator) -> None:
    """§3.4 node 6 and §7: an immediate stop whose receiving agent's observer process is gone by the time of
    `Execute stop sql` fails there before 4.3.1.0 (a plain Go error, its deferred pass releasing the sub-DAGs);
    from 4.3.1.0 the node does nothing and the DAG succeeds."""
    expect = EXPECT[sim.config.version]
    receiver, target = sim.agents[0], sim.agents[1]
    created = await call(sim, "POST", "/api/v1/ob/stop", stop_body("SERVER", [target.address]))
    assert created.status_code == 200, created.text
    sim.set_observer(receiver.address, running=False)  # after the POST's check of it
    done = await wait_dag(sim, created.json()["data"]["id"])
    if expect.err_codes:
        assert done["state"] == "SUCCEED"
        return
    assert done["state"] == "FAILED"
    failed = [node for node in done["nodes"] if node["state"] == "FAILED"]
    assert [node["name"] for node in failed] == ["Execute stop sql"]
    assert failed[0]["sub_tasks"][-1]["task_logs"][-1] == "ERROR: check observer process exist: false, <nil>,"
    # Its sub-DAGs were passed: no agent stays locked, and the next stop needs no forcePassDag.
    locks = await call(sim, "GET", "/api/v1/task/dag/maintain/agents?show_details=true")
    held = [dag for dag in locks.json()["data"]["contents"] if dag["state"] not in ("SUCCEED",)]
    assert held == [], held
    sim.set_observer(receiver.address, running=True)
    again = await call(sim, "POST", "/api/v1/ob/stop", stop_body("SERVER", [target.address]))
    assert (await wait_dag(sim, again.json()["data"]["id"]))["state"] == "SUCCEED"


@pytest.mark.parametrize("sim", ALL, indirect=True)
async def test_per_zone_stop_route(sim: ObshellSimulator) -> None:
    """§5 and §7 "per-zone stop": from 4.4.1.0, POST /api/v1/ob/zone/{zone}/stop makes a "Stop OB" DAG whose stop
    sql comes third (6 nodes; 7 with `freeze_server`) and that kills every observer of the zone, after the checks
    of /stop/check. Before, the route is unknown."""
    expect = EXPECT[sim.config.version]
    body = {"freeze_server": False, "forcePassDag": {"id": []}}
    response = await call(sim, "POST", "/api/v1/ob/zone/zone2/stop", body)
    if not expect.strict_stop:
        unknown = {"errCode": "Common.NotFound", "message": "Element not found: 404 not found"}
        old = {"code": 1000, "message": "Bad request: 404 not found"}
        assert response.status_code == (404 if expect.err_codes else 400)
        assert error_of(response) == (unknown if expect.err_codes else old)
        assert sim.landed_stops() == []
        return
    assert response.status_code == 200, response.text
    created = response.json()["data"]
    assert (created["name"], created["max_stage"], created["nodes"]) == ("Stop OB", 6, None)
    done = await wait_dag(sim, created["id"])
    assert done["state"] == "SUCCEED", done
    assert [node["name"] for node in done["nodes"]] == [
        "Inform all agents to prepare to stop observer",
        "Make sure all agents are ready",
        "Execute stop sql",
        "Advance agents to execute the task",
        "Wait for all agents to execute tasks successfully",
        "Inform all agents to end the task",
    ]
    assert {a.zone: a.observer_running for a in sim.agents} == {"zone1": True, "zone2": False, "zone3": True}
    assert len(sim.landed_stops()) == 1
    # The checks of /stop/check come first: zone2 is stopped, so zone3 may not be.
    refused = await call(sim, "POST", "/api/v1/ob/zone/zone3/stop", {**body, "freeze_server": True})
    assert refused.status_code == 400 and error_of(refused)["errCode"] == "OB.Server.StoppedInMultiZone"
    missing = await call(sim, "POST", "/api/v1/ob/zone/zone9/stop", body)
    assert missing.status_code == 400 and error_of(missing)["errCode"] == "OB.Zone.NotExist"
    bad = await call(sim, "POST", "/api/v1/ob/zone/zone1/stop", {"freeze_server": "yes"})
    assert bad.status_code == 400 and error_of(bad)["errCode"] == "Common.BindJsonFailed"


@pytest.mark.parametrize("version", ["4.4.1.0", "4.5.0.0"])
async def test_per_zone_stop_with_a_minor_freeze_has_seven_nodes(version: str) -> None:
    async with ObshellSimulator(sim_config(version)) as sim:
        body = {"freeze_server": True, "forcePassDag": {"id": []}}
        response = await call(sim, "POST", "/api/v1/ob/zone/zone3/stop", body)
        assert response.status_code == 200, response.text
        done = await wait_dag(sim, response.json()["data"]["id"])
        assert done["state"] == "SUCCEED" and done["max_stage"] == 7
        names = [node["name"] for node in done["nodes"]]
        assert names[2:4] == ["Execute stop sql", "Minor freeze before stop server"], names
        assert [a.zone for a in sim.agents if not a.observer_running] == ["zone3"]


@pytest.mark.parametrize("sim", ALL, indirect=True)
async def test_immediate_stops_across_zones(sim: ObshellSimulator) -> None:
    expect = EXPECT[sim.config.version]
    agents = sim.agents
    servers = stop_body("SERVER", [agents[1].address, agents[2].address])
    zones = stop_body("ZONE", ["zone2", "zone3"])
    for body in (servers, zones):
        response = await call(sim, "POST", "/api/v1/ob/stop", body)
        if expect.strict_stop:
            assert response.status_code == 400
            assert error_of(response) == {
                "errCode": "OB.Server.StoppedInMultiZone",
                "message": "Cannot stop server or stop zone in multiple zones",
            }
        else:  # no one-zone check before 4.4.1.0
            assert response.status_code == 200, response.text
            assert (await wait_dag(sim, response.json()["data"]["id"]))["state"] == "SUCCEED"
    assert len(sim.landed_stops()) == (0 if expect.strict_stop else 2)


@pytest.mark.parametrize("version", ["4.4.0.0", "4.4.1.0"])
async def test_immediate_zone_stop_majority_check_from_4_4_1(version: str) -> None:
    async with ObshellSimulator(sim_config(version, zones=2)) as sim:
        response = await call(sim, "POST", "/api/v1/ob/stop", stop_body("ZONE", ["zone2"]))
    if EXPECT[version].strict_stop:
        assert response.status_code == 400
        assert error_of(response) == {
            "errCode": "OB.Cluster.Tenant.Replica.Invalid",
            "message": "err.ob.cluster.tenant.replica.invalid",
        }
    else:
        assert response.status_code == 200, response.text


# ------------------------------------------------------------------------------------------------------
# DAGs: lookups, operators, task logs


@pytest.mark.parametrize("sim", ALL, indirect=True)
async def test_get_dag_errors(sim: ObshellSimulator) -> None:
    expect = EXPECT[sim.config.version]
    invalid = await call(sim, "GET", "/api/v1/task/dag/abc")
    missing_id = f"2{2130706433:010d}{sim.agents[0].port:05d}999"
    missing = await call(sim, "GET", f"/api/v1/task/dag/{missing_id}")
    assert (invalid.status_code, missing.status_code) == (400, 404)
    if expect.err_codes:
        assert error_of(invalid) == {"errCode": "Task.GenericID.Invalid", "message": "Invalid ID: abc"}
        assert error_of(missing) == {
            "errCode": "Task.NotFound",
            "message": "Task not found: record not found",
        }
    else:
        assert error_of(invalid) == {"code": 1001, "message": "Illegal argument: invalid id: abc"}
        assert error_of(missing) == {"code": 2300, "message": "Task not found: record not found"}


@pytest.mark.parametrize("sim", ALL, indirect=True)
async def test_an_id_that_does_not_round_trip(sim: ObshellSimulator) -> None:
    """§4.5 and §7: an id naming an existing DAG with leading zeros in its number is 404 `dag id not match` from
    4.2.6.0; before, that DAG is served."""
    expect = EXPECT[sim.config.version]
    created = await call(sim, "POST", "/api/v1/ob/stop", stop_body(force=True))
    canonical = created.json()["data"]["id"]
    padded = f"{canonical[:16]}0{canonical[16:]}"  # the same agent and number, one zero more
    response = await call(sim, "GET", f"/api/v1/task/dag/{padded}")
    if expect.agent_header:  # 4.2.6.0, the release of the check
        assert response.status_code == 404
        message = "Task not found: dag id not match"
        assert error_of(response) == (
            {"errCode": "Task.NotFound", "message": message}
            if expect.err_codes
            else {"code": 2300, "message": message}
        )
    else:
        assert response.status_code == 200, response.text
        assert response.json()["data"]["id"] == canonical


@pytest.mark.parametrize("sim", ALL, indirect=True)
async def test_dag_operator_refusals(sim: ObshellSimulator) -> None:
    expect = EXPECT[sim.config.version]
    created = await call(sim, "POST", "/api/v1/ob/stop", stop_body(force=True))
    dag_id = created.json()["data"]["id"]
    assert (await wait_dag(sim, dag_id))["state"] == "SUCCEED"
    cancel = await call(sim, "POST", f"/api/v1/task/dag/{dag_id}", {"operator": "CANCEL"})
    retry = await call(sim, "POST", f"/api/v1/task/dag/{dag_id}", {"operator": "RETRY"})
    bogus = await call(sim, "POST", f"/api/v1/task/dag/{dag_id}", {"operator": "JUMP"})
    if expect.err_codes:
        assert (cancel.status_code, retry.status_code, bogus.status_code) == (400, 400, 400)
        assert error_of(cancel) == {
            "errCode": "Task.Dag.Operator.CancelFinishedDag",
            "message": "Failed to cancel DAG: DAG is finished",
        }
        assert error_of(retry) == {
            "errCode": "Task.Dag.Operator.RetryNotFailedDag",
            "message": "Failed to retry DAG: DAG state is not failed",
        }
        assert error_of(bogus) == {
            "errCode": "Task.Dag.Operator.NotSupport",
            "message": "Operator JUMP is not supported",
        }
    else:
        assert (cancel.status_code, retry.status_code, bogus.status_code) == (500, 500, 500)
        assert error_of(cancel) == {
            "code": 1010,
            "message": "Known error: failed to cancel dag: dag is finished",
        }
        assert error_of(retry) == {
            "code": 1010,
            "message": "Known error: failed to set dag retry: dag state is not failed",
        }
        assert error_of(bogus) == {"code": 1010, "message": "Known error: invalid operator: JUMP"}


@pytest.mark.parametrize("sim", ALL, indirect=True)
async def test_task_log_error_line(sim: ObshellSimulator) -> None:
    expect = EXPECT[sim.config.version]
    sim.faults.fail_stop("Make sure all agents are ready", "Sim.Release.Failure", "seen in the log")
    created = await call(sim, "POST", "/api/v1/ob/stop", stop_body(force=True))
    done = await wait_dag(sim, created.json()["data"]["id"])
    assert done["state"] == "FAILED"
    failed = next(node for node in done["nodes"] if node["state"] == "FAILED")
    last = failed["sub_tasks"][-1]["task_logs"][-1]
    if expect.err_codes:
        assert last == "ERROR: [Sim.Release.Failure]: seen in the log"
    else:
        assert last == "ERROR: seen in the log"


@pytest.mark.parametrize("sim", OLD_V2, indirect=True)
async def test_injected_request_errors_in_the_old_form(sim: ObshellSimulator) -> None:
    sim.faults.error_burst(1, route="/api/v1/task/dag/unfinish")
    response = await call(sim, "GET", "/api/v1/task/dag/unfinish")
    assert response.status_code == 500
    assert error_of(response) == {"code": 1002, "message": "Unexpected error: Internal Server Error"}


@pytest.mark.parametrize("version", ["4.3.0.0", "4.5.0.0"])
async def test_single_agent_with_an_agent_password_wants_the_agent_header(version: str) -> None:
    """A SINGLE agent with an agent password set accepts only X-OCS-Agent-Header carrying it (§2.3 step 4)."""
    async with ObshellSimulator(sim_config(version, zones=1, agent_password="agent-pw-1")) as sim:
        agent = sim.agents[0]
        sim.set_identity(agent.address, "SINGLE")
        uri = "/api/v1/task/dag/unfinish"
        root = await call(sim, "GET", uri)
        right = await call(
            sim,
            "GET",
            uri,
            headers={"X-OCS-Agent-Header": signed_header(agent, uri=uri, password="agent-pw-1")},
        )
        wrong = await call(
            sim, "GET", uri, headers={"X-OCS-Agent-Header": signed_header(agent, uri=uri, password="nope")}
        )
    assert (root.status_code, right.status_code, wrong.status_code) == (401, 200, 401)
    if EXPECT[version].err_codes:
        assert error_of(root) == {
            "code": 10008,
            "errCode": "Security.Authentication.WithAgentPassword",
            "message": "Unauthorized: Should use agent_password to verify: agent password has been set",
        }
        assert error_of(wrong)["errCode"] == "Security.Authentication.IncorrectAgentPassword"
    else:
        assert error_of(root) == {
            "code": 10008,
            "message": "Verification failed: agent password has been set, use agent password to verify",
        }
        assert error_of(wrong) == {
            "code": 10008,
            "message": "Verification failed: access denied: agent password is incorrect",
        }
