"""All Kopf registrations and settings of the controller, in one place.

One change handler drives a request from creation to a terminal phase. It asks Kopf to call it again after
each step (a TemporaryError with a delay) instead of using a daemon: daemons need a finalizer, and a
finalizer would make deleting a request hang while the controller is down.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Mapping
from typing import Any

import kopf
from kubernetes.client import CustomObjectsApi

from obstop.controller import decisions
from obstop.controller.approvals import ApprovalReader
from obstop.controller.decisions import Decision
from obstop.controller.metrics import Metrics, serve
from obstop.controller.resource import GROUP, PLURAL, VERSION
from obstop.controller.secrets import SecretReader, kubernetes_client
from obstop.controller.settings import Settings
from obstop.controller.status import RequestStatus, parse_time
from obstop.controller.stop import Controller, Request
from obstop.controller.waker import annotation_toucher, wake_overdue

registry = kopf.OperatorRegistry()

HANDLER_ID = "stop"
# Marks the TemporaryError used to schedule the next step, so its log line is not reported as an error. Only
# our own text is matched (Kopf puts the exception's text in its line), not Kopf's wording around it: a Kopf
# upgrade that rewords its line keeps working (tests/operator/test_controller_logs.py pins it on a real run).
NEXT_STEP = "obstop: next step in"


class _NextStepIsNotAnError(logging.Filter):
    """Kopf logs every TemporaryError at ERROR level; ours is the normal way of waiting, so log it at DEBUG."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.WARNING and NEXT_STEP in record.getMessage():
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
            return logging.getLogger(record.name).isEnabledFor(logging.DEBUG)
        return True


def configure_kopf(kopf_settings: kopf.OperatorSettings, settings: Settings) -> None:
    prefix = settings.annotation_prefix
    # Keep Kopf's bookkeeping in our own annotations, not in status (the CRD's status schema is closed).
    kopf_settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=prefix)
    kopf_settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix=prefix)
    kopf_settings.persistence.finalizer = f"{prefix}/finalizer"  # never added: no handler requires one
    # Events are posted explicitly (submitted, progress, succeeded, failed); log lines stay log lines.
    kopf_settings.posting.loggers = False
    kopf_settings.posting.level = logging.WARNING
    kopf_settings.watching.server_timeout = 300
    kopf_settings.watching.client_timeout = 330
    kopf_settings.networking.request_timeout = 30
    kopf_settings.execution.max_workers = 64
    kopf_settings.peering.standalone = not settings.peering
    if settings.peering:
        kopf_settings.peering.name = settings.peering
        kopf_settings.peering.mandatory = True
        # Kopf pauses *every* operator when peers share the highest priority, so replicas that all kept the
        # default would all wait forever. A random priority per process makes exactly one of them the leader.
        kopf_settings.peering.priority = random.randint(1, 2**31 - 1)
    for name in ("kopf.objects", "kopf"):
        logging.getLogger(name).addFilter(_NextStepIsNotAnError())


@kopf.on.startup(registry=registry)
async def startup(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    ours: Settings = memo["settings"]
    configure_kopf(settings, ours)
    metrics = Metrics()
    api_client = kubernetes_client()
    controller = Controller(
        ours, SecretReader.from_client(api_client), metrics, ApprovalReader.from_client(api_client)
    )
    memo["controller"] = controller
    if ours.health_port:
        memo["health"] = await serve(metrics, ours.health_port)
    if ours.peering:
        await ensure_peering(
            CustomObjectsApi(api_client), ours.peering, ours.namespaces, logging.getLogger("obstop")
        )
    touch = annotation_toucher(CustomObjectsApi(api_client), f"{ours.annotation_prefix}/wake")
    memo["waker"] = asyncio.create_task(wake_overdue(controller.runtimes, touch, ours.stall_seconds))


class PeeringUnavailable(kopf.PermanentError):
    """The peering object cannot be made: without it mandatory peering would wait forever while /healthz stays
    green, so the controller does not start (the pod restarts and says why)."""


async def ensure_peering(
    api: Any, name: str, namespaces: tuple[str, ...], logger: logging.Logger, *, wait_seconds: float = 60.0
) -> None:
    """Create the peering object(s) the replicas meet in, unless they exist: a ClusterKopfPeering in cluster-wide
    mode, a KopfPeering per watched namespace otherwise. Kopf only writes to an existing one. Done here at each
    start, not by a Helm hook: a hook re-run on every Argo CD sync re-created the object under running replicas,
    which then all acted until they met again, and a hook can run before its CRD is served."""
    from kubernetes.client.exceptions import ApiException

    body = {"apiVersion": "kopf.dev/v1", "metadata": {"name": name}}
    targets: list[tuple[str | None, str]] = (
        [(ns, "kopfpeerings") for ns in namespaces] if namespaces else [(None, "clusterkopfpeerings")]
    )
    deadline = asyncio.get_running_loop().time() + wait_seconds
    for namespace, plural in targets:
        kind = "KopfPeering" if namespace else "ClusterKopfPeering"
        while True:
            try:
                await _create_peering(api, namespace, plural, {**body, "kind": kind})
                logger.info(
                    "created the peering object %s %s", kind, f"{namespace}/{name}" if namespace else name
                )
            except ApiException as exc:
                if exc.status == 409:  # it exists: the usual case, never replaced
                    break
                if exc.status == 404 and asyncio.get_running_loop().time() < deadline:
                    # Its CRD may be installed along with this controller, and not served yet.
                    await asyncio.sleep(2)
                    continue
                where = f" in namespace {namespace}" if namespace else ""
                raise PeeringUnavailable(
                    f"cannot create {kind} {name}{where} (HTTP {exc.status}): install Kopf's peering CRDs "
                    "(chart value peering.installCRDs) and grant create on them, or run without peering"
                ) from None
            break


async def _create_peering(api: Any, namespace: str | None, plural: str, body: dict[str, Any]) -> None:
    if namespace is None:
        await asyncio.to_thread(api.create_cluster_custom_object, "kopf.dev", "v1", plural, body)
    else:
        await asyncio.to_thread(
            api.create_namespaced_custom_object, "kopf.dev", "v1", namespace, plural, body
        )


@kopf.on.login(registry=registry)
def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
    """Credentials as the kubernetes client finds them: in-cluster service account, else $KUBECONFIG."""
    return kopf.login_via_client(**kwargs)


@kopf.on.cleanup(registry=registry)
async def cleanup(memo: kopf.Memo, **_: Any) -> None:
    controller: Controller | None = memo.get("controller")
    if memo.get("waker") is not None:
        memo["waker"].cancel()
    if controller is not None:
        await controller.aclose()
    if memo.get("health") is not None:
        await memo["health"].cleanup()


def _deleted(type: str, **_: Any) -> bool:
    return type == "DELETED"


# Filtered by `when`: Kopf logs every handler call at INFO, and this one would otherwise run on every event.
@kopf.on.event(GROUP, VERSION, PLURAL, registry=registry, when=_deleted)
async def forget_deleted(type: str, meta: kopf.Meta, memo: kopf.Memo, **_: Any) -> None:
    """Tidies the controller's memory of a deleted request (its appointment with the waker, its metrics).

    Not a delete handler: with no finalizer, Kopf sees a deleted request only as a DELETED watch event and runs
    no delete handler at all (not even an optional one), so the raw event is the one signal there is.
    """
    controller: Controller | None = memo.get("controller")
    if controller is not None:
        controller.forget(meta.uid or "")


@kopf.on.create(GROUP, VERSION, PLURAL, id=HANDLER_ID, registry=registry, retries=None)
async def follow_request(
    body: kopf.Body,
    meta: kopf.Meta,
    spec: kopf.Spec,
    status: kopf.Status,
    patch: kopf.Patch,
    memo: kopf.Memo,
    logger: kopf.Logger,
    **_: Any,
) -> None:
    controller: Controller = memo["controller"]
    request = Request(
        namespace=meta.namespace or "",
        name=meta.name or "",
        uid=meta.uid or "",
        generation=int(meta.get("generation") or 1),
        spec=dict(spec),
        status=RequestStatus.from_wire(_plain(status)),
        annotations=dict(meta.annotations or {}),
        created=parse_time(meta.get("creationTimestamp")),
    )
    decision = await controller.step(request, logger)
    _write_status(patch, _plain(status), decision)
    for event in decision.events:
        kopf.event(body, type=event.type, reason=event.reason, message=fit_event_message(event.message))
    if decision.next_step_in is not None:
        delay = decision.next_step_in
        raise kopf.TemporaryError(f"{NEXT_STEP} {delay:.2f}s", delay=delay)


EVENT_MESSAGE_BYTES = (
    1024  # kube-apiserver refuses a longer core/v1 Event message (Kopf cuts at 1,024 characters)
)


def fit_event_message(message: str) -> str:
    """The message, cut to what the API server accepts, at a character boundary; the status keeps it whole."""
    encoded = message.encode()
    if len(encoded) <= EVENT_MESSAGE_BYTES:
        return message
    ellipsis = "…"
    room = EVENT_MESSAGE_BYTES - len(ellipsis.encode())
    return encoded[:room].decode("utf-8", "ignore") + ellipsis


@kopf.on.update(GROUP, VERSION, PLURAL, field="spec", registry=registry)
async def spec_reordered(meta: kopf.Meta, status: kopf.Status, patch: kopf.Patch, **_: Any) -> None:
    """The only spec change the CRD admits is a reorder of a set list: acknowledge the generation, act on nothing.
    (While the stop runs, the next step picks the generation up itself: Kopf runs update handlers only once
    the creation is handled.)"""
    old = _plain(status)
    generation = int(meta.get("generation") or 1)
    _write_status(patch, old, decisions.acknowledged(RequestStatus.from_wire(old), generation))


def _plain(value: Any) -> Any:
    """Deep copy of a Kopf body view into plain dicts and lists."""
    if isinstance(value, dict) or hasattr(value, "items"):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _write_status(patch: kopf.Patch, old: Mapping[str, Any], decision: Decision) -> None:
    """Merge-patch only what changed; a key that disappeared is deleted with null."""
    new = decision.status.to_wire()
    for key in set(old) | set(new):
        if old.get(key) != new.get(key):
            patch.status[key] = new.get(key)
