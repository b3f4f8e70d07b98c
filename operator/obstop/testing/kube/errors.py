"""API errors as the server reports them: metav1.Status bodies with the real reasons and codes."""

from __future__ import annotations

from typing import Any

from obstop.testing.kube.resources import ResourceInfo


class ApiError(Exception):
    """An error answered to the client as a metav1.Status body; never carries request bodies."""

    def __init__(self, code: int, reason: str, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details or {}

    def to_status(self) -> dict[str, Any]:
        status: dict[str, Any] = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        if self.details:
            status["details"] = self.details
        return status

    @classmethod
    def from_status(cls, status: dict[str, Any]) -> ApiError:
        return cls(
            int(status.get("code", 500)),
            str(status.get("reason", "")),
            str(status.get("message", "")),
            dict(status.get("details") or {}),
        )


def _details(res: ResourceInfo, name: str | None) -> dict[str, Any]:
    details: dict[str, Any] = {"kind": res.plural}
    if name:
        details["name"] = name
    if res.group:
        details["group"] = res.group
    return details


def not_found(res: ResourceInfo, name: str) -> ApiError:
    return ApiError(404, "NotFound", f'{res.qualified_name} "{name}" not found', _details(res, name))


def already_exists(res: ResourceInfo, name: str) -> ApiError:
    return ApiError(
        409, "AlreadyExists", f'{res.qualified_name} "{name}" already exists', _details(res, name)
    )


def conflict(res: ResourceInfo, name: str, why: str | None = None) -> ApiError:
    why = why or "the object has been modified; please apply your changes to the latest version and try again"
    message = f'Operation cannot be fulfilled on {res.qualified_name} "{name}": {why}'
    return ApiError(409, "Conflict", message, _details(res, name))


def invalid(res: ResourceInfo, name: str, field: str, message: str) -> ApiError:
    details = _details(res, name)
    details["kind"] = res.kind
    details["causes"] = [{"reason": "FieldValueInvalid", "message": message, "field": field}]
    text = f'{res.kind} "{name}" is invalid: {field}: {message}'
    return ApiError(422, "Invalid", text, details)


def bad_request(message: str) -> ApiError:
    return ApiError(400, "BadRequest", message)


def gone(message: str) -> ApiError:
    return ApiError(410, "Expired", message)


def endpoint_not_found(path: str) -> ApiError:
    return ApiError(404, "NotFound", f"the server could not find the requested resource ({path})")
