"""The agent's side of the wire: the response envelope, error codes and timestamps (ob/agent/lib/http/response.go)."""

from __future__ import annotations

import json
import secrets
from datetime import datetime
from typing import Any

from obstop.testing.obshell_sim import clock
from obstop.testing.obshell_sim.releases import NEWEST_RELEASE, Release

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
    # Occur(...), not wrapped in Common.Unauthorized: no "Unauthorized: " prefix (ob/agent/api/common/middleware.go Verify).
    "Security.Authentication.Header.UriMismatch": (401, 10008, "URI mismatch"),
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
    "Security.Authentication.WithAgentPassword": (
        401,
        10008,
        "Unauthorized: Should use agent_password to verify: %s",
    ),
    # WrapRetain(Common.Unauthorized, ...): the inner 500 kept, the "Unauthorized: " prefix added (ob/agent/api/common/middleware.go).
    "Request.Body.Decrypt.AES.KeyAndIv.Invalid": (500, 0, "Unauthorized: AES key and IV size error"),
    "Request.Body.Decrypt.AES.ContentLength.Invalid": (
        500,
        0,
        "Unauthorized: Decrypted string length is not a multiple of the block size",
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


DECRYPT_FAILED = "Security.Authentication.Header.DecryptFailed"

# Before 4.3.1.0 (4.2.x-4.3.0.0) errors were {code, message} with a numeric code per kind, and the message the
# kind's en.json template around the detail text (ob/agent/errors/errorcode.go, ob/agent/assets/i18n/error/en.json @424f28a, @32187ba; README.md#obshell-releases-the-simulator-reproduces).
_BAD_REQUEST = (400, 1000, "Bad request: %s")
_ILLEGAL_ARGUMENT = (400, 1001, "Illegal argument: %s")
_UNEXPECTED = (500, 1002, "Unexpected error: %s")
_KNOWN = (500, 1010, "Known error: %s")
_TASK_NOT_FOUND = (404, 2300, "Task not found: %s")
# Every auth failure, a missing header and body-decrypt failures included: 401 10008, message per release.
_UNAUTHORIZED: tuple[int, int, str | None] = (401, 10008, None)
_LEGACY_CODE_BY_STATUS = {400: 1000, 401: 10008, 404: 2300, 500: 1002}

# errCode → (old kind, detail text). The detail is a str.format template over the errCode's arguments, as the old
# code wrote it (agent/executor/ob/stop.go, executor/ob/info.go IsValidScope, service/task/dag.go,
# engine/task/task_dto.go ConvertGenericID, api/common/middleware.go, secure/auth.go @32187ba and @737982a).
LEGACY: dict[str, tuple[tuple[int, int, str | None], str]] = {
    "Common.NotFound": (
        _BAD_REQUEST,
        "{0}",
    ),  # NoRoute: 400 "Bad request: 404 not found" (ob/agent/lib/http/response.go)
    "Common.Unexpected": (_UNEXPECTED, "{0}"),
    "Common.BindJsonFailed": (_ILLEGAL_ARGUMENT, "{0}"),
    "Common.IllegalArgument": (_ILLEGAL_ARGUMENT, "{1}"),
    "Common.InvalidIp": (_ILLEGAL_ARGUMENT, "{0} is not a valid IP address"),
    "Common.InvalidPort": (
        _ILLEGAL_ARGUMENT,
        "Invalid port: {0}. Port number should be in the range [1024, 65535].",
    ),
    "Common.InvalidAddress": (_ILLEGAL_ARGUMENT, "Invalid server format: {0}"),
    "Request.Header.NotFound": (_UNAUTHORIZED, "header not found"),
    DECRYPT_FAILED: (_UNAUTHORIZED, "header decrypt failed"),
    "Security.Authentication.Header.UriMismatch": (_UNAUTHORIZED, "uri mismatch"),
    "Security.Authentication.Expired": (_UNAUTHORIZED, "auth expired"),
    "Security.Authentication.Timestamp.Invalid": (_UNAUTHORIZED, "{1}"),
    "Security.Authentication.IncorrectOceanbasePassword": (_UNAUTHORIZED, "access denied"),
    "Security.Authentication.IncorrectAgentPassword": (
        _UNAUTHORIZED,
        "access denied: agent password is incorrect",
    ),
    "Security.Authentication.WithOceanBasePassword": (
        _UNAUTHORIZED,
        "agent password is not initialized, use oceanbase password to verify",
    ),
    "Security.Authentication.WithAgentPassword": (
        _UNAUTHORIZED,
        "agent password has been set, use agent password to verify",
    ),
    "Request.Body.Decrypt.AES.KeyAndIv.Invalid": (_UNAUTHORIZED, "body decrypt failed"),
    "Request.Body.Decrypt.AES.ContentLength.Invalid": (_UNAUTHORIZED, "body decrypt failed"),
    "OB.Cluster.Scope.Invalid": (_ILLEGAL_ARGUMENT, "unknow scope type '{0}'"),
    "OB.Zone.NotExist": (_ILLEGAL_ARGUMENT, "zone '{0}' not exist"),
    "Agent.NotExist": (_ILLEGAL_ARGUMENT, "server '{0}' not exist"),
    # 500 code 1010, naming only the identity (ob/agent/executor/ob/stop.go CheckStopObParam, README.md#obshell-releases-the-simulator-reproduces).
    "Agent.Identify.NotSupportOperation": (_KNOWN, "agent identity is '{1}'"),
    "OB.Cluster.ForceStopOrTerminateRequired": (
        _ILLEGAL_ARGUMENT,
        "cannot stop all observer without 'force'",
    ),
    "OB.Cluster.StopModeConflict": (
        _ILLEGAL_ARGUMENT,
        "cannot stop observer with 'force' and 'terminate' at the same time",
    ),
    "OB.Cluster.ForceStopRequired": (
        _ILLEGAL_ARGUMENT,
        "The current observer is not available, please stop with 'force'",
    ),
    "Task.NotFound": (_TASK_NOT_FOUND, "{0}"),
    "Task.GenericID.Invalid": (_ILLEGAL_ARGUMENT, "invalid id: {0}"),
    # DAG operator refusals: 500 code 1010 "Known error: ..." (ob/agent/engine/task/task.go, executor/task/dag.go DagHandler).
    "Task.Dag.Operator.NotSupport": (_KNOWN, "invalid operator: {0}"),
    "Task.Dag.Operator.RetryNotFailedDag": (_KNOWN, "failed to set dag retry: dag state is not failed"),
    "Task.Dag.Operator.RollbackNotFailedDag": (_KNOWN, "failed to set dag rollback: dag state is not failed"),
    "Task.Dag.Operator.PassNotFailedDag": (_KNOWN, "failed to pass dag: dag is not failed"),
    "Task.Dag.Operator.RetryNotAllowed": (_KNOWN, "failed to set dag retry: {0} can not retry"),
    # The old text also names the node id ("node <id>. <name> can not rollback"); the callers pass the name only.
    "Task.Dag.Operator.RollbackNotAllowed": (_KNOWN, "failed to set dag rollback: node {0} can not rollback"),
    "Task.Dag.Operator.PassNotAllowed": (_KNOWN, "failed to pass dag: {0} can not pass"),
    "Task.Dag.Operator.CancelNotAllowed": (_KNOWN, "failed to cancel dag: {0} can not cancel"),
    "Task.Dag.Operator.CancelFinishedDag": (_KNOWN, "failed to cancel dag: dag is finished"),
}


class ApiError(Exception):
    """An error the simulated agent answers with. Build one with `api_error(errCode, *args)`.

    `status`, `code` and `message` are the current (≥ 4.3.1.0) form; `render(release)` gives the HTTP status and
    the `error` object of any release, so no handler needs to know the version (ob/agent/errors/errorcode.go, README.md#obshell-releases-the-simulator-reproduces). `legacy` replaces the
    detail of the pre-4.3.1.0 message when the old text differed from the arguments (see LEGACY)."""

    def __init__(
        self,
        status: int,
        err_code: str,
        message: str,
        code: int = 0,
        *,
        args: tuple[object, ...] = (),
        legacy: str | None = None,
    ) -> None:
        super().__init__(f"{status} {err_code}: {message}")
        self.status = status
        self.err_code = err_code
        self.message = message
        self.code = code
        self.detail_args = args
        self.legacy = legacy

    def status_in(self, release: Release) -> int:
        return self.render(release)[0]

    def to_wire(self, release: Release = NEWEST_RELEASE) -> dict[str, Any]:
        return self.render(release)[1]

    def render(self, release: Release) -> tuple[int, dict[str, Any]]:
        """(HTTP status, `error` object) as `release` sends this error."""
        if release.err_codes:
            code = self.code
            if self.err_code == DECRYPT_FAILED:
                code = (
                    release.decrypt_failed_code
                )  # 1 from 4.4.2.0, none before (ob/agent/api/common/middleware.go)
            body: dict[str, Any] = {}
            if code:
                body["code"] = code  # Go omitempty: absent when 0
            body["errCode"] = self.err_code
            body["message"] = self.message
            return self.status, body
        # Before 4.3.1.0: {code, message}, `code` always present, no errCode (ob/agent/errors/errorcode.go).
        found = LEGACY.get(self.err_code)
        if found is None:  # outside the catalog (fault injection): the text as given, the code by status
            return self.status, {
                "code": _LEGACY_CODE_BY_STATUS.get(self.status, 1002),
                "message": self.message,
            }
        (status, code, template), detail_template = found
        detail = self.legacy
        if detail is None:
            try:
                detail = detail_template.format(*self.detail_args)
            except IndexError:  # raised with fewer arguments than the old text names
                detail = self.message
        message = release.unauthorized(detail) if template is None else template % detail
        return status, {"code": code, "message": message}


def api_error(err_code: str, *args: object, legacy: str | None = None) -> ApiError:
    status, code, template = CATALOG[err_code]
    message = template % args if args else template.replace(": %s", "").replace("%s", "")
    return ApiError(status, err_code, message, code, args=args, legacy=legacy)


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
    release: Release = NEWEST_RELEASE,
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
        body["error"] = error.to_wire(release)
    return json.dumps(body).encode("utf-8")


def new_trace_id() -> str:
    return secrets.token_hex(8)


def go_time(moment: datetime) -> str:
    """RFC 3339 with fractional seconds as Go's time.Time marshals it (UTC as `Z`)."""
    text = moment.isoformat(timespec="microseconds")
    return text[:-6] + "Z" if text.endswith("+00:00") else text


EPOCH = datetime.fromtimestamp(0).astimezone()
