"""The pre-check's pure decisions (controller/precheck.py) and the choice of an approval (approvals.choose)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from obstop.controller import precheck
from obstop.controller.approvals import ApprovalObject, choose
from obstop.controller.decisions import At
from obstop.controller.precheck import Survey
from obstop.controller.resource import Phase, parse_spec
from obstop.controller.status import Checks, RequestStatus
from obstop.obshell import AgentInfo, AgentStatus, DagDetail, ObInfo, ObshellApiError, ids

NOW = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)
AGENTS = ["10.0.0.1:2886", "10.0.0.2:2886", "10.0.0.3:2886"]
MAIN = ids.agent_dag_id("10.0.0.2", 2886, 7).encode()


def spec(**extra: Any) -> Any:
    raw = {
        "obshell": {"address": "10.0.0.1:2886", "passwordSecretRef": {"name": "pw"}},
        "scope": {"type": "GLOBAL"},
    }
    raw.update({"force": True, **extra})
    return parse_spec(raw)


def ob_info(status: str = "ACTIVE") -> ObInfo:
    return ObInfo.model_validate(
        {
            "agent_info": [
                {"ip": a.split(":")[0], "port": 2886, "zone": f"zone{i + 1}"} for i, a in enumerate(AGENTS)
            ],
            "obcluster_info": {
                "id": 1,
                "name": "ob1",
                "topology": {
                    f"zone{i + 1}": [{"svr_ip": a.split(":")[0], "agent_port": 2886, "status": status}]
                    for i, a in enumerate(AGENTS)
                },
            },
        }
    )


def sub_dag(
    agent: str, state: str = "FAILED", main: str | None = MAIN, name: str = "Stop observer"
) -> DagDetail:
    ip, port = agent.split(":")
    return DagDetail.model_validate(
        {
            "id": ids.agent_dag_id(ip, int(port), 3).encode(),
            "name": name,
            "state": state,
            "operator": "RUN",
            "maintenance_type": 2,
            "additional_data": {"main_dag_id": main} if main else None,
        }
    )


def main_dag(state: str = "FAILED") -> DagDetail:
    return DagDetail.model_validate({"id": MAIN, "name": "Stop OB", "state": state, "operator": "RUN"})


def survey(**changes: Any) -> Survey:
    base: dict[str, Any] = {
        "receiver": AgentInfo(ip="10.0.0.1", port=2886, version="4.5.0.0", identity="CLUSTER AGENT"),
        "status": AgentStatus.model_validate({"agent": {"ip": "10.0.0.1", "port": 2886}, "obState": 3}),
        "ob_info": ob_info(),
        "reachable": frozenset(AGENTS),
        "maintenance": (),
    }
    return Survey(**{**base, **changes})


def test_a_clean_cluster_passes_and_says_what_it_saw() -> None:
    verdict = precheck.evaluate(spec(), survey(), NOW)
    assert verdict.passed, verdict
    assert (
        "cluster ob1 via agent 10.0.0.1:2886 (obshell 4.5.0.0): 3 zone(s), 3 agent(s); observers: 3 ACTIVE"
        in (verdict.summary)
    )
    assert verdict.precheck.checked_at == NOW and verdict.precheck.warnings == []


def test_targets_are_checked_against_the_agents_own_table() -> None:
    zone = precheck.evaluate(spec(scope={"type": "ZONE", "target": ["zone1", "zoneX"]}), survey(), NOW)
    assert zone.refusal is not None and zone.refusal[0] == "TargetNotFound" and "zoneX" in zone.refusal[1]
    server = spec(scope={"type": "SERVER", "target": ["10.0.0.2", "10.0.0.9:2886"]})
    verdict = precheck.evaluate(server, survey(), NOW)
    assert verdict.refusal is not None and "10.0.0.9:2886" in verdict.refusal[1]
    assert "10.0.0.2," not in verdict.refusal[1].split("not agents")[0]  # port-less 10.0.0.2 is :2886


def test_a_parked_lock_holder_names_the_exact_force_pass_dag() -> None:
    held = survey(maintenance=(sub_dag(AGENTS[1]), sub_dag(AGENTS[2])), main_dags={MAIN: main_dag()})
    verdict = precheck.evaluate(spec(), held, NOW)
    assert verdict.refusal is not None and verdict.refusal[0] == "LocksHeld"
    assert f'forcePassDag: ["{MAIN}"]' in verdict.refusal[1] and "Stop OB" in verdict.refusal[1]
    holders = verdict.precheck.lock_holders
    assert [h.agent for h in holders] == AGENTS[1:] and all(h.owner == "10.0.0.2:2886" for h in holders)
    passing = precheck.evaluate(spec(forcePassDag=[MAIN]), held, NOW)
    assert passing.passed and any("already in spec.forcePassDag" in w for w in passing.precheck.warnings)


def test_a_passed_holder_is_no_lock_and_an_unneeded_force_pass_is_said() -> None:
    done = survey(maintenance=(sub_dag(AGENTS[1], state="SUCCEED"),))
    verdict = precheck.evaluate(spec(forcePassDag=[MAIN]), done, NOW)
    assert verdict.passed and any("not needed" in w for w in verdict.precheck.warnings)


def test_a_running_holder_is_a_concurrent_operation() -> None:
    running = survey(
        maintenance=(sub_dag(AGENTS[1], state="RUNNING"),), main_dags={MAIN: main_dag("RUNNING")}
    )
    verdict = precheck.evaluate(spec(forcePassDag=[MAIN]), running, NOW)
    assert verdict.refusal is not None and verdict.refusal[0] == "ConcurrentOperation"


def test_a_holder_without_a_main_dag_cannot_be_passed() -> None:
    upgrade = survey(maintenance=(sub_dag(AGENTS[0], main=None, name="Upgrade agent"),))
    verdict = precheck.evaluate(spec(), upgrade, NOW)
    assert verdict.refusal is not None and verdict.refusal[0] == "AgentUnderMaintenance"
    assert "Upgrade agent" in verdict.refusal[1]


def test_missing_routes_skip_their_checks_and_never_refuse() -> None:
    verdict = precheck.evaluate(
        spec(scope={"type": "ZONE", "target": ["zone9"]}),
        survey(
            ob_info=None, reachable=None, maintenance=None, skipped=("GET /api/v1/ob/info is not served",)
        ),
        NOW,
    )
    assert verdict.passed and verdict.precheck.skipped == ["GET /api/v1/ob/info is not served"]


def test_the_observer_state_per_mode_and_release() -> None:
    down = survey(
        status=AgentStatus.model_validate({"agent": {"ip": "10.0.0.1", "port": 2886}, "obState": 0})
    )
    assert precheck.evaluate(spec(), down, NOW).passed  # force needs no observer
    refused = precheck.evaluate(spec(force=False, terminate=True), down, NOW)
    assert refused.refusal is not None and refused.refusal[0] == "OB.Cluster.ForceStopRequired"
    zone = precheck.evaluate(spec(scope={"type": "ZONE", "target": ["zone1"]}), down, NOW)
    assert zone.refusal is not None  # ZONE needs it even with force from 4.4.1.0
    old = down.receiver.model_copy(update={"version": "4.4.0.0"})
    assert precheck.evaluate(
        spec(scope={"type": "ZONE", "target": ["zone1"]}), survey(receiver=old, status=down.status), NOW
    ).passed
    booting = survey(
        status=AgentStatus.model_validate({"agent": {"ip": "10.0.0.1", "port": 2886}, "obState": 1})
    )
    soft = precheck.evaluate(spec(force=False, terminate=True), booting, NOW)
    assert soft.passed and any("obState 1" in w for w in soft.precheck.warnings)


def test_zone_check_refusals_by_mode() -> None:
    error = ObshellApiError(400, "replicas", err_code="OB.Cluster.Tenant.Replica.Invalid")
    zone = {"scope": {"type": "ZONE", "target": ["zone1"]}}
    checked = survey(zone_checks={"zone1": error})
    immediate = precheck.evaluate(spec(force=False, **zone), checked, NOW)
    assert immediate.refusal is not None and immediate.refusal[0] == "OB.Cluster.Tenant.Replica.Invalid"
    forced = precheck.evaluate(spec(**zone), checked, NOW)
    assert forced.passed and any("Replica.Invalid" in w for w in forced.precheck.warnings)


def test_the_digest_moves_with_the_cluster_and_not_with_the_clock() -> None:
    a = precheck.evaluate(spec(), survey(), NOW).precheck.digest
    assert a == precheck.evaluate(spec(), survey(), NOW + timedelta(hours=1)).precheck.digest
    assert a != precheck.evaluate(spec(), survey(ob_info=ob_info("STOPPED")), NOW).precheck.digest


def test_transitions_dry_run_manual_automatic_and_refused() -> None:
    at = At(1, NOW)
    passed = precheck.evaluate(spec(), survey(), NOW)
    dry = precheck.checked(RequestStatus(), spec(dryRun=True), passed, at, poll=5)
    assert not isinstance(dry, RequestStatus) and dry.status.phase is Phase.VALIDATED and dry.done
    manual = precheck.checked(RequestStatus(), spec(approval="Manual"), passed, at, poll=5)
    assert not isinstance(manual, RequestStatus) and manual.status.phase is Phase.AWAITING_APPROVAL
    assert manual.next_step_in == 5 and manual.status.condition("Validated").status == "True"  # type: ignore[union-attr, arg-type]
    automatic = precheck.checked(RequestStatus(), spec(), passed, at, poll=5)
    assert isinstance(automatic, RequestStatus) and automatic.precheck is not None
    refused = precheck.evaluate(spec(scope={"type": "ZONE", "target": ["nope"]}), survey(), NOW)
    failed = precheck.checked(RequestStatus(), spec(dryRun=True), refused, at, poll=5)
    assert not isinstance(failed, RequestStatus) and failed.status.phase is Phase.FAILED


def test_only_a_dry_run_or_a_request_to_approve_gets_the_full_survey() -> None:
    assert precheck.full_survey(spec(dryRun=True)) and precheck.full_survey(spec(approval="Manual"))
    assert not precheck.full_survey(spec()) and not precheck.full_survey(spec(approval="Automatic"))


def locks_only(**changes: Any) -> Survey:
    base: dict[str, Any] = {"receiver": survey().receiver, "maintenance": (), "checks": Checks.LOCKS}
    return Survey(**{**base, **changes})


def test_a_lock_check_refuses_as_the_full_one_and_claims_no_more() -> None:
    at = At(1, NOW)
    held = locks_only(maintenance=(sub_dag(AGENTS[1]),), main_dags={MAIN: main_dag()})
    refused = precheck.evaluate(spec(scope={"type": "ZONE", "target": ["zoneX"]}), held, NOW)
    assert refused.refusal is not None and refused.refusal[0] == "LocksHeld"  # the targets are obshell's
    assert refused.precheck.checks is Checks.LOCKS and refused.precheck.lock_holders
    failed = precheck.checked(RequestStatus(), spec(), refused, at, poll=5)
    assert not isinstance(failed, RequestStatus) and failed.status.phase is Phase.FAILED
    assert failed.status.condition("Validated").status == "False"  # type: ignore[union-attr]
    clean = precheck.evaluate(spec(force=False, terminate=True), locks_only(), NOW)
    assert clean.passed and "only the agents' locks" in clean.summary
    assert clean.precheck.cluster == "agent 10.0.0.1:2886 (obshell 4.5.0.0)", clean.precheck
    automatic = precheck.checked(RequestStatus(), spec(), clean, at, poll=5)
    assert isinstance(automatic, RequestStatus) and automatic.precheck == clean.precheck
    assert automatic.condition("Validated") is None  # nothing validated beyond the locks
    dry = precheck.checked(RequestStatus(), spec(dryRun=True), clean, at, poll=5)
    assert not isinstance(dry, RequestStatus) and dry.done  # a dry run never goes on to the stop


def approval(
    name: str, request: str = "r", created: datetime = NOW, uid_of_request: str = ""
) -> ApprovalObject:
    return ApprovalObject(name, f"uid-{name}", request, uid_of_request, "bob", created)


def test_the_approval_that_counts() -> None:
    pick = dict(request_name="r", request_uid="u1", request_created=NOW - timedelta(minutes=1))
    assert choose([approval("other", request="x")], **pick) is None
    assert choose([approval("old", created=NOW - timedelta(hours=1))], **pick) is None
    assert choose([approval("wrong-uid", uid_of_request="u0")], **pick) is None
    assert choose([approval("spent")], superseded=["uid-spent"], **pick) is None
    first = approval("a", created=NOW)
    assert choose([approval("b", created=NOW + timedelta(seconds=1)), first], **pick) == first
