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
import time
from datetime import UTC, datetime
from typing import Any, Protocol

from obstop.controller.resource import GROUP, PLURAL, VERSION

log = logging.getLogger("obstop.waker")


class Touch(Protocol):
    async def __call__(self, namespace: str, name: str) -> None: ...


class Appointments:
    """When each live request expects its next step (monotonic seconds), as its last step decided."""

    def __init__(self) -> None:
        self._due: dict[str, tuple[str, str, float]] = {}

    def expect(self, uid: str, namespace: str, name: str, delay: float | None) -> None:
        if delay is None:
            self._due.pop(uid, None)
        else:
            self._due[uid] = (namespace, name, time.monotonic() + delay)

    def forget(self, uid: str) -> None:
        self._due.pop(uid, None)

    def overdue(self, grace: float) -> list[tuple[str, str, str]]:
        now = time.monotonic()
        return [(uid, ns, name) for uid, (ns, name, due) in self._due.items() if now > due + grace]

    def postpone(self, uid: str, seconds: float) -> None:
        entry = self._due.get(uid)
        if entry is not None:
            self._due[uid] = (entry[0], entry[1], time.monotonic() + seconds)

    def __len__(self) -> int:
        return len(self._due)


async def wake_overdue(appointments: Appointments, touch: Touch, grace: float) -> None:
    """Forever: every grace/3 seconds, touch each request more than `grace` seconds late."""
    while True:
        await asyncio.sleep(grace / 3)
        for uid, namespace, name in appointments.overdue(grace):
            appointments.postpone(uid, grace)  # one touch per grace period at most
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
