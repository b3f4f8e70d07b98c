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

# Old numeric codes (before obshell 4.3.1) and the SDKs' meaning of them.
OLD_CODE_DECRYPT = 1
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
    ) -> None:
        self.status = status
        self.err_code = err_code
        self.code = code
        self.message = message
        self.trace_id = trace_id
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
        if self.err_code in _PERMANENT_5XX:
            return False
        return self.status >= 500 or self.status == 429

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
