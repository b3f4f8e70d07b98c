"""The simulated agent's auth and envelope over real HTTP, requests made by hand (fact sheet §1, §2, §6 items
1-5): envelopes, the key route, unknown and protected routes, expired and mismatched headers, header keys,
plaintext bodies, the agent header. The client's handling of them is tests/integration/test_auth_and_wire.py."""

from __future__ import annotations

import base64
import datetime
import json
import time

import httpx

from obshell_sim_helpers import PASSWORD, error_of, signed_header, stop_params
from obstop.obshell import crypto
from obstop.testing.obshell_sim import ObshellSimulator

STOP_BODY = stop_params(force=True).to_wire()


async def test_envelope_of_a_success_echoes_the_trace_id(raw: httpx.AsyncClient) -> None:
    response = await raw.get("/api/v1/info", headers={"X-OBSHELL-Trace-ID": "abc123"})
    body = response.json()
    assert response.headers["content-type"].startswith("application/json")
    assert list(body) == ["successful", "timestamp", "duration", "status", "traceId", "data"]
    assert (body["successful"], body["status"], body["traceId"]) == (True, 200, "abc123")
    assert isinstance(body["duration"], int)
    datetime.datetime.fromisoformat(body["timestamp"])
    assert body["data"]["supportedAuth"] == ["v2"] and body["data"]["identity"] == "CLUSTER AGENT"
    random_trace = (await raw.get("/api/v1/info")).json()["traceId"]
    assert len(random_trace) == 16 and int(random_trace, 16) >= 0
    assert (await raw.get("/api/v1/status")).json()["traceId"] == ""


async def test_secret_is_a_pkcs1_der_key(sim: ObshellSimulator, raw: httpx.AsyncClient) -> None:
    data = (await raw.get("/api/v1/secret")).json()["data"]
    agent = sim.agents[0]
    assert (data["ip"], data["port"]) == (agent.ip, agent.port)
    assert data["public_key"].startswith("MIGJAoGBA") and len(data["public_key"]) == 188
    crypto.load_public_key(data["public_key"])


async def test_unknown_route_is_404_not_found(raw: httpx.AsyncClient) -> None:
    response = await raw.get("/api/v1/nothing/here")
    assert response.status_code == 404
    assert error_of(response) == {"errCode": "Common.NotFound", "message": "Element not found: 404 not found"}


async def test_protected_route_without_header_is_400(raw: httpx.AsyncClient) -> None:
    response = await raw.post("/api/v1/ob/stop", json=STOP_BODY)
    assert response.status_code == 400
    assert error_of(response)["errCode"] == "Request.Header.NotFound"


async def test_undecryptable_header_is_401_code_1_even_on_an_open_route(raw: httpx.AsyncClient) -> None:
    garbage = base64.b64encode(b"\x01" * 128).decode()
    response = await raw.get("/api/v1/info", headers={"X-OCS-Header": garbage})
    assert response.status_code == 401
    error = error_of(response)
    assert (error["code"], error["errCode"]) == (1, "Security.Authentication.Header.DecryptFailed")


async def test_decryptable_header_on_an_open_route_is_accepted(
    sim: ObshellSimulator, raw: httpx.AsyncClient
) -> None:
    header = signed_header(sim.agents[0], uri="/somewhere/else", password="wrong")
    assert (await raw.get("/api/v1/info", headers={"X-OCS-Header": header})).status_code == 200


async def _post_stop(raw: httpx.AsyncClient, header: str) -> httpx.Response:
    content = crypto.aes_encrypt(bytes(range(32)), json.dumps(STOP_BODY).encode())
    return await raw.post("/api/v1/ob/stop", headers={"X-OCS-Header": header}, content=content)


async def test_expired_header_is_401(sim: ObshellSimulator, raw: httpx.AsyncClient) -> None:
    header = signed_header(sim.agents[0], uri="/api/v1/ob/stop", ts=str(int(time.time()) - 5))
    response = await _post_stop(raw, header)
    assert response.status_code == 401
    assert error_of(response) == {
        "code": 10008,
        "errCode": "Security.Authentication.Expired",
        "message": "Unauthorized: Authentication expired",
    }


async def test_uri_must_match_path_and_query_exactly(sim: ObshellSimulator, raw: httpx.AsyncClient) -> None:
    response = await _post_stop(raw, signed_header(sim.agents[0], uri="/api/v1/ob/stop?x=1"))
    assert response.status_code == 401
    assert error_of(response)["errCode"] == "Security.Authentication.Header.UriMismatch"
    # The uri check runs before the password check.
    response = await _post_stop(raw, signed_header(sim.agents[0], uri="/api/v1/ob/start", password="bad"))
    assert error_of(response)["errCode"] == "Security.Authentication.Header.UriMismatch"


async def test_ts_as_a_json_number_is_a_decrypt_failure(
    sim: ObshellSimulator, raw: httpx.AsyncClient
) -> None:
    header = signed_header(sim.agents[0], uri="/api/v1/ob/stop", ts=int(time.time()) + 60)
    response = await _post_stop(raw, header)
    assert response.status_code == 401
    assert error_of(response)["code"] == 1


async def test_header_keys_are_case_insensitive(sim: ObshellSimulator, raw: httpx.AsyncClient) -> None:
    fields = {
        "Auth": PASSWORD,
        "Ts": str(int(time.time()) + 60),
        "Uri": "/api/v1/ob/stop",
        "Keys": base64.b64encode(bytes(range(32))).decode(),
    }
    response = await _post_stop(raw, signed_header(sim.agents[0], uri="", fields=fields))
    assert response.status_code == 200, response.text
    assert response.json()["data"]["name"] == "Stop OB"


async def test_plaintext_body_with_a_header_is_refused(sim: ObshellSimulator, raw: httpx.AsyncClient) -> None:
    header = signed_header(sim.agents[0], uri="/api/v1/ob/stop")
    response = await raw.post("/api/v1/ob/stop", headers={"X-OCS-Header": header}, json=STOP_BODY)
    assert response.status_code == 500
    assert error_of(response)["errCode"] == "Request.Body.Decrypt.AES.ContentLength.Invalid"
    assert sim.landed_stops() == []


async def test_agent_header_is_preferred_and_needs_an_agent_password(
    sim: ObshellSimulator, raw: httpx.AsyncClient
) -> None:
    good = signed_header(sim.agents[0], uri="/api/v1/ob/stop")
    content = crypto.aes_encrypt(bytes(range(32)), json.dumps(STOP_BODY).encode())
    response = await raw.post(
        "/api/v1/ob/stop", headers={"X-OCS-Header": good, "X-OCS-Agent-Header": good}, content=content
    )
    assert response.status_code == 401
    assert error_of(response)["errCode"] == "Security.Authentication.WithOceanBasePassword"
