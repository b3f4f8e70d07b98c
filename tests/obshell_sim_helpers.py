"""Helpers of the tests that talk to the obshell simulator (tests/integration: the client; tests/harness: the
simulator itself). Imported by name: tests are not a package, and tests/ is on sys.path (its conftest's folder).
The fixtures `sim`, `client` and `raw` are in tests/conftest.py."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import httpx

from obstop.obshell import DagDetail, ObshellClient, Scope, ScopeType, StopParams, crypto
from obstop.testing.obshell_sim import KNOWN_RELEASES, NEWEST, SimAgent, SimulatorConfig
from obstop.testing.waiting import until

PASSWORD = "S3cret-root-pw"
STAGE_SECONDS = 0.02
# The obshell profiles that speak auth v2 (X-OCS-Header), i.e. every one ObshellClient can talk to: 4.2.2.0
# (inferred from the SDKs) speaks auth v1 only (fact sheet §2.4).
V2_RELEASES = tuple(v for v in KNOWN_RELEASES if v != "4.2.2.0")


def sim_config(version: str = NEWEST, **overrides: Any) -> SimulatorConfig:
    """The tests' usual simulated cluster (3 zones, fast stages) behaving as obshell `version` (§7)."""
    settings: dict[str, Any] = {"password": PASSWORD, "zones": 3, "stage_seconds": STAGE_SECONDS}
    return SimulatorConfig(**{**settings, **overrides, "version": version})


def v1_header(agent: SimAgent, *, password: str = PASSWORD, ts: int | None = None) -> str:
    """An auth v1 X-OCS-Auth header (obshell 4.2.2.0 only), as [PY] PasswordAuthMethodV1 makes it: one RSA
    block of {"password", "ts": <int expiry>}."""
    plain = json.dumps({"password": password, "ts": int(time.time()) + 60 if ts is None else ts})
    return crypto.rsa_encrypt(agent.key.public_key(), plain.encode())


def stop_params(
    scope: str = "GLOBAL",
    targets: list[str] | None = None,
    *,
    force: bool = False,
    terminate: bool = False,
    force_pass_dag: list[str] | None = None,
) -> StopParams:
    return StopParams(
        scope=Scope(type=ScopeType(scope), target=targets or []),
        force=force,
        terminate=terminate,
        force_pass_dag=force_pass_dag or [],
    )


async def wait_finished(
    client: ObshellClient, generic_id: str, *, details: bool = True, timeout: float = 60.0
) -> DagDetail:
    """Poll until the DAG is SUCCEED or FAILED."""

    async def finished() -> DagDetail | None:
        dag = await client.get_dag(generic_id, details=details)
        return dag if dag.finished else None

    return await until(finished, timeout, f"DAG {generic_id} finished", interval=STAGE_SECONDS)


def signed_header(
    agent: SimAgent,
    *,
    uri: str,
    password: str = PASSWORD,
    ts: Any = None,
    keys: bytes | None = None,
    fields: dict[str, Any] | None = None,
) -> str:
    """An X-OCS-Header made by hand with the crypto helpers, for the cases a correct client never sends."""
    header: dict[str, Any] = (
        fields
        if fields is not None
        else {
            "auth": password,
            "ts": str(int(time.time()) + 60) if ts is None else ts,
            "uri": uri,
            "keys": base64.b64encode(keys if keys is not None else bytes(range(32))).decode(),
        }
    )
    return crypto.rsa_encrypt(agent.key.public_key(), json.dumps(header).encode())


def error_of(response: httpx.Response) -> dict[str, Any]:
    body = response.json()
    assert body["successful"] is False and body["status"] == response.status_code
    assert "data" not in body
    error: dict[str, Any] = body["error"]
    return error
