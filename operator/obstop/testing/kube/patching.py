"""JSON patch (RFC 6902) and JSON merge patch (RFC 7386) as the API server applies them (pure functions)."""

from __future__ import annotations

import copy
from typing import Any


class PatchError(ValueError):
    """A patch that cannot be applied: the server answers 422 (a failed `test` included)."""


class PatchTestFailed(PatchError):
    """A JSON-patch `test` operation did not hold."""


def merge_patch(target: Any, patch: Any) -> Any:
    """Apply a JSON merge patch: dicts merge recursively, `null` removes, anything else replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def _parse_pointer(pointer: str) -> list[str]:
    if pointer == "":
        return []
    if not pointer.startswith("/"):
        raise PatchError(f"invalid JSON pointer: {pointer!r}")
    return [part.replace("~1", "/").replace("~0", "~") for part in pointer[1:].split("/")]


def _list_index(container: list[Any], segment: str, *, allow_end: bool) -> int:
    if segment == "-" and allow_end:
        return len(container)
    if not segment.isdigit():
        raise PatchError(f"invalid array index: {segment!r}")
    index = int(segment)
    limit = len(container) if allow_end else len(container) - 1
    if index > limit:
        raise PatchError(f"array index out of range: {index}")
    return index


def _resolve_parent(document: Any, parts: list[str]) -> Any:
    current = document
    for token in parts[:-1]:
        if isinstance(current, dict):
            if token not in current:
                raise PatchError(f"path not found: /{'/'.join(parts)}")
            current = current[token]
        elif isinstance(current, list):
            current = current[_list_index(current, token, allow_end=False)]
        else:
            raise PatchError(f"path not found: /{'/'.join(parts)}")
    return current


def _get(document: Any, pointer: str) -> Any:
    parts = _parse_pointer(pointer)
    if not parts:
        return document
    parent = _resolve_parent(document, parts)
    token = parts[-1]
    if isinstance(parent, dict):
        if token not in parent:
            raise PatchError(f"path not found: {pointer}")
        return parent[token]
    if isinstance(parent, list):
        return parent[_list_index(parent, token, allow_end=False)]
    raise PatchError(f"path not found: {pointer}")


def _remove(document: Any, pointer: str) -> Any:
    parts = _parse_pointer(pointer)
    if not parts:
        raise PatchError("cannot remove the whole document")
    parent = _resolve_parent(document, parts)
    token = parts[-1]
    if isinstance(parent, dict):
        if token not in parent:
            raise PatchError(f"path not found: {pointer}")
        return parent.pop(token)
    if isinstance(parent, list):
        return parent.pop(_list_index(parent, token, allow_end=False))
    raise PatchError(f"path not found: {pointer}")


def _add(document: Any, pointer: str, value: Any, *, replace: bool = False) -> Any:
    parts = _parse_pointer(pointer)
    if not parts:
        return value
    parent = _resolve_parent(document, parts)
    token = parts[-1]
    if isinstance(parent, dict):
        if replace and token not in parent:
            raise PatchError(f"path not found: {pointer}")
        parent[token] = value
    elif isinstance(parent, list):
        if replace:
            parent[_list_index(parent, token, allow_end=False)] = value
        else:
            parent.insert(_list_index(parent, token, allow_end=True), value)
    else:
        raise PatchError(f"path not found: {pointer}")
    return document


def json_patch(document: Any, operations: Any) -> Any:
    """Apply a JSON patch to a copy of the document; the original is never modified."""
    if not isinstance(operations, list):
        raise PatchError("a JSON patch must be a list of operations")
    result = copy.deepcopy(document)
    for operation in operations:
        if not isinstance(operation, dict) or "op" not in operation or "path" not in operation:
            raise PatchError(f"malformed JSON patch operation: {operation!r}")
        op, path = operation["op"], operation["path"]
        match op:
            case "add":
                result = _add(result, path, copy.deepcopy(operation.get("value")))
            case "replace":
                result = _add(result, path, copy.deepcopy(operation.get("value")), replace=True)
            case "remove":
                _remove(result, path)
            case "test":
                if _get(result, path) != operation.get("value"):
                    raise PatchTestFailed(f"the test operation failed at {path}")
            case "move":
                value = _remove(result, operation["from"])
                result = _add(result, path, value)
            case "copy":
                result = _add(result, path, copy.deepcopy(_get(result, operation["from"])))
            case _:
                raise PatchError(f"unknown JSON patch operation: {op!r}")
    return result
