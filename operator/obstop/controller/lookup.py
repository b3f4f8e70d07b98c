"""Finding a stop that may have landed: on the agent that received it, before anything is sent again.

Used before a POST when this process cannot know that no stop of the request is on the agent (a restart, a lost
answer, a gateway's error page), and before a cancel of a request whose DAG is not known yet.
"""

from __future__ import annotations

from datetime import datetime

from obstop.controller import answers
from obstop.controller.resource import ObStopRequestSpec
from obstop.controller.status import Submission, parse_time
from obstop.obshell import DagDetail, ObshellApiError, ObshellClient


async def receiver_moved(client: ObshellClient, submission: Submission) -> str | None:
    """Why the agent now answering at the address is not the one recorded before the first POST, if not."""
    if not submission.receiver:
        return None
    info = await client.info()
    now_at = answers.agent_address(info.ip, info.port)
    if now_at == submission.receiver:
        return None
    return (
        f"{client.endpoint.base_url} now reaches agent {now_at}, not {submission.receiver} that answered before "
        "the stop was sent: the address must reach exactly one agent (not a load-balanced Service). Nothing is "
        f"sent again until {submission.receiver} answers there, since only it knows whether the earlier stop "
        "landed"
    )


async def find_earlier_dag(
    client: ObshellClient, submission: Submission, spec: ObStopRequestSpec
) -> tuple[DagDetail | None, bool]:
    """The stop DAG of an earlier POST whose answer we never saw, if the agent has one; and whether the agent
    could not show its finished DAGs (no history route before obshell 4.3.0.0).

    The main DAG of a stop lives on the agent that received it: listed as unfinished while it runs, and in its
    history after. Only a DAG the agent started since `notBefore` (its own clock, recorded before the first POST)
    can be ours, and only one of this mode: the CLI, the dashboard and the per-zone stop API make "Stop OB" DAGs
    too (their nodes differ).
    """
    mode = {"force": spec.force, "terminate": spec.terminate}

    async def ours(dags: list[DagDetail]) -> DagDetail | None:
        candidates = sorted(
            (
                dag
                for dag in dags
                if answers.dag_matches(dag, **mode)
                and (started := _agent_time(dag.start_time)) is not None
                and started >= submission.not_before
            ),
            key=lambda d: d.dag_id,
        )
        for candidate in candidates:
            # The lists carry no nodes: read the DAG itself, to compare its nodes with this mode's and so that a
            # stop that already failed is reported with its failing node and last log line.
            detailed = await client.get_dag(candidate.id)
            if answers.dag_matches(detailed, **mode):
                return detailed
        return None

    found = await ours(await client.agent_unfinished_dags())
    if found is not None:
        return found, False
    try:
        history = await client.agent_dags()
    except ObshellApiError as exc:
        if exc.is_unknown_route:  # before 4.3.0.0: the unfinished list is all the agent has
            return None, True
        raise
    return await ours(history), False


def _agent_time(text: str) -> datetime | None:
    moment = parse_time(text)
    return moment if moment is not None and moment.tzinfo is not None else None
