"""The ObStopRequest custom resource: its coordinates and a typed view of its spec.

deploy/crds/ is the source of truth for the schema; this model re-checks what the controller relies on, so a
request that slipped past admission (an API server without CEL, a CRD applied late) still gets a clear error.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import Annotated, Any

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from obstop.obshell import InvalidAddress, Scope, ScopeType, StopParams, parse_endpoint
from obstop.obshell.address import split_host_port
from obstop.obshell.ids import decode as decode_generic_id

GROUP = "obshell.oceanbase.com"
VERSION = "v1alpha1"
PLURAL = "obstoprequests"
KIND = "ObStopRequest"


class Phase(StrEnum):
    PENDING = "Pending"
    AWAITING_APPROVAL = "AwaitingApproval"  # spec.approval Manual: pre-checked, waiting for an ObStopApproval
    SUBMITTED = "Submitted"
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    CANCELLED = "Cancelled"
    VALIDATED = "Validated"  # spec.dryRun: the pre-check passed; nothing was stopped

    @property
    def terminal(self) -> bool:
        return self in (Phase.SUCCEEDED, Phase.FAILED, Phase.CANCELLED, Phase.VALIDATED)


class DeadlineAction(StrEnum):
    REPORT = "Report"  # Failed, DeadlineExceeded; the DAG is left to run
    CANCEL = "Cancel"  # the DAG is cancelled; Cancelled, DeadlineCancelled


class ApprovalMode(StrEnum):
    AUTOMATIC = "Automatic"  # the stop follows its pre-check
    MANUAL = "Manual"  # the stop waits in AwaitingApproval for an ObStopApproval naming the request


# Set to "true" on a request, it asks the controller to cancel the stop (docs/runbook.md). An annotation, not a
# spec field: the spec is immutable, and a cancel is an action on the request, not a different stop.
CANCEL_ANNOTATION = f"{GROUP}/cancel"


class _Spec(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True, frozen=True)


class SecretKeyRef(_Spec):
    name: Annotated[str, Field(min_length=1, max_length=253)]
    key: Annotated[str, Field(min_length=1, max_length=253)] = "password"


class CaSecretRef(_Spec):
    name: Annotated[str, Field(min_length=1, max_length=253)]
    key: Annotated[str, Field(min_length=1, max_length=253)] = "ca.crt"


class ObshellRef(_Spec):
    address: str
    password_secret_ref: SecretKeyRef = Field(alias="passwordSecretRef")
    ca_secret_ref: CaSecretRef | None = Field(None, alias="caSecretRef")
    insecure_skip_tls_verify: bool = Field(False, alias="insecureSkipTLSVerify")

    @field_validator("address")
    @classmethod
    def _address(cls, value: str) -> str:
        try:
            parse_endpoint(value)
        except InvalidAddress as exc:
            raise ValueError(str(exc)) from None
        return value


class ScopeSpec(_Spec):
    type: ScopeType
    target: list[str] = Field(default_factory=list)


class ObStopRequestSpec(_Spec):
    obshell: ObshellRef
    scope: ScopeSpec
    force: bool = False
    terminate: bool = False
    force_pass_dag: list[str] = Field(default_factory=list, alias="forcePassDag")
    active_deadline_seconds: Annotated[int, Field(ge=1, le=31_536_000)] | None = Field(
        None, alias="activeDeadlineSeconds"
    )
    deadline_action: DeadlineAction = Field(DeadlineAction.REPORT, alias="deadlineAction")
    # Run the pre-check, report it, stop nothing (phase Validated or Failed).
    dry_run: bool = Field(False, alias="dryRun")
    approval: ApprovalMode = ApprovalMode.AUTOMATIC
    # After this moment the request refuses to begin (a request re-created from Git or a backup long after its
    # stop: docs/gitops.md); one already begun is followed to its end.
    not_after: AwareDatetime | None = Field(None, alias="notAfter")

    @model_validator(mode="after")
    def _rules(self) -> ObStopRequestSpec:
        # The same rules as the CRD's CEL, for API servers that did not enforce them.
        kind, targets = self.scope.type, self.scope.target
        if kind is ScopeType.GLOBAL and targets:
            raise ValueError("scope.target must be empty for a GLOBAL stop")
        if kind is not ScopeType.GLOBAL and not targets:
            raise ValueError(
                f"scope.target must name at least one {'zone' if kind is ScopeType.ZONE else 'server'}"
            )
        if len(set(targets)) != len(targets):
            raise ValueError("scope.target has duplicate entries")
        if kind is ScopeType.SERVER:
            for target in targets:
                try:
                    split_host_port(target, what=f"scope.target {target!r}")
                except InvalidAddress as exc:
                    raise ValueError(str(exc)) from None
        if kind is ScopeType.GLOBAL and not (self.force or self.terminate):
            raise ValueError("a GLOBAL stop needs force or terminate")
        if self.force and self.terminate:
            raise ValueError("force and terminate cannot both be set")
        if self.dry_run and self.approval is ApprovalMode.MANUAL:
            raise ValueError("a dryRun stops nothing, so it takes no approval: remove approval or dryRun")
        for dag_id in self.force_pass_dag:
            decode_generic_id(dag_id)
        return self

    def stop_params(self) -> StopParams:
        return StopParams(
            scope=Scope(type=self.scope.type, target=list(self.scope.target)),
            force=self.force,
            terminate=self.terminate,
            force_pass_dag=list(self.force_pass_dag),
        )

    @property
    def mode(self) -> str:
        return "force" if self.force else "terminate" if self.terminate else "immediate"


def manifest(name: str, spec: Mapping[str, Any], **metadata: Any) -> dict[str, Any]:
    """The ObStopRequest object around `spec` exactly as given; `metadata` adds fields (namespace, ...)."""
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": KIND,
        "metadata": {"name": name, **metadata},
        "spec": dict(spec),
    }


class InvalidSpec(ValueError):
    """The spec cannot be acted on; the message is written to status."""


def parse_spec(raw: object) -> ObStopRequestSpec:
    """Parse `.spec`, turning pydantic's report into one readable sentence."""
    try:
        return ObStopRequestSpec.model_validate(raw)
    except ValidationError as exc:
        problems = []
        for err in exc.errors()[:5]:
            where = ".".join(str(p) for p in err["loc"])
            text = str(err["msg"]).removeprefix("Value error, ")
            problems.append(f"spec.{where}: {text}" if where else f"spec: {text}")
        raise InvalidSpec("; ".join(problems)) from None
    except ValueError as exc:  # InvalidGenericId raised inside a validator
        raise InvalidSpec(f"spec: {exc}") from None
