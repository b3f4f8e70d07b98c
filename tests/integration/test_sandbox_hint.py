"""The request `obstop sandbox --keep` suggests works on the simulated cluster the sandbox leaves behind.

For each stop the sandbox itself can run (--scope x --mode), that stop is run first on a fresh 3-zone simulator,
then the hint's request, as printed, goes through the controller's own spec parsing and the obshell client to
its agent: it must be one of the simulated agents, allowed by the sandbox's Secret, and succeed. (The hint used
to suggest examples/zone-immediate.yaml, whose agent the sandbox does not run and which a cluster stopped by
the default GLOBAL force stop refuses.)
"""

from __future__ import annotations

import re

import pytest
import yaml

from obshell_sim_helpers import PASSWORD, STAGE_SECONDS, stop_params, wait_finished
from obstop.commands.sandbox import HINT_REQUEST, keep_hint
from obstop.controller import agent_policy
from obstop.controller.resource import parse_spec
from obstop.obshell import ObshellClient, parse_endpoint
from obstop.testing.obshell_sim import ObshellSimulator, SimulatorConfig

SANDBOX_STOPS = [
    ("GLOBAL", "force"),
    ("GLOBAL", "terminate"),
    ("ZONE", "force"),
    ("ZONE", "terminate"),
    ("ZONE", "immediate"),
    ("SERVER", "force"),
    ("SERVER", "terminate"),
    ("SERVER", "immediate"),
]


def hinted_manifest(hint: str, namespace: str) -> dict[str, object]:
    found = re.search(
        rf"^kubectl -n {namespace} apply -f - <<'EOF'\n(.*?)^EOF$", hint, re.DOTALL | re.MULTILINE
    )
    assert found, hint
    manifest: dict[str, object] = yaml.safe_load(found.group(1))
    return manifest


@pytest.mark.parametrize(("scope", "mode"), SANDBOX_STOPS)
async def test_the_hinted_request_succeeds_after_the_sandboxs_own_stop(scope: str, mode: str) -> None:
    config = SimulatorConfig(password=PASSWORD, zones=3, stage_seconds=STAGE_SECONDS)
    async with ObshellSimulator(config) as sim:
        agents = [a.address for a in sim.clusters[0].agents]
        # The sandbox's own stop, as obstop/commands/sandbox.py builds it.
        targets = {"GLOBAL": [], "ZONE": ["zone1"], "SERVER": [agents[-1]]}[scope]
        first = stop_params(scope, targets, force=mode == "force", terminate=mode == "terminate")
        async with ObshellClient(sim.clusters[0].agents[0].url, PASSWORD) as client:
            done = await wait_finished(client, (await client.stop(first)).id)
            assert done.succeeded

        hint = keep_hint("/tmp/kubeconfig", "default", agents)  # noqa: S108 (only printed)
        manifest = hinted_manifest(hint, "default")
        assert manifest["metadata"] == {"name": HINT_REQUEST}
        spec = parse_spec(manifest["spec"])  # what the controller would refuse, it refuses here
        endpoint = parse_endpoint(spec.obshell.address)
        assert endpoint.netloc in agents, "the hint names an agent the sandbox does not run"
        # The sandbox's Secret allows every simulated agent (Stack.put_secret); the hint names its Secret.
        assert spec.obshell.password_secret_ref.name == "obshell-root"
        annotations = {agent_policy.ALLOWED_AGENTS: ",".join(agents)}
        assert agent_policy.check("default/obshell-root", annotations, "password", endpoint) is None
        async with ObshellClient(endpoint.base_url, PASSWORD) as client:
            again = await wait_finished(client, (await client.stop(spec.stop_params())).id)
        assert again.succeeded, again.failure_log()
