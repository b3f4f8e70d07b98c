"""Typed errors of the obshell client. Each says whether retrying later may help (`transient`).

No error ever carries the password: messages come from the agent's `error` object or from the transport,
and request headers are never included.
"""

from __future__ import annotations

# errCodes whose HTTP status is 5xx but that will not go away by retrying the same request.
_PERMANENT_5XX = frozenset(
    {
        "Request.Body.Decrypt.AES.KeyAndIv.Invalid",
        "Request.Body.Decrypt.AES.ContentLength.Invalid",
        "Task.Expired",
    }
)

# 400s that a later try can pass (ob/agent/errors/errorcode.go): an observer error such as a query timeout.
_TRANSIENT_4XX = frozenset({"MySQL.Error"})

FORCE_STOP_REQUIRED = "OB.Cluster.ForceStopRequired"

# Old numeric codes (before obshell 4.3.1.0, ob/agent/errors/errorcode.go) and the SDKs' meaning of them.
OLD_CODE_DECRYPT = 1  # header-decrypt failure, sent only from 4.4.2.0 on
OLD_CODE_BAD_REQUEST = (
    1000  # before 4.3.1.0 also the answer to an unknown route ("Bad request: 404 not found")
)
OLD_CODE_ILLEGAL_ARGUMENT = 1001
OLD_CODE_KNOWN = 1010  # "Known error: ..." (500), e.g. a non-cluster agent identity before 4.3.1.0
OLD_CODE_UNAUTHORIZED = 10008


class ObshellError(Exception):
    """Base class of everything the obshell client raises."""

    transient: bool = False

    @property
    def reason(self) -> str:
        """A short machine-readable reason, for a status `reason` field."""
        return type(self).__name__


class ObshellApiError(ObshellError):
    """The agent answered with an error envelope (or a non-2xx status)."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        err_code: str = "",
        code: int = 0,
        trace_id: str = "",
        enveloped: bool = True,
    ) -> None:
        self.status = status
        self.err_code = err_code
        self.code = code
        self.message = message
        self.trace_id = trace_id
        # False when something other than obshell answered (a proxy's 502/504 page): then nothing says whether
        # the request reached the agent.
        self.enveloped = enveloped
        super().__init__(str(self))

    def __str__(self) -> str:
        label = self.err_code or (f"code {self.code}" if self.code else "error")
        return f"HTTP {self.status} {label}: {self.message}"

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(status={self.status}, err_code={self.err_code!r}, code={self.code}, "
            f"message={self.message!r}, trace_id={self.trace_id!r})"
        )

    @property
    def transient(self) -> bool:  # type: ignore[override]
        if self.err_code in _PERMANENT_5XX or self.is_identity_refusal:
            return False
        return self.status >= 500 or self.status == 429 or self.err_code in _TRANSIENT_4XX

    @property
    def reason(self) -> str:
        return self.err_code or f"HTTP{self.status}"

    @property
    def is_decrypt_failure(self) -> bool:
        """The agent could not decrypt our header: its RSA key changed (rotation, 512→1024-bit upgrade)."""
        return self.status == 401 and (
            self.code == OLD_CODE_DECRYPT
            or self.err_code.startswith("Security.Authentication.Header.Decrypt")
        )

    @property
    def may_be_stale_key(self) -> bool:
        """A 401 that may mean our cached RSA key is not the agent's any more. Before 4.3.1.0 obshell answers a
        header it cannot decrypt with the same 401 code 10008 as a wrong password (README.md#obshell-releases-the-simulator-reproduces), so only a
        fresh key can tell the two apart."""
        return self.is_decrypt_failure or (
            self.status == 401 and self.code == OLD_CODE_UNAUTHORIZED and not self.err_code
        )

    @property
    def is_unknown_route(self) -> bool:
        """The agent has no such route: 404 Common.NotFound from 4.3.1.0, 400 code 1000 "Bad request: 404 not
        found" before (ob/agent/lib/http/response.go, README.md#obshell-releases-the-simulator-reproduces): e.g. the DAG history list, absent before 4.3.0.0."""
        if not self.enveloped:
            return False
        if self.status == 404:
            return self.err_code == "Common.NotFound"
        return (
            self.status == 400
            and not self.err_code
            and self.code == OLD_CODE_BAD_REQUEST
            and "404 not found" in self.message.lower()
        )

    @property
    def is_record_not_found(self) -> bool:
        """GET DAG found no such record. Any other lookup error (a busy sqlite) is also a 404 Task.NotFound
        (code 2300 before 4.3.1.0), so only this text says the DAG is really not there (ob/agent/api/task_handler.go)."""
        return self.status == 404 and "record not found" in self.message.lower()

    @property
    def is_force_stop_required(self) -> bool:
        """The receiving agent's observer has no usable connection, so only a forced stop can run: errCode
        OB.Cluster.ForceStopRequired from 4.3.1.0, 400 code 1001 "Illegal argument: ..." before (README.md#obshell-releases-the-simulator-reproduces)."""
        return self.err_code == FORCE_STOP_REQUIRED or (
            not self.err_code
            and self.code == OLD_CODE_ILLEGAL_ARGUMENT
            and "please stop with 'force'" in self.message.lower()
        )

    @property
    def is_identity_refusal(self) -> bool:
        """The agent is not a cluster agent (SINGLE, MASTER, TAKE OVER ..., SCALING ...): 400
        Agent.Identify.NotSupportOperation from 4.3.1.0, 500 code 1010 "Known error: agent identity is ..." before
        (README.md#obshell-releases-the-simulator-reproduces). Retrying the same agent cannot help."""
        return self.err_code == "Agent.Identify.NotSupportOperation" or (
            not self.err_code and self.code == OLD_CODE_KNOWN and "agent identity" in self.message.lower()
        )

    @property
    def is_expired(self) -> bool:
        """The signed header's timestamp had passed on the agent's clock (clock skew, or a very slow send)."""
        return self.status == 401 and (
            self.err_code == "Security.Authentication.Expired"
            or (not self.err_code and "authentication expired" in self.message.lower())
        )

    @property
    def is_unauthorized(self) -> bool:
        return self.status == 401


class ObshellTransportError(ObshellError):
    """No usable HTTP answer: connection refused, timeout, reset.

    `maybe_delivered` is True when the request may have reached the agent (the connection broke or timed out
    after the request was written), so a caller must find out whether a non-idempotent call landed before
    sending it again.
    """

    transient = True

    def __init__(self, message: str, *, maybe_delivered: bool) -> None:
        self.maybe_delivered = maybe_delivered
        super().__init__(message)

    @property
    def reason(self) -> str:
        return "AgentUnreachable"


class ObshellProtocolError(ObshellError):
    """The agent answered, but not with obshell's envelope (a proxy page, truncated JSON, wrong types)."""

    transient = True

    @property
    def reason(self) -> str:
        return "BadAgentResponse"


class InvalidGenericId(ObshellError, ValueError):
    """A DAG generic id that the agent would refuse (Task.GenericID.Invalid)."""

    @property
    def reason(self) -> str:
        return "Task.GenericID.Invalid"
