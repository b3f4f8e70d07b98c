"""docs/troubleshooting.md's table of reasons is exactly what the controller can write to status.reason.

The reasons are collected from the code itself, not from a list kept here: every string literal the controller
modules put in a reason position (reconcile.failed's reason, a Refusal's, a `status["reason"] = ...`
assignment, a `reason = ...` choice, the reason of a returned (reason, message) pair), plus the reason of every
ObshellError class. obshell's errCodes pass through as reasons (dotted), and so does `HTTP<status>` when the
agent gave no errCode. A new reason in the code fails this test until the table lists it; a reason the code
no longer writes fails it until the table drops it.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from obstop.controller import reconcile
from obstop.obshell import errors

ROOT = Path(__file__).resolve().parents[2]
CONTROLLER = ROOT / "operator" / "obstop" / "controller"
DOC = ROOT / "docs" / "troubleshooting.md"
IDENTIFIER = re.compile(r"^[A-Z][A-Za-z]+$")
HTTP_FORM = re.compile(r"^HTTP\d{3}$")


def _constants(node: ast.AST) -> Iterator[str]:
    for sub in ast.walk(node):
        if isinstance(sub, ast.Constant) and isinstance(sub.value, str) and IDENTIFIER.match(sub.value):
            yield sub.value


def _name(func: ast.expr) -> str:
    return func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""


def _reason_literals(tree: ast.AST) -> Iterator[tuple[str, str]]:
    """(reason, where) for every literal the code puts in a reason position."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            name = _name(node.func)
            if name == "failed" and len(node.args) >= 2:
                yield from ((c, "Failed") for c in _constants(node.args[1]))
            if name == "Refusal" and node.args:  # always written through reconcile.failed
                yield from ((c, "Failed") for c in _constants(node.args[0]))
            if name == "_finish" and len(node.args) >= 3:
                yield from ((c, "terminal") for c in _constants(node.args[2]))
            for keyword in node.keywords:
                if keyword.arg == "reason" and name == "fault":
                    yield from ((c, "retried") for c in _constants(keyword.value))
        elif isinstance(node, ast.Assign):
            for target in node.targets:
                if isinstance(target, ast.Name) and target.id == "reason":
                    yield from ((c, "chosen") for c in _constants(node.value))
                if isinstance(target, ast.Tuple) and isinstance(node.value, ast.Tuple):
                    for element, value in zip(target.elts, node.value.elts, strict=False):
                        if (
                            isinstance(element, ast.Subscript)
                            and isinstance(element.slice, ast.Constant)
                            and element.slice.value == "reason"
                        ):
                            yield from ((c, "set") for c in _constants(value))
        elif (
            isinstance(node, ast.FunctionDef)
            and node.returns is not None
            and ast.unparse(node.returns)
            in ("tuple[str, str]", "tuple[str, str] | None")  # (reason, message)
        ):
            for sub in ast.walk(node):
                if isinstance(sub, ast.Return) and isinstance(sub.value, ast.Tuple) and sub.value.elts:
                    yield from ((c, "returned") for c in _constants(sub.value.elts[0]))


def _overwritten_at_once() -> set[str]:
    """`submitted` writes "Submitted", then hands the status to `observed`, which always writes its own reason:
    "Submitted" never reaches the API server. Proven here rather than assumed."""
    from datetime import UTC, datetime

    from obstop.controller.settings import Settings
    from obstop.obshell import DagDetail

    dag = DagDetail.model_validate(
        {"id": "21", "dag_id": 1, "name": "Stop OB", "stage": 1, "max_stage": 5, "state": "READY"}
        | {"operator": "RUN", "start_time": "", "end_time": ""}
    )
    status = reconcile.submitted({}, dag, 1, datetime.now(UTC), Settings(), adopted=False).status
    assert status["reason"] != "Submitted" and status["phase"] == "Submitted"
    return {"Submitted"}


def code_reasons() -> dict[str, set[str]]:
    """Every literal reason of the controller, with where it was found."""
    found: dict[str, set[str]] = {}
    for path in sorted(CONTROLLER.glob("*.py")):
        for reason, where in _reason_literals(ast.parse(path.read_text())):
            found.setdefault(reason, set()).add(where)
    for gone in _overwritten_at_once():
        found.pop(gone, None)
    return found


def error_class_reasons() -> set[str]:
    """The reason of every ObshellError class that has a fixed one (ObshellApiError's is the agent's errCode,
    or HTTP<status>)."""
    samples: dict[type[errors.ObshellError], errors.ObshellError] = {
        errors.ObshellApiError: errors.ObshellApiError(503, "busy"),
        errors.ObshellTransportError: errors.ObshellTransportError("refused", maybe_delivered=False),
        errors.ObshellProtocolError: errors.ObshellProtocolError("not obshell"),
        errors.InvalidGenericId: errors.InvalidGenericId("Invalid ID"),
    }

    def subclasses(cls: type) -> Iterator[type]:
        for sub in cls.__subclasses__():
            yield sub
            yield from subclasses(sub)

    assert set(subclasses(errors.ObshellError)) == set(samples), "a new ObshellError class: add a sample"
    return {e.reason for cls, e in samples.items() if cls is not errors.ObshellApiError}


def doc_table(heading: str) -> list[list[str]]:
    text = DOC.read_text()
    section = text.split(f"## {heading}\n", 1)[1]
    section = re.split(r"\n#{2,3} ", section, maxsplit=1)[0]
    rows = [
        line for line in section.splitlines() if line.startswith("|") and not re.match(r"^[|\s:-]+$", line)
    ]
    return [[cell.strip() for cell in row.strip("|").split("|")] for row in rows[1:]]  # without the header


def reasons_table() -> list[tuple[set[str], str]]:
    return [
        (set(re.findall(r"`([^`]+)`", cells[0])), cells[1])
        for cells in doc_table("Reasons the controller writes")
    ]


def documented() -> set[str]:
    return {token for tokens, _ in reasons_table() for token in tokens}


def test_the_table_lists_exactly_the_named_reasons_the_code_writes() -> None:
    named = {r for r in documented() if IDENTIFIER.match(r) and not HTTP_FORM.match(r)}
    expected = set(code_reasons()) | {r for r in error_class_reasons() if IDENTIFIER.match(r)}
    assert named - expected == set(), "documented, but the code never writes them"
    assert expected - named == set(), "written by the code, missing from docs/troubleshooting.md"


def test_the_collector_finds_reasons_of_every_kind() -> None:
    """The collector must see each way a reason is written, or the test above would pass on an empty set."""
    found = code_reasons()
    for reason in ("InvalidSpec", "Expired", "DagNotFound", "SecretNotAllowed", "AgentNotAllowed"):
        assert "Failed" in found[reason], reason
    assert {"Running"} <= set(found) and "Succeeded" in found and "Cancelled" in found
    assert "DagFailed" in found and "WaitingForSecret" in found
    assert "Pending" not in found  # begin() writes no reason: only the Ready condition says Pending
    assert error_class_reasons() >= {"AgentUnreachable", "BadAgentResponse", "Task.GenericID.Invalid"}


def test_each_reason_is_in_the_phase_the_code_leaves_it_in() -> None:
    phase_of = {token: phase for tokens, phase in reasons_table() for token in tokens}
    for reason, where in code_reasons().items():
        if "Failed" in where:
            assert phase_of[reason] == "Failed", reason
    for reason in ("WaitingForSecret", "AgentUnreachable", "BadAgentResponse"):
        assert "retried" in phase_of[reason], reason


def test_http_reasons_are_written_as_the_code_writes_them() -> None:
    """`HTTP503`, not `HTTP5xx` or `HTTP 503`; a 5xx is retried, a 4xx without errCode fails the request."""
    forms = {r for r in documented() if r.startswith("HTTP")}
    assert forms, "the table must show the HTTP<status> form"
    phase_of = {token: phase for tokens, phase in reasons_table() for token in tokens}
    for form in forms:
        assert HTTP_FORM.match(form), form
        error = errors.ObshellApiError(int(form[4:]), "no errCode")
        assert error.reason == form
        assert ("retried" in phase_of[form]) == error.transient, form


def test_dotted_codes_in_the_table_are_obshell_codes_explained_below() -> None:
    codes_below = {
        token for cells in doc_table("obshell error codes") for token in re.findall(r"`([^`]+)`", cells[0])
    }
    for code in (r for r in documented() if "." in r):
        assert code in codes_below, f"{code}: listed as a reason, not explained in the obshell codes table"


@pytest.mark.parametrize("row", doc_table("obshell error codes"), ids=lambda cells: cells[0][:40])
def test_the_codes_table_says_which_codes_are_retried(row: list[str]) -> None:
    """An obshell code marked *retried* is one the client treats as transient, and only those."""
    statuses = re.findall(r"\d{3}", row[1])
    for code in re.findall(r"`([^`.][^`]*)`", row[0]):
        if code.startswith("...") or "(" in code:
            continue
        for status in statuses:
            transient = errors.ObshellApiError(int(status), "m", err_code=code).transient
            assert transient == ("retried" in row[1]), f"{code} ({status})"
