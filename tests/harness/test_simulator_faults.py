"""Fault injection and the simulator's own surfaces: in-process faults seen through the client, the
/__sim__ control routes over HTTP, SimulatorThread, and the `obstop sim` process."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator

import httpx
import pytest

from obshell_sim_helpers import PASSWORD, stop_params, wait_finished
from obstop.obshell import ObshellApiError, ObshellClient, ObshellTransportError
from obstop.testing.obshell_sim import ObshellSimulator, SimulatorConfig, SimulatorThread
from obstop.testing.obshell_sim.releases import DEFAULT_BUILD


async def test_dropped_response_may_have_been_delivered_and_did_land(
    sim: ObshellSimulator, client: ObshellClient
) -> None:
    sim.faults.drop_responses()
    with pytest.raises(ObshellTransportError) as caught:
        await client.stop(stop_params(force=True))
    assert caught.value.maybe_delivered is True
    [record] = sim.stops
    assert record.dropped and record.landed and record.params == stop_params(force=True).to_wire()
    # The DAG exists and can be found again, as a controller must do before re-sending.
    assert record.dag_id in {d.id for d in await client.agent_unfinished_dags()}
    await client.stop(stop_params(force=True, force_pass_dag=[record.dag_id or ""]))  # the rule was used up


async def test_error_burst_answers_500_without_executing(
    sim: ObshellSimulator, client: ObshellClient
) -> None:
    sim.faults.error_burst(2, route="/api/v1/ob/stop")
    for _ in range(2):
        with pytest.raises(ObshellApiError) as caught:
            await client.stop(stop_params(force=True))
        assert (caught.value.status, caught.value.err_code, caught.value.transient) == (
            500,
            "Common.Unexpected",
            True,
        )
    assert sim.stops == []
    await client.stop(stop_params(force=True))
    assert len(sim.landed_stops()) == 1


async def test_slow_answer_times_out_after_the_stop_landed(sim: ObshellSimulator) -> None:
    sim.faults.delay(1.0, route="/api/v1/ob/stop", times=1)
    async with ObshellClient(sim.agents[0].url, PASSWORD, timeout=0.3) as client:
        with pytest.raises(ObshellTransportError) as caught:
            await client.stop(stop_params(force=True))
    assert caught.value.maybe_delivered is True
    assert len(sim.landed_stops()) == 1


async def test_control_routes_over_http(sim: ObshellSimulator) -> None:
    agent, other = sim.agents[:2]
    async with httpx.AsyncClient(base_url=agent.url) as control, ObshellClient(agent.url, PASSWORD) as client:
        fault = {"kind": "fail_stop", "node": 2, "errCode": "Sim.Http", "message": "from afar"}
        assert (await control.post("/__sim__/faults", json=fault)).json() == {"ok": True}
        assert (await control.get("/__sim__/faults")).json()["faults"][0]["kind"] == "fail_stop"
        dag = await wait_finished(client, (await client.stop(stop_params(force=True))).id)
        assert dag.failure_log() == "ERROR: [Sim.Http]: from afar"

        stops = (await control.get("/__sim__/stops")).json()["stops"]
        assert [(s["agent"], s["dagId"], s["error"]) for s in stops] == [(agent.address, dag.id, None)]

        await control.post("/__sim__/faults", json={"kind": "agent_down", "agent": other.address})
        await control.post(
            "/__sim__/faults", json={"kind": "observer", "agent": agent.address, "running": False}
        )
        state = (await control.get("/__sim__/state")).json()["clusters"][0]["agents"]
        assert state[0]["obState"] == 0
        async with ObshellClient(other.url, PASSWORD) as down:
            with pytest.raises(ObshellTransportError):
                for _ in range(200):  # the agent goes down just after answering the control request
                    await down.status()
        await control.post("/__sim__/faults", json={"kind": "agent_up", "agent": other.address})
        async with ObshellClient(other.url, PASSWORD) as up:
            assert (await up.status()).agent.port == other.port

        assert (await control.post("/__sim__/reset")).json() == {"ok": True}
        assert (await control.get("/__sim__/stops")).json() == {"stops": []}
        assert (await client.status()).ob_state == 3
        bad = await control.post("/__sim__/faults", json={"kind": "nonsense"})
        assert bad.status_code == 400 and bad.json()["ok"] is False

        # An agent's identity (then stop refuses it, §3.2 step 3); reset makes it a CLUSTER AGENT again.
        single = {"kind": "identity", "agent": agent.address, "identity": "SINGLE"}
        assert (await control.post("/__sim__/faults", json=single)).json() == {"ok": True}
        assert (await control.get("/api/v1/info")).json()["data"]["identity"] == "SINGLE"
        assert (await control.get("/__sim__/state")).json()["clusters"][0]["agents"][0][
            "identity"
        ] == "SINGLE"
        follower = {"kind": "identity", "agent": agent.address, "identity": "FOLLOWER"}
        assert (await control.post("/__sim__/faults", json=follower)).status_code == 400
        await control.post("/__sim__/reset")
        assert (await control.get("/api/v1/info")).json()["data"]["identity"] == "CLUSTER AGENT"


def test_simulator_thread_for_synchronous_code() -> None:
    config = SimulatorConfig(password=PASSWORD, zones=2, clusters=2, stage_seconds=0.02)
    with SimulatorThread(config) as sim:
        assert [c.name for c in sim.clusters] == ["cluster0", "cluster1"]
        first, second = sim.clusters[0].agents[0], sim.clusters[1].agents[0]
        assert sim.cluster_for(second.address).name == "cluster1"
        sim.faults.fail_stop(1, "Sim.Thread", "sync")
        status = httpx.get(f"{first.url}/api/v1/status").json()["data"]
        assert status["obState"] == 3
        sim.set_observer(first.address, running=False)
        assert httpx.get(f"{first.url}/api/v1/status").json()["data"]["obState"] == 0
        sim.agent_down(first.address)
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"{first.url}/api/v1/status")
        sim.agent_up(first.address)
        assert httpx.get(f"{first.url}/api/v1/info").status_code == 200
        assert sim.stops() == [] and sim.snapshot()["clusters"][1]["name"] == "cluster1"
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{first.url}/api/v1/status")


@contextlib.contextmanager
def sim_cli(*args: str) -> Iterator[tuple[subprocess.Popen[str], list[list[str]]]]:
    """`obstop sim ARGS` running, with the words of each line it printed up to `ready`; killed if still up."""
    env = {**os.environ, "OBSTOP_SIM_PASSWORD": PASSWORD}
    command = [sys.executable, "-m", "obstop.cli", "sim", "--port", "0", *args]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert process.stdout is not None
        lines = []
        for line in process.stdout:
            lines.append(line.split())
            if line.strip() == "ready":
                break
        yield process, lines
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()


def test_cli_prints_agents_then_ready_and_stops_on_sigterm() -> None:
    args = (
        "--zones",
        "2",
        "--servers-per-zone",
        "2",
        "--clusters",
        "2",
        "--stage-seconds",
        "0.05",
        "--key-bits",
        "512",
    )
    with sim_cli(*args) as (process, lines):
        agents = [line for line in lines if line[0] == "agent"]
        assert len(agents) == 8 and {a[3] for a in agents} == {"cluster0", "cluster1"}
        assert [a[2] for a in agents[:4]] == ["zone1", "zone1", "zone2", "zone2"]
        info = httpx.get(f"{agents[0][4]}/api/v1/info").json()["data"]
        assert f"{info['ip']}:{info['port']}" == agents[0][1] and info["zone"] == "zone1"
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=10)
        assert process.returncode == 0, err
        assert "stopped" in out and PASSWORD not in out + err


def test_cli_without_a_password_refuses_to_start() -> None:
    env = {k: v for k, v in os.environ.items() if k != "OBSTOP_SIM_PASSWORD"}
    result = subprocess.run(
        [sys.executable, "-m", "obstop.cli", "sim", "--port", "0"], capture_output=True, text=True, env=env
    )
    assert result.returncode == 2 and "OBSTOP_SIM_PASSWORD" in result.stderr


def test_cli_serves_the_obshell_release_asked_for() -> None:
    with sim_cli("--zones", "1", "--obshell-version", "4.2.6") as (process, lines):
        release = next(line for line in lines if line[0] == "release")
        assert release[1:3] == ["4.2.6.0", f"4.2.6.0-{DEFAULT_BUILD}"] and release[3] == "512-bit"
        url = next(line for line in lines if line[0] == "agent")[4]
        info = httpx.get(f"{url}/api/v1/info").json()["data"]
        assert info["version"] == "4.2.6.0" and info["supportedAuth"] == ["v2"]
        missing = httpx.get(f"{url}/api/v1/task/dags/agent")  # absent before 4.3.0.0
        assert (missing.status_code, missing.json()["error"]) == (
            400,
            {"code": 1000, "message": "Bad request: 404 not found"},
        )
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=10)
        assert process.returncode == 0


@pytest.mark.parametrize("version", ["4.2.1.0", "four", "4.4"])
def test_cli_refuses_an_unknown_obshell_version(version: str) -> None:
    env = {**os.environ, "OBSTOP_SIM_PASSWORD": PASSWORD}
    result = subprocess.run(
        [sys.executable, "-m", "obstop.cli", "sim", "--port", "0", "--obshell-version", version],
        capture_output=True,
        text=True,
        env=env,
        timeout=30,
    )
    assert result.returncode == 2 and "--obshell-version" in result.stderr
    assert (
        "known profiles: 4.2.2.0, 4.2.3.0, 4.2.6.0, 4.3.0.0, 4.3.1.0, 4.4.1.0, 4.4.2.0, 4.5.0.0"
        in result.stderr
    )
