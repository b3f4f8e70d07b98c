"""All Kopf registrations and settings of the controller, in one place.

Kopf watches the requests and hands each event to the followers (follow.py), which run the steps, write the
status and post the events. Kopf itself writes nothing to a request: there is no change handler, no daemon and
no finalizer (a finalizer would make deleting a request hang while the controller is down).
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Iterable, Mapping
from typing import Any

import kopf

from obstop.controller.approvals import ApprovalReader
from obstop.controller.follow import Followers, status_patcher
from obstop.controller.kubeapi import ApiError, KubeApi, login
from obstop.controller.metrics import Metrics, serve
from obstop.controller.resource import GROUP, PLURAL, VERSION
from obstop.controller.secrets import SecretReader
from obstop.controller.settings import Settings
from obstop.controller.stop import Controller

registry = kopf.OperatorRegistry()

# The id of the one event handler. Kopf logs "Handler '<id>' succeeded." at INFO after every call, i.e. for every
# watch event; the filter below demotes those lines by our own id only, not Kopf's wording around it
# (tests/operator/test_controller_logs.py pins it on a real run).
HANDLER_ID = "obstop-deliver"


class _DeliveryIsNotNews(logging.Filter):
    """Kopf's per-call line of the event handler is noise at INFO (one per watch event): log it at DEBUG."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno == logging.INFO and f"'{HANDLER_ID}'" in record.getMessage():
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
            return logging.getLogger(record.name).isEnabledFor(logging.DEBUG)
        return True


EVENT_POSTERS = 16
# Kopf pauses a replica when a live peer has a higher priority (or the same one) and resumes it when that peer is
# gone, but tells its handlers nothing: only its log says so (kopf/_core/engines/peering.py). The followers step
# on timers of their own, not on Kopf's events, so they are told from these lines
# (tests/reliability/test_replicas.py fails if Kopf's wording changes).
PEERING_LOGGER = "kopf._core.engines.peering"
_PAUSING = ("Pausing operations", "Pausing all operators")
_RESUMING = "Resuming operations"


class PeeringPause(logging.Handler):
    """Pauses and resumes the followers as Kopf's peering pauses and resumes this replica."""

    def __init__(self, followers: Followers) -> None:
        super().__init__(logging.INFO)
        self.followers = followers

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if message.startswith(_PAUSING):
            self.followers.pause()
            logging.getLogger("obstop").info("paused by peering: no request begins a step until resumed")
        elif message.startswith(_RESUMING):
            self.followers.resume()
            logging.getLogger("obstop").info("resumed by peering: the requests step again")


class NoDiffBase(kopf.DiffBaseStorage):
    """Kopf deep-copies every delivered body to tell change handlers and daemons what changed since the last
    handling (kopf/_core/reactor/processing.py `_detect_causes`). This controller has neither, only the event
    handler, so that copy and its diff were pure cost: about 3 % of the samples in a profile of the controller at
    1,000 requests (docs/benchmark.md). Nothing is built, kept or stored; a change handler added here would need Kopf's own
    storage back."""

    def build(self, *, body: kopf.Body, extra_fields: Iterable[Any] | None = None) -> kopf.BodyEssence:
        return kopf.BodyEssence()

    def fetch(self, *, body: kopf.Body) -> kopf.BodyEssence | None:
        return None

    def store(self, *, body: kopf.Body, patch: kopf.Patch, essence: kopf.BodyEssence) -> None:
        return None


def configure_kopf(kopf_settings: kopf.OperatorSettings, settings: Settings) -> None:
    prefix = settings.annotation_prefix
    # Kopf stores nothing on a request (no change handlers), but if it ever did, in our annotations and not in
    # status (the CRD's status schema is closed).
    kopf_settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=prefix)
    kopf_settings.persistence.diffbase_storage = NoDiffBase()
    kopf_settings.persistence.finalizer = f"{prefix}/finalizer"  # never added: no handler requires one
    # Events are posted explicitly (submitted, progress, succeeded, failed); log lines stay log lines.
    kopf_settings.posting.loggers = False
    kopf_settings.posting.level = logging.WARNING
    # Kopf's session to the API server has no connection limit, and each concurrent event post opens a TLS
    # connection of its own (about 0.3 MiB, kept): 1,000 requests created together held 117-283 of them. A few
    # posters in parallel keep up with thousands of events a minute and bound that memory.
    kopf_settings.posting.worker_limit = EVENT_POSTERS
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
        kopf_settings.peering.priority = settings.peering_priority or random.randint(1, 2**31 - 1)
    for name in ("kopf.objects", "kopf"):
        logging.getLogger(name).addFilter(_DeliveryIsNotNews())


@kopf.on.startup(registry=registry)
async def startup(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    ours: Settings = memo["settings"]
    configure_kopf(settings, ours)
    metrics = Metrics()
    # The startup handlers run before Kopf logs in: the controller's own client logs in on its first call,
    # with the same handler.
    api = memo["kubeapi"] = KubeApi(lambda: login(settings=settings, logger=logging.getLogger("obstop")))
    controller = Controller(ours, SecretReader(api), metrics, ApprovalReader(api))
    memo["controller"] = controller
    if ours.health_port:
        memo["health"] = await serve(metrics, ours.health_port)
    if ours.peering:
        await ensure_peering(api, ours.peering, ours.namespaces, logging.getLogger("obstop"))
    followers = memo["followers"] = Followers(
        controller,
        status_patcher(api),
        post_event,
        stall_seconds=ours.stall_seconds,
        retry_max_seconds=ours.retry_max_seconds,
        steps_in_flight=ours.steps_in_flight,
    )
    if ours.peering:
        peering_log = logging.getLogger(PEERING_LOGGER)
        if not peering_log.isEnabledFor(logging.INFO):  # OBSTOP_LOG_LEVEL=WARNING must not hide a pause
            peering_log.setLevel(logging.INFO)
        memo["peering_pause"] = PeeringPause(followers)
        peering_log.addHandler(memo["peering_pause"])


class PeeringUnavailable(kopf.PermanentError):
    """The peering object cannot be made: without it mandatory peering would wait forever while /healthz stays
    green, so the controller does not start (the pod restarts and says why)."""


async def ensure_peering(
    api: KubeApi,
    name: str,
    namespaces: tuple[str, ...],
    logger: logging.Logger,
    *,
    wait_seconds: float = 60.0,
) -> None:
    """Create the peering object(s) the replicas meet in, unless they exist: a ClusterKopfPeering in cluster-wide
    mode, a KopfPeering per watched namespace otherwise. Kopf only writes to an existing one. Done here at each
    start, not by a Helm hook: a hook re-run on every Argo CD sync re-created the object under running replicas,
    which then all acted until they met again, and a hook can run before its CRD is served."""
    body = {"apiVersion": "kopf.dev/v1", "metadata": {"name": name}}
    targets: list[tuple[str | None, str]] = (
        [(ns, "kopfpeerings") for ns in namespaces] if namespaces else [(None, "clusterkopfpeerings")]
    )
    deadline = asyncio.get_running_loop().time() + wait_seconds
    for namespace, plural in targets:
        kind = "KopfPeering" if namespace else "ClusterKopfPeering"
        while True:
            try:
                await api.create(_peering_path(namespace, plural), {**body, "kind": kind})
                logger.info(
                    "created the peering object %s %s", kind, f"{namespace}/{name}" if namespace else name
                )
            except ApiError as exc:
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


def _peering_path(namespace: str | None, plural: str) -> str:
    return (
        f"/apis/kopf.dev/v1/namespaces/{namespace}/{plural}" if namespace else f"/apis/kopf.dev/v1/{plural}"
    )


kopf.on.login(registry=registry)(login)  # kubeapi.login: the service account, else $KUBECONFIG


@kopf.on.cleanup(registry=registry)
async def cleanup(memo: kopf.Memo, **_: Any) -> None:
    controller: Controller | None = memo.get("controller")
    if memo.get("peering_pause") is not None:
        logging.getLogger(PEERING_LOGGER).removeHandler(memo["peering_pause"])
    if memo.get("followers") is not None:
        await memo["followers"].aclose()
    if controller is not None:
        await controller.aclose()
    if memo.get("kubeapi") is not None:
        await memo["kubeapi"].aclose()
    if memo.get("health") is not None:
        await memo["health"].cleanup()


@kopf.on.event(GROUP, VERSION, PLURAL, id=HANDLER_ID, registry=registry)
async def deliver(type: str | None, body: kopf.Body, memo: kopf.Memo, logger: kopf.Logger, **_: Any) -> None:
    """Every watch event of a request goes to its follower (follow.py); nothing is written here.

    Also the DELETED event: with no finalizer, Kopf runs no delete handler at all, so the raw event is the one
    signal that a request is gone. Quick, and async so that it runs in Kopf's worker of the request, in order
    (Kopf runs a sync handler in a thread).
    """
    followers: Followers | None = memo.get("followers")
    if followers is not None:
        followers.deliver(type, body, logger)


def post_event(body: Mapping[str, Any], type: str, reason: str, message: str) -> None:
    """A Kubernetes event about the request, through Kopf's poster (it runs in the follower's task, which
    inherits the poster's queue from the event handler that started it)."""
    about = body if isinstance(body, kopf.Body) else kopf.Body(dict(body))  # type: ignore[arg-type]
    kopf.event(about, type=type, reason=reason, message=fit_event_message(message))


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
