"""The agent's side of the wire: the response envelope, error codes and timestamps (fact sheet §1)."""

from __future__ import annotations

import json
import secrets
from datetime import datetime
from typing import Any

from obstop.testing.obshell_sim import clock

# errCode → (HTTP status, old numeric code or 0, English message template), from obshell's en.json.
CATALOG: dict[str, tuple[int, int, str]] = {
    "Common.NotFound": (404, 0, "Element not found: %s"),
    "Common.Unexpected": (500, 0, "Unexpected error: %s"),
    "Common.BindJsonFailed": (400, 0, "Bind JSON failed: %s"),
    "Common.IllegalArgument": (400, 0, "The input parameter '%s' is illegal: %s"),
    "Common.InvalidIp": (400, 0, "'%s' is not a valid IP address"),
    "Common.InvalidPort": (400, 0, "The port '%s' is invalid, it should be a number between 1 and 65535"),
    "Common.InvalidAddress": (400, 0, "'%s' is not a valid address"),
    "Request.Header.NotFound": (
        400,
        0,
        "X-OCS-Agent-Header or X-OCS-Header not found in http request header",
    ),
    "Security.Authentication.Header.DecryptFailed": (401, 1, "Decrypt http header failed: %s"),
    "Security.Authentication.Header.UriMismatch": (401, 10008, "Unauthorized: URI mismatch"),
    "Security.Authentication.Expired": (401, 10008, "Unauthorized: Authentication expired"),
    "Security.Authentication.Timestamp.Invalid": (401, 10008, "Unauthorized: Invalid timestamp: %s, err: %s"),
    "Security.Authentication.IncorrectOceanbasePassword": (
        401,
        10008,
        "Unauthorized: OceanBase password is incorrect",
    ),
    "Security.Authentication.IncorrectAgentPassword": (
        401,
        10008,
        "Unauthorized: Agent password is incorrect",
    ),
    "Security.Authentication.WithOceanBasePassword": (
        401,
        10008,
        "Unauthorized: Should use oceanbase_password to verify: %s",
    ),
    "Request.Body.Decrypt.AES.KeyAndIv.Invalid": (500, 0, "AES key and IV size error"),
    "Request.Body.Decrypt.AES.ContentLength.Invalid": (
        500,
        0,
        "Decrypted string length is not a multiple of the block size",
    ),
    "OB.Cluster.Scope.Invalid": (400, 0, "Scope '%s' is invalid"),
    "OB.Zone.NotExist": (400, 0, "Zone '%s' does not exist"),
    "Agent.NotExist": (400, 0, "Server '%s' does not exist"),
    "Agent.Identify.NotSupportOperation": (
        400,
        0,
        "'%s' is '%s', instead of '%s', does not support this operation",
    ),
    "OB.Cluster.ForceStopOrTerminateRequired": (
        400,
        0,
        "Cannot stop all observers without 'force' and 'terminate'",
    ),
    "OB.Cluster.StopModeConflict": (
        400,
        0,
        "Cannot stop observer with 'force' and 'terminate' at the same time",
    ),
    "OB.Cluster.ForceStopRequired": (
        400,
        0,
        "The current observer is not available, please stop with 'force'",
    ),
    "OB.Server.StoppedInMultiZone": (400, 0, "Cannot stop server or stop zone in multiple zones"),
    # en.json has no text for this one, so obshell answers with the i18n key itself.
    "OB.Cluster.Tenant.Replica.Invalid": (400, 0, "err.ob.cluster.tenant.replica.invalid"),
    "Task.NotFound": (404, 0, "Task not found: %s"),
    "Task.GenericID.Invalid": (400, 0, "Invalid ID: %s"),
    "Task.Dag.Operator.NotSupport": (400, 0, "Operator %s is not supported"),
    "Task.Dag.Operator.RetryNotFailedDag": (400, 0, "Failed to retry DAG: DAG state is not failed"),
    "Task.Dag.Operator.RollbackNotFailedDag": (400, 0, "Failed to rollback DAG: DAG state is not failed"),
    "Task.Dag.Operator.PassNotFailedDag": (400, 0, "Failed to pass DAG: DAG state is not failed"),
    "Task.Dag.Operator.RetryNotAllowed": (400, 0, "Failed to retry DAG: node %s cannot retry"),
    "Task.Dag.Operator.RollbackNotAllowed": (400, 0, "Failed to rollback DAG: node %s cannot rollback"),
    "Task.Dag.Operator.PassNotAllowed": (400, 0, "Failed to pass DAG: node %s cannot pass"),
    "Task.Dag.Operator.CancelNotAllowed": (400, 0, "Failed to cancel DAG: node %s cannot cancel"),
    "Task.Dag.Operator.CancelFinishedDag": (400, 0, "Failed to cancel DAG: DAG is finished"),
}


class ApiError(Exception):
    """An error the simulated agent answers with. Build one with `api_error(errCode, *args)`."""

    def __init__(self, status: int, err_code: str, message: str, code: int = 0) -> None:
        super().__init__(f"{status} {err_code}: {message}")
        self.status = status
        self.err_code = err_code
        self.message = message
        self.code = code

    def to_wire(self) -> dict[str, Any]:
        body: dict[str, Any] = {}
        if self.code:
            body["code"] = self.code  # Go omitempty: absent when 0
        body["errCode"] = self.err_code
        body["message"] = self.message
        return body


def api_error(err_code: str, *args: object) -> ApiError:
    status, code, template = CATALOG[err_code]
    message = template % args if args else template.replace(": %s", "").replace("%s", "")
    return ApiError(status, err_code, message, code)


def custom_error(err_code: str, message: str, status: int = 500) -> ApiError:
    """An error outside the catalog (fault injection): status and text as given."""
    return ApiError(status, err_code, message)


def envelope(
    status: int,
    *,
    trace_id: str,
    duration_ms: int,
    data: Any = None,
    error: ApiError | None = None,
) -> bytes:
    """obshell's response envelope, keys in the order of Go's OcsAgentResponse."""
    body: dict[str, Any] = {
        "successful": error is None and status < 400,
        "timestamp": go_time(clock.now()),
        "duration": duration_ms,
        "status": status,
        "traceId": trace_id,
    }
    if data is not None:
        body["data"] = {"contents": data} if isinstance(data, list) else data
    if error is not None:
        body["error"] = error.to_wire()
    return json.dumps(body).encode("utf-8")


def new_trace_id() -> str:
    return secrets.token_hex(8)


def go_time(moment: datetime) -> str:
    """RFC 3339 with fractional seconds as Go's time.Time marshals it (UTC as `Z`)."""
    text = moment.isoformat(timespec="microseconds")
    return text[:-6] + "Z" if text.endswith("+00:00") else text


EPOCH = datetime.fromtimestamp(0).astimezone()
