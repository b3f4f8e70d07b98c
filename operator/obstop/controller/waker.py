"""Wakes requests whose next step is overdue.

Each step ends by asking Kopf to call the handler again after a delay; Kopf keeps that appointment by patching the
object. If that patch is refused (a 409 Conflict, an API server outage longer than Kopf's retries), Kopf drops
the outcome and nothing calls the handler again until the object changes. Kopf's timers would fix this but add a
finalizer (deletion would then hang while the controller is down), so instead this loop touches an annotation
of any request whose step is well past due: the touch is an ordinary change, and the handler runs again.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from typing import Any, Protocol

from obstop.controller.resource import GROUP, PLURAL, VERSION
from obstop.controller.runtime import Runtimes

log = logging.getLogger("obstop.waker")


class Touch(Protocol):
    async def __call__(self, namespace: str, name: str) -> None: ...


async def wake_overdue(runtimes: Runtimes, touch: Touch, grace: float) -> None:
    """Forever: every grace/3 seconds, touch each request more than `grace` seconds late."""
    while True:
        await asyncio.sleep(grace / 3)
        for runtime in runtimes.overdue(grace):
            runtime.expect_next_step(grace)  # one touch per grace period at most
            namespace, name = runtime.namespace, runtime.name
            try:
                await touch(namespace, name)
                log.info("[%s/%s] woke a request whose next step was overdue", namespace, name)
            except Exception as exc:  # the API server may be down: try again next round
                log.warning("[%s/%s] could not wake the request: %s", namespace, name, type(exc).__name__)


# With etcd down, kube-apiserver accepts a call and answers nothing for a minute or more: bound each of our own
# calls (Kopf bounds its own: settings.networking.request_timeout) so no worker thread waits that long.
API_TIMEOUT_SECONDS = 30.0


def annotation_toucher(api: Any, annotation: str) -> Touch:
    """A Touch that merge-patches `annotation` (kubernetes.client.CustomObjectsApi, called in a thread)."""

    async def touch(namespace: str, name: str) -> None:
        body = {"metadata": {"annotations": {annotation: datetime.now(UTC).isoformat()}}}
        await asyncio.to_thread(
            api.patch_namespaced_custom_object,
            GROUP,
            VERSION,
            namespace,
            PLURAL,
            name,
            body,
            _content_type="application/merge-patch+json",
            _request_timeout=API_TIMEOUT_SECONDS,
        )

    return touch
