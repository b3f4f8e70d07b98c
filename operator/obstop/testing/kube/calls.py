"""What the server was asked to do: the API calls (for RBAC checks) and the faults to answer some of them with."""

from __future__ import annotations

import dataclasses
from typing import Any

from obstop.testing.kube.store import Store

# The reason a real server gives with each status code.
REASONS = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    409: "Conflict",
    410: "Expired",
    422: "Invalid",
    429: "TooManyRequests",
    500: "InternalError",
    503: "ServiceUnavailable",
    504: "Timeout",
}


@dataclasses.dataclass(frozen=True)
class ApiCall:
    """One resource request, in RBAC terms. Headers other than the User-Agent are never kept."""

    verb: str  # get, list, watch, create, update, patch, delete, deletecollection
    group: str
    version: str
    resource: str
    subresource: str | None
    namespace: str | None
    name: str | None
    user_agent: str
    code: int

    @property
    def rbac_resource(self) -> str:
        """As RBAC rules name it: `obstoprequests` or `obstoprequests/status`."""
        return f"{self.resource}/{self.subresource}" if self.subresource else self.resource


class CallLog(list[ApiCall]):
    """The calls in the order they came; `.clear()` to forget them."""

    def filter(
        self,
        *,
        user_agent: str | None = None,
        verb: str | None = None,
        group: str | None = None,
        resource: str | None = None,
        subresource: str | None = None,
        namespace: str | None = None,
        name: str | None = None,
    ) -> list[ApiCall]:
        """Calls matching all the given criteria; `user_agent` is a substring, `subresource=""` the main one."""
        criteria = dict(
            user_agent=user_agent,
            verb=verb,
            group=group,
            resource=resource,
            subresource=subresource,
            namespace=namespace,
            name=name,
        )
        return [call for call in self if call_matches(call, **criteria)]


def call_matches(
    call: ApiCall,
    *,
    user_agent: str | None = None,
    verb: str | None = None,
    group: str | None = None,
    resource: str | None = None,
    subresource: str | None = None,
    namespace: str | None = None,
    name: str | None = None,
) -> bool:
    """Criteria left as None match anything; `user_agent` is a substring, `subresource=""` the main resource."""
    return (
        (user_agent is None or user_agent in call.user_agent)
        and (verb is None or call.verb == verb)
        and (group is None or call.group == group)
        and (resource is None or call.resource == resource)
        and (subresource is None or (call.subresource or "") == subresource)
        and (namespace is None or call.namespace == namespace)
        and (name is None or call.name == name)
    )


@dataclasses.dataclass
class Fault:
    """Answer the next `times` matching calls (None: all of them) with `status` instead of serving them.

    Criteria left as None match anything; `subresource=""` matches only the main resource.
    """

    status: int
    verb: str | None = None
    group: str | None = None
    resource: str | None = None
    subresource: str | None = None
    namespace: str | None = None
    name: str | None = None
    user_agent: str | None = None
    times: int | None = 1
    message: str | None = None
    hits: int = 0

    def matches(self, call: ApiCall) -> bool:
        return not self.exhausted and call_matches(
            call,
            user_agent=self.user_agent,
            verb=self.verb,
            group=self.group,
            resource=self.resource,
            subresource=self.subresource,
            namespace=self.namespace,
            name=self.name,
        )

    @property
    def exhausted(self) -> bool:
        return self.times is not None and self.hits >= self.times

    def status_body(self, call: ApiCall) -> dict[str, Any]:
        reason = REASONS.get(self.status, "InternalError" if self.status >= 500 else "BadRequest")
        return {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message or f"injected fault for {call.verb} {call.rbac_resource}",
            "reason": reason,
            "code": self.status,
        }


class Faults:
    """Injected faults, consumed in the order they were injected."""

    def __init__(self, store: Store) -> None:
        self._faults: list[Fault] = []
        self._store = store

    @property
    def pending(self) -> list[Fault]:
        return [fault for fault in self._faults if not fault.exhausted]

    def inject(
        self,
        status: int,
        *,
        verb: str | None = None,
        group: str | None = None,
        resource: str | None = None,
        subresource: str | None = None,
        namespace: str | None = None,
        name: str | None = None,
        user_agent: str | None = None,
        times: int | None = 1,
        message: str | None = None,
    ) -> Fault:
        fault = Fault(status, verb, group, resource, subresource, namespace, name, user_agent, times, message)
        self._faults.append(fault)
        return fault

    def clear(self) -> None:
        self._faults.clear()

    def cut_watches(self) -> int:
        """End every open watch stream now (clients see the stream close and must re-watch)."""
        return self._store.cut_watches()

    def compact_history(self) -> None:
        """Forget past events: a watch resuming from an earlier resourceVersion gets 410 Gone."""
        self._store.compact()

    def take(self, call: ApiCall) -> Fault | None:
        for fault in self._faults:
            if fault.matches(call):
                fault.hits += 1
                return fault
        return None
