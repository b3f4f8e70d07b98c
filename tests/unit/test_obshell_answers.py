"""How the client and the controller's pure decisions read obshell's answers of each release (fact sheet §1,
§3.4, §7): error shapes old and new, which refusals can pass, which DAG is whose, what blocks a stop."""

from __future__ import annotations

import json
from typing import Any

import pytest

from obstop.controller import answers
from obstop.obshell import DagDetail, ObshellApiError, parse_envelope


def answer(status: int, error: dict[str, Any]) -> ObshellApiError:
    raw = json.dumps(
        {"successful": False, "timestamp": "2026-01-01T00:00:00Z", "status": status, "error": error}
    )
    with pytest.raises(ObshellApiError) as caught:
        parse_envelope(status, raw.encode())
    return caught.value


def test_unknown_routes_of_every_release_are_recognised() -> None:
    old = answer(400, {"code": 1000, "message": "Bad request: 404 not found"})  # 4.2.3.0-4.3.0.0
    new = answer(404, {"errCode": "Common.NotFound", "message": "Element not found: 404 not found"})
    assert old.is_unknown_route and new.is_unknown_route
    illegal = answer(400, {"code": 1001, "message": "Illegal argument: scope"})
    task_gone = answer(404, {"errCode": "Task.NotFound", "message": "Task not found: record not found"})
    assert not illegal.is_unknown_route and not task_gone.is_unknown_route


def test_a_proxy_page_is_not_an_obshell_answer() -> None:
    with pytest.raises(ObshellApiError) as caught:
        parse_envelope(404, b"<html>404 Not Found</html>")
    assert not caught.value.enveloped and not caught.value.is_unknown_route
    assert answer(500, {"errCode": "Common.Unexpected", "message": "x"}).enveloped


@pytest.mark.parametrize(
    ("error", "stale", "decrypt"),
    [
        ({"code": 10008, "message": "Verification failed: header decrypt failed"}, True, False),  # < 4.3.1
        (
            {"errCode": "Security.Authentication.Header.DecryptFailed", "message": "m"},
            True,
            True,
        ),  # 4.3.1-4.4.1
        ({"code": 1, "errCode": "Security.Authentication.Header.DecryptFailed", "message": "m"}, True, True),
        (
            {"code": 10008, "errCode": "Security.Authentication.IncorrectOceanbasePassword", "message": "m"},
            False,
            False,
        ),
    ],
)
def test_which_401s_may_mean_a_changed_key(error: dict[str, Any], stale: bool, decrypt: bool) -> None:
    refusal = answer(401, error)
    assert (refusal.may_be_stale_key, refusal.is_decrypt_failure) == (stale, decrypt)
    assert not refusal.transient


def test_a_mysql_error_can_pass_and_a_non_cluster_identity_cannot() -> None:
    assert answer(400, {"errCode": "MySQL.Error", "message": "Error 4012: Timeout"}).transient
    old_identity = answer(500, {"code": 1010, "message": "Known error: agent identity is 'SINGLE'"})
    new_identity = answer(400, {"errCode": "Agent.Identify.NotSupportOperation", "message": "m"})
    assert old_identity.is_identity_refusal and not old_identity.transient
    assert new_identity.is_identity_refusal and not new_identity.transient
    assert answers.permanent_error(old_identity)[0] == "Agent.Identify.NotSupportOperation"
    assert answer(500, {"code": 1010, "message": "Known error: agent under maintenance"}).transient


def test_a_stop_refused_at_the_post_says_nothing_was_stopped_only_when_none_landed() -> None:
    """obshell validates before it creates a DAG: an enveloped refusal stopped nothing, unless an earlier POST of
    the request may have landed where the agent cannot show it."""
    zone = answer(400, {"errCode": "OB.Zone.NotExist", "message": "Zone 'zone9' does not exist"})
    reason, message = answers.stop_refused(zone, none_landed=True)
    assert reason == "OB.Zone.NotExist" and "zone9" in message and message.endswith("nothing was stopped")
    old = answer(400, {"code": 1001, "message": "Illegal argument: zone 'zone9' not exist"})  # before 4.3.1.0
    assert answers.stop_refused(old, none_landed=True) == (
        "HTTP400",
        answers.permanent_error(old)[1] + answers.NOTHING_STOPPED,
    )
    assert "nothing was stopped" not in answers.stop_refused(zone, none_landed=False)[1]
    page = ObshellApiError(
        404, "<html>not found</html>", enveloped=False
    )  # a proxy's page, not obshell's answer
    assert "nothing was stopped" not in answers.stop_refused(page, none_landed=True)[1]


def test_only_record_not_found_says_a_dag_is_gone() -> None:
    assert answer(404, {"code": 2300, "message": "Task not found: record not found"}).is_record_not_found
    assert answer(
        404, {"errCode": "Task.NotFound", "message": "Task not found: record not found"}
    ).is_record_not_found
    busy = answer(404, {"errCode": "Task.NotFound", "message": "Task not found: database is locked"})
    assert not busy.is_record_not_found


@pytest.mark.parametrize(
    ("text", "parsed"),
    [
        ("4.4.1.0", (4, 4, 1, 0)),
        ("4.2.3", (4, 2, 3, 0)),
        ("4.5.0.0-100000012025061012", (4, 5, 0, 0)),
        ("x", None),
    ],
)
def test_versions_compare_as_four_integers(text: str, parsed: tuple[int, ...] | None) -> None:
    assert answers.parse_version(text) == parsed


def test_agents_the_controller_cannot_use() -> None:
    assert answers.unsupported_agent("4.2.3.0", [], "CLUSTER AGENT") is None
    assert answers.unsupported_agent("4.5.0.0", ["v2"], "CLUSTER AGENT") is None
    v1 = answers.unsupported_agent("4.2.2.0", [], "CLUSTER AGENT")
    assert v1 is not None and v1[0] == "UnsupportedObshellVersion"
    single = answers.unsupported_agent("4.4.1.0", ["v2"], "SINGLE")
    assert single is not None and single[0] == "Agent.Identify.NotSupportOperation" and "SINGLE" in single[1]


def _dag(names: list[str], *, logs: dict[int, list[list[str]]] | None = None, failed: int = 0) -> DagDetail:
    nodes = []
    for index, name in enumerate(names, 1):
        state = "FAILED" if index == failed else "SUCCEED" if not failed or index < failed else "PENDING"
        tasks = [
            {
                "id": f"{index}{n}",
                "state": "FAILED" if index == failed else "SUCCEED",
                "operator": "RUN",
                "task_logs": lines,
            }
            for n, lines in enumerate((logs or {}).get(index, []))
        ]
        nodes.append({"id": str(index), "name": name, "state": state, "operator": "RUN", "sub_tasks": tasks})
    return DagDetail.model_validate(
        {
            "id": "21",
            "name": "Stop OB",
            "stage": failed or len(names),
            "max_stage": len(names),
            "state": "FAILED" if failed else "SUCCEED",
            "operator": "RUN",
            "nodes": nodes,
        }
    )


def test_a_dag_is_taken_for_ours_only_with_this_modes_nodes() -> None:
    immediate = answers.stop_dag_nodes(force=False, terminate=False)
    assert answers.dag_matches(_dag(immediate), force=False, terminate=False)
    assert not answers.dag_matches(_dag(immediate), force=True, terminate=False)
    assert not answers.dag_matches(_dag(immediate), force=False, terminate=True)  # both have 6 nodes
    # The per-zone stop of 4.4.1+: the same names, "Execute stop sql" third (fact sheet §5).
    inform, ready, advance, wait, stop_sql, end = immediate
    zone_stop = [inform, ready, stop_sql, advance, wait, end]
    assert not answers.dag_matches(_dag(zone_stop), force=False, terminate=False)
    assert len(answers.stop_dag_nodes(force=True, terminate=False)) == 5


def test_the_lock_holder_is_read_from_node_1s_sub_task_logs() -> None:
    """The real agent names the holder only in node 1's (succeeding) sub-tasks; node 2 names the agents."""
    names = answers.stop_dag_nodes(force=True, terminate=False)
    holder_line = (
        "ERROR: [Agent.UnderMaintenanceDag]: 127.0.0.1:2887 is under maintenance by DAG "
        "[210999999999928867:Stop observer]"
    )
    node2 = (
        "ERROR: [Task.SubDag.NotAllCreated]: check sub dag created failed: Sub DAG of agents: "
        "[127.0.0.1:2887] not created, main DAG failed"
    )
    failed = _dag(names, logs={1: [["start"], [holder_line]], 2: [[node2]]}, failed=2)
    reason, message = answers.dag_failure(failed)
    assert reason == "Task.SubDag.NotAllCreated"
    assert 'forcePassDag: ["210999999999928867"]' in message, message
