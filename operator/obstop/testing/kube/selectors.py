"""Label and field selectors, as the API server parses and matches them (pure functions)."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from typing import Any


class SelectorError(ValueError):
    """A selector that a real API server would refuse with 400 BadRequest."""


@dataclasses.dataclass(frozen=True)
class Requirement:
    key: str
    operator: str  # one of: =, !=, in, notin, exists, !exists
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        present = self.key in labels
        value = labels.get(self.key)
        match self.operator:
            case "=" | "in":
                return present and value in self.values
            case "!=" | "notin":
                return not present or value not in self.values
            case "exists":
                return present
            case "!exists":
                return not present
        raise AssertionError(f"unknown operator {self.operator!r}")  # pragma: no cover


_LABEL_KEY = r"(?:[a-zA-Z0-9.\-]+/)?[a-zA-Z0-9](?:[a-zA-Z0-9._\-]*[a-zA-Z0-9])?"
_SET_RE = re.compile(rf"^\s*({_LABEL_KEY})\s+(in|notin)\s+\(([^()]*)\)\s*$")
_EQ_RE = re.compile(rf"^\s*({_LABEL_KEY})\s*(==|=|!=)\s*([^=!,\s]*)\s*$")
_EXISTS_RE = re.compile(rf"^\s*(!?)\s*({_LABEL_KEY})\s*$")


def _split_terms(selector: str) -> list[str]:
    """Split on the commas that are not inside the parentheses of `in (a,b)`."""
    terms: list[str] = []
    depth = 0
    current = ""
    for char in selector:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        if char == "," and depth == 0:
            terms.append(current)
            current = ""
        else:
            current += char
    terms.append(current)
    return [term for term in terms if term.strip()]


def parse_label_selector(selector: str | None) -> tuple[Requirement, ...]:
    """Parse equality-based and set-based label selectors (`a=b,c!=d,e in (f,g),!h`)."""
    requirements: list[Requirement] = []
    for term in _split_terms(selector or ""):
        if match := _SET_RE.match(term):
            values = tuple(value.strip() for value in match.group(3).split(",") if value.strip())
            requirements.append(Requirement(match.group(1), match.group(2), values))
        elif match := _EQ_RE.match(term):
            operator = "!=" if match.group(2) == "!=" else "="
            requirements.append(Requirement(match.group(1), operator, (match.group(3),)))
        elif match := _EXISTS_RE.match(term):
            operator = "!exists" if match.group(1) else "exists"
            requirements.append(Requirement(match.group(2), operator))
        else:
            raise SelectorError(f"unable to parse requirement: {term.strip()!r}")
    return tuple(requirements)


def parse_field_selector(selector: str | None) -> tuple[Requirement, ...]:
    """Parse field selectors (`metadata.name=x,involvedObject.kind!=Pod`): equality only, as the server."""
    requirements: list[Requirement] = []
    for term in _split_terms(selector or ""):
        key, operator, value = _split_field_term(term)
        requirements.append(Requirement(key, operator, (value,)))
    return tuple(requirements)


def _split_field_term(term: str) -> tuple[str, str, str]:
    for token, operator in (("!=", "!="), ("==", "="), ("=", "=")):
        if token in term:
            key, value = term.split(token, 1)
            if key.strip():
                return key.strip(), operator, value.strip()
    raise SelectorError(f"invalid field selector term: {term.strip()!r}")


def field_value(obj: Mapping[str, Any], path: str) -> str:
    """The value of a dotted field as the server compares it: a string, empty when absent."""
    current: Any = obj
    for part in path.split("."):
        if not isinstance(current, Mapping) or part not in current:
            return ""
        current = current[part]
    if current is None:
        return ""
    if isinstance(current, bool):
        return "true" if current else "false"
    return str(current)


def matches(
    obj: Mapping[str, Any],
    labels: tuple[Requirement, ...] = (),
    fields: tuple[Requirement, ...] = (),
) -> bool:
    object_labels = obj.get("metadata", {}).get("labels") or {}
    if not all(requirement.matches(object_labels) for requirement in labels):
        return False
    for requirement in fields:
        value = field_value(obj, requirement.key)
        if not requirement.matches({requirement.key: value}):
            return False
    return True
