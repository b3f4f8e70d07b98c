"""Cancelling a stop: the steps of a request whose cancel was asked for (the obshell.oceanbase.com/cancel
annotation, or activeDeadlineSeconds with deadlineAction: Cancel).

Nothing sent yet: Cancelled at once. A stop that may have landed: looked for first, as before any POST. A DAG
known: obshell's CANCEL on the main DAG, then, once it stopped, its sub-DAGs are passed so that no agent stays
locked (as obshell's own CLI does on cancel: ob/client/cmd/cluster, CheckAllAgentMaintenance), and the message
says which observers were already stopped.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Literal

from obstop.controller import answers, decisions, lookup
from obstop.controller.decisions import At, Decision
from obstop.controller.status import AgentProgress, Reason, RequestStatus
from obstop.obshell import DagDetail, DagOperator, ObshellApiError, ObshellClient, ObshellError

if TYPE_CHECKING:
    from obstop.controller.resource import ObStopRequestSpec
    from obstop.controller.runtime import RequestRuntime
    from obstop.controller.stop import Controller, Request

By = Literal["Annotation", "Deadline"]
_CANCEL_POLL_SECONDS = 1.0


def reason_for(by: By) -> Reason:
    return Reason.DEADLINE_CANCELLED if by == "Deadline" else Reason.CANCELLED_ON_REQUEST


def before_anything_was_sent(status: RequestStatus, by: By, at: At) -> Decision:
    new = decisions.cancel_requested(status, by, at)
    return decisions.cancelled(
        new, reason_for(by), "cancelled before the stop was sent: nothing was sent", at
    )


async def step(
    ctl: Controller,
    req: Request,
    runtime: RequestRuntime,
    spec: ObStopRequestSpec,
    client: ObshellClient,
    at: At,
    by: By,
    logger: logging.Logger | logging.LoggerAdapter[Any],
) -> Decision:
    status = decisions.cancel_requested(req.status, by, at)
    if status.dag is None:  # recorded, and a POST of this request may have landed: find its DAG first
        assert status.submission is not None
        try:
            earlier, _ = await lookup.find_earlier_dag(client, status.submission, spec)
        except ObshellError as exc:
            return decisions.obshell_fault(status, exc, at, ctl.settings)
        if earlier is None:
            message = (
                "cancelled before the stop landed: the agent has no stop DAG of this request; nothing ran"
            )
            return decisions.cancelled(status, reason_for(by), message, at)
        status = decisions.submitted(status, earlier, at, adopted=True, next_poll=0).status
    assert status.dag is not None
    try:
        dag = await client.get_dag(status.dag.id, details=True)
    except ObshellError as exc:
        return decisions.obshell_fault(status, exc, at, ctl.settings)
    if dag.finished:
        if dag.operator is DagOperator.CANCEL:
            return await _release_and_report(ctl, status, dag, client, at, by, logger)
        # It ended before the cancel could act: its own outcome is what happened.
        outcome = decisions.observed(status, dag, at, next_poll=0)
        note = f" (a cancel was asked for, but stop DAG {dag.id} had already ended)"
        outcome.status.message = (outcome.status.message or "") + note
        return outcome
    if status.cancellation is not None and status.cancellation.sent_at is not None:
        # Sent; obshell stops the running task at its next log line or time check: look again shortly.
        return decisions.observed(status, dag, at, next_poll=_CANCEL_POLL_SECONDS)
    try:
        await client.cancel_dag(dag.id)
    except ObshellError as exc:
        if isinstance(exc, ObshellApiError) and (
            exc.err_code == "Task.Dag.Operator.CancelFinishedDag" or "dag is finished" in exc.message.lower()
        ):
            return decisions.observed(status, dag, at, next_poll=0)  # it just ended: the next step reads how
        text = answers.describe_error(exc)
        message = f"obshell did not take the cancel of stop DAG {dag.id} ({text}); the stop goes on meanwhile"
        refused = isinstance(exc, ObshellApiError) and not exc.transient
        return decisions.fault(
            status, Reason.CANCEL_NOT_ALLOWED if refused else exc.reason, message, at, ctl.settings
        )
    logger.info("stop DAG %s: cancel sent (%s)", dag.id, by)
    return decisions.cancel_sent(status, dag, at, next_poll=_CANCEL_POLL_SECONDS)


async def _release_and_report(
    ctl: Controller,
    status: RequestStatus,
    dag: DagDetail,
    client: ObshellClient,
    at: At,
    by: By,
    logger: logging.Logger | logging.LoggerAdapter[Any],
) -> Decision:
    """The main DAG stopped on CANCEL; its sub-DAGs stay parked holding the agents' locks (obshell
    agent/executor/ob/sub_dag.go: no stop task has a Cancel hook). Pass each, and read whether it had killed
    its observer."""
    rows = {row.agent: row for row in answers.agent_rows(dag) or []}
    sub_dags = (dag.additional_data or {}).get("sub_dags")
    problems: list[str] = []
    for agent, sub_id in sub_dags.items() if isinstance(sub_dags, dict) else ():
        row = rows.setdefault(str(agent), AgentProgress(agent=str(agent), sub_dag=str(sub_id)))
        try:
            await client.operate_dag(str(sub_id), DagOperator.PASS)
        except ObshellApiError as exc:
            if "NotFailedDag" not in exc.err_code and "not failed" not in exc.message.lower():
                problems.append(f"{agent}: {answers.describe_error(exc)}")
        except ObshellError as exc:
            problems.append(f"{agent}: {answers.describe_error(exc)}")
        try:
            row.observer_stopped = answers.observer_stopped(await client.get_dag(str(sub_id), details=True))
        except ObshellError as exc:
            problems.append(f"{agent}: {answers.describe_error(exc)}")
    stopped = sorted(a for a, r in rows.items() if r.observer_stopped)
    node = dag.failed_node.name if dag.failed_node else (dag.current_node.name if dag.current_node else "")
    message = (
        f"stop DAG {dag.id} cancelled at stage {dag.stage}/{dag.max_stage}"
        + (f" ({node!r})" if node else "")
        + f"; observers already stopped: {', '.join(stopped) if stopped else 'none'}"
    )
    if problems:
        message += (
            "; some agents' locks may still be held ("
            + "; ".join(problems)
            + "): a later stop names them in "
            "its message, with the forcePassDag to use"
        )
    else:
        message += "; the agents' locks are released"
    logger.info("%s", message)
    final = sorted(rows.values(), key=lambda r: r.agent)[: answers.MAX_AGENT_ROWS]
    written = decisions.observed(status, dag, at, next_poll=0).status  # the DAG as it ended
    return decisions.cancelled(written, reason_for(by), message, at, agents=final)
