"""docs/troubleshooting.md's table of reasons is exactly what the controller can write to status.reason.

The reasons the controller writes itself are the members of `status.Reason` (and the code writes no other
literal: checked below); obshell's errCodes pass through as reasons (dotted), and so does `HTTP<status>` when
the agent gave no errCode; every ObshellError class has its own. A new reason fails this test until the table
lists it; a reason the code no longer has fails it until the table drops it.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from obstop.controller.status import CANCELS, FAILS, RETRIED, Reason
from obstop.obshell import errors

ROOT = Path(__file__).resolve().parents[2]
CONTROLLER = ROOT / "operator" / "obstop" / "controller"
DOC = ROOT / "docs" / "troubleshooting.md"
IDENTIFIER = re.compile(r"^[A-Z][A-Za-z]+$")
HTTP_FORM = re.compile(r"^HTTP\d{3}$")


def code_reasons() -> set[str]:
    """The reasons of the controller's own: the enum's values that are identifiers (the dotted ones are obshell's
    codes, explained in the codes table)."""
    return {r.value for r in Reason if IDENTIFIER.match(r.value)}


def test_the_controller_writes_reasons_only_through_the_enum() -> None:
    """No string literal in a reason position of a transition: every reason the code writes is a Reason (or comes
    from obshell or the client), so the enum is the whole list."""
    literals = []
    for path in sorted(CONTROLLER.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Call):
                continue
            name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
            if name in ("failed", "fault", "Refusal", "_finish") and len(node.args) >= 2:
                position = node.args[0] if name == "Refusal" else node.args[1]
                if isinstance(position, ast.Constant) and isinstance(position.value, str):
                    literals.append(f"{path.name}:{node.lineno} {position.value!r}")
    assert literals == []


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
    expected = code_reasons() | {r for r in error_class_reasons() if IDENTIFIER.match(r)}
    assert named - expected == set(), "documented, but the code never writes them"
    assert expected - named == set(), "written by the code, missing from docs/troubleshooting.md"


def test_each_reason_is_in_the_phase_the_code_leaves_it_in() -> None:
    phase_of = {token: phase for tokens, phase in reasons_table() for token in tokens}
    for reason in FAILS:
        assert phase_of[reason.value] == "Failed", reason
    for reason in RETRIED:
        assert "retried" in phase_of[reason.value], reason
    for reason in CANCELS:
        assert phase_of[reason.value] == "Cancelled", reason
    for reason in ("AgentUnreachable", "BadAgentResponse"):
        assert "retried" in phase_of[reason], reason
    assert set(Reason) - FAILS - RETRIED - CANCELS == {
        Reason.RUNNING,
        Reason.SUCCEEDED,
        Reason.FORCE_STOP_REQUIRED,
        Reason.VALIDATED,
        Reason.AWAITING_APPROVAL,
    }


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
