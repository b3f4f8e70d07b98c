"""ObStopApprovals: how a spec.approval Manual request is approved, read from the API server.

An approval is an object of its own (kind ObStopApproval, in the request's namespace, `spec.requestName`), not
an annotation or a field of the request: whoever may patch a request may set any annotation on it, while
creating an ObStopApproval is a right RBAC grants on its own (the chart's `approve` role). Kubernetes does not
record who created an object, so `spec.approvedBy` is written by the approver and checked at admission by the
chart's ValidatingAdmissionPolicy (`spec.approvedBy == request.userInfo.username`): the name in status is the
API server's, not the approver's claim. docs/security.md has the RBAC.

`choose` (pure) picks the approval that counts; `ApprovalReader` lists them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import quote

from obstop.controller.kubeapi import ApiError, KubeApi
from obstop.controller.resource import GROUP, VERSION
from obstop.controller.secrets import API_TIMEOUT_SECONDS
from obstop.controller.status import parse_time

APPROVAL_PLURAL = "obstopapprovals"
APPROVAL_KIND = "ObStopApproval"


class ApprovalsUnavailable(Exception):
    """The approvals cannot be listed now (RBAC, the API server): retried."""


@dataclass(frozen=True)
class ApprovalObject:
    name: str
    uid: str
    request_name: str
    request_uid: str
    approved_by: str
    created: datetime | None

    @classmethod
    def from_wire(cls, raw: Mapping[str, Any]) -> ApprovalObject | None:
        meta, spec = raw.get("metadata") or {}, raw.get("spec") or {}
        if not isinstance(meta, Mapping) or not isinstance(spec, Mapping):
            return None
        text = {k: spec.get(k) for k in ("requestName", "requestUID", "approvedBy")}
        if not isinstance(text["requestName"], str) or not isinstance(text["approvedBy"], str):
            return None
        return cls(
            name=str(meta.get("name") or ""),
            uid=str(meta.get("uid") or ""),
            request_name=text["requestName"],
            request_uid=text["requestUID"] if isinstance(text["requestUID"], str) else "",
            approved_by=text["approvedBy"],
            created=parse_time(meta.get("creationTimestamp")),
        )


def choose(
    approvals: Iterable[ApprovalObject],
    *,
    request_name: str,
    request_uid: str,
    request_created: datetime | None,
    superseded: Iterable[str] = (),
) -> ApprovalObject | None:
    """The earliest approval of this request: naming it (and its uid, if it names one), created no earlier than
    the request (an approval left from an earlier request of the same name does not count), and not given for a
    pre-check view that has since changed (`superseded`)."""
    spent = set(superseded)
    fitting = [
        a
        for a in approvals
        if a.request_name == request_name
        and a.approved_by
        and (not a.request_uid or a.request_uid == request_uid)
        and a.uid not in spent
        and (request_created is None or a.created is None or a.created >= request_created)
    ]
    fitting.sort(key=lambda a: (a.created is None, a.created or datetime.min, a.name))
    return fitting[0] if fitting else None


class ApprovalReader:
    def __init__(self, api: KubeApi) -> None:
        self._api = api

    async def list(self, namespace: str) -> list[ApprovalObject]:
        path = f"/apis/{GROUP}/{VERSION}/namespaces/{quote(namespace, safe='')}/{APPROVAL_PLURAL}"
        try:
            listed = await self._api.get(path, within=API_TIMEOUT_SECONDS)
        except ApiError as exc:
            if exc.status == 404:
                raise ApprovalsUnavailable(
                    f"the {APPROVAL_KIND} CRD is not installed (install deploy/crds/, or the chart)"
                ) from None
            if exc.status == 403:
                raise ApprovalsUnavailable(
                    f"not allowed to list {APPROVAL_PLURAL} in {namespace} (RBAC)"
                ) from None
            raise ApprovalsUnavailable(
                f"cannot list {APPROVAL_PLURAL} in {namespace}: HTTP {exc.status}"
            ) from None
        except Exception as exc:  # no answer: the API server may be restarting
            raise ApprovalsUnavailable(f"cannot list {APPROVAL_PLURAL}: {type(exc).__name__}") from None
        items = listed.get("items")
        found = (ApprovalObject.from_wire(item) for item in items or () if isinstance(item, Mapping))
        return [a for a in found if a is not None]
