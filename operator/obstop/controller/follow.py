"""Follows each live request, in a task of its own, from Kopf's watch events to its terminal phase.

Kopf watches the requests and hands every event to `Followers.deliver` (main.py); it writes nothing itself. Each
request that has work to do gets one task that runs `Controller.step`, writes the status only when it changed,
posts the step's events, and waits for the next step (aiming its poll again if another request's DAG taught
the controller something meanwhile: pacing.py rule 5). A step that changes nothing (a poll that sees the same
stage) costs no write at all. Kopf's own scheduling (a change handler re-run through TemporaryError) cost three
writes per step (its touch, its progress annotations, the status) whether anything changed or not; its daemons
would need a finalizer, and a finalizer makes deleting a request hang while the controller is down.

Two rules keep the status the one source of truth, as it was when Kopf ran each step:
- A step acts on the status as the watch delivered it. After a write, the next step waits until the watch has
  delivered that write (or anything newer). A stop is POSTed only after the submission record came back.
- A replica that Kopf pauses (peering: another replica took over) begins no step from then on (`pause`, told by
  main.PeeringPause): it finishes at most the step in hand, as it would with Kopf's own handlers. Kopf closes its
  watches too, so a write of that step never comes back and its follower waits. If someone else wrote the status
  in between, this process forgets what it knew about its own POSTs (`may_have_landed`): it looks on the agent
  before sending anything.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import quote

from obstop.controller.decisions import Decision
from obstop.controller.kubeapi import ApiError, KubeApi
from obstop.controller.resource import GROUP, PLURAL, VERSION, Phase
from obstop.controller.status import RequestStatus, parse_time
from obstop.controller.stop import Controller, Logger, Request

# With etcd down, kube-apiserver accepts a call and answers nothing for a minute or more: bound each write so
# the step retries sooner (Kopf bounds its own calls: settings.networking.request_timeout).
API_TIMEOUT_SECONDS = 30.0
# Waiting followers are woken to aim their polls again at most this often (pacing.py rule 5): at 1,000 requests
# started together, each of the first DAGs' nodes would otherwise wake all of them, one node end at a time.
NEWS_SPACING_SECONDS = 0.5


class Gone(Exception):
    """The request no longer exists (404 on its status write)."""


class StatusWriter(Protocol):
    async def __call__(self, namespace: str, name: str, changes: Mapping[str, Any]) -> str:
        """Merge-patch these status keys (None deletes one); return the new resourceVersion. Raises Gone."""
        ...


class EventPoster(Protocol):
    def __call__(self, body: Mapping[str, Any], type: str, reason: str, message: str) -> None: ...


def status_patcher(api: KubeApi) -> StatusWriter:
    """A StatusWriter on the /status subresource: a JSON merge patch, so no resourceVersion precondition (the
    follower is the status's one writer; someone else's write is noticed on its delivery)."""

    async def write(namespace: str, name: str, changes: Mapping[str, Any]) -> str:
        path = (
            f"/apis/{GROUP}/{VERSION}/namespaces/{quote(namespace, safe='')}/{PLURAL}/{quote(name, safe='')}"
            "/status"
        )
        try:
            obj = await api.merge_patch(path, {"status": dict(changes)}, within=API_TIMEOUT_SECONDS)
        except ApiError as exc:
            if exc.status == 404:
                raise Gone(name) from None
            raise
        return str(obj["metadata"]["resourceVersion"])

    return write


def status_changes(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON merge patch (RFC 7386) that turns `old` into `new`: nested objects are patched key by key, as
    the API server merges them, with None for each key that disappeared; lists are replaced whole."""
    patch: dict[str, Any] = {}
    for key in old.keys() | new.keys():
        before, after = old.get(key), new.get(key)
        if after is None:
            if before is not None:
                patch[key] = None
        elif isinstance(after, Mapping) and isinstance(before, Mapping):
            nested = status_changes(before, after)
            if nested:
                patch[key] = nested
        elif before != after:
            patch[key] = after
    return patch


def not_older(version: str | None, than: str) -> bool:
    """Whether a delivered resourceVersion is `than` or later. kube-apiserver's are etcd revisions, integers
    that grow (the API calls them opaque: anything else counts only when equal)."""
    if version is None:
        return False
    try:
        return int(version) >= int(than)
    except ValueError:
        return version == than


def request_of(body: Mapping[str, Any]) -> Request:
    """What a step needs of a delivered body."""
    meta = body.get("metadata") or {}
    return Request(
        namespace=meta.get("namespace") or "",
        name=meta.get("name") or "",
        uid=meta.get("uid") or "",
        generation=int(meta.get("generation") or 1),
        spec=dict(body.get("spec") or {}),
        status=RequestStatus.from_wire(dict(body.get("status") or {})),
        annotations=dict(meta.get("annotations") or {}),
        created=parse_time(meta.get("creationTimestamp")),
    )


def _outside_status(body: Mapping[str, Any]) -> tuple[Any, ...]:
    """What a person may change on a request that the next step must see at once (the cancel annotation)."""
    meta = body.get("metadata") or {}
    return (meta.get("generation"), meta.get("annotations"), body.get("spec"))


_TERMINAL = frozenset(phase.value for phase in Phase if phase.terminal)


def has_work(body: Mapping[str, Any]) -> bool:
    """A request to follow: not terminal, or a generation its status does not describe yet (a reorder)."""
    status = body.get("status") or {}
    generation = (body.get("metadata") or {}).get("generation")
    if status.get("phase") not in _TERMINAL:
        return True
    return status.get("observedGeneration") not in (None, generation)


@dataclass
class Follower:
    """One request's task and what the watch last delivered of it."""

    uid: str
    body: Mapping[str, Any]
    logger: Logger
    poked: asyncio.Event = field(default_factory=asyncio.Event)  # a change besides the status arrived
    delivered: asyncio.Event = field(default_factory=asyncio.Event)  # any event arrived
    wrote: str | None = None  # resourceVersion of our last write, awaited before the next step
    written: Mapping[str, Any] | None = None  # the status as we last wrote it
    task: asyncio.Task[None] | None = None
    stepping: bool = False  # in a step or its write: let it finish on shutdown, rather than cut it
    asleep: bool = False  # waiting for its next step
    news: bool = False  # poked only because something was learned: aim its poll again, do not step yet


class Followers:
    """The followers of the requests this process sees, by uid."""

    def __init__(
        self,
        controller: Controller,
        write: StatusWriter,
        post: EventPoster,
        *,
        stall_seconds: float,
        retry_max_seconds: float = 60.0,
        steps_in_flight: int = 64,
    ) -> None:
        self.controller = controller
        self._write = write
        self._post = post
        self._stall = stall_seconds
        self._retry_max = retry_max_seconds
        # What a step holds while it waits on the agent and the API server (the parsed request, the statuses
        # before and after, the calls' buffers) is about 10 KB: a burst of 1,000 new requests stepping all at
        # once held that a thousand times (docs/benchmark.md). The API calls behind the steps are bounded anyway.
        self._step_slots = asyncio.Semaphore(steps_in_flight)
        self._by_uid: dict[str, Follower] = {}
        self._stopping = False
        self._knowledge = controller.knowledge  # as last passed on to the waiting followers
        self._not_paused = asyncio.Event()  # cleared while Kopf's peering pauses this replica
        self._not_paused.set()
        self._news_at = -NEWS_SPACING_SECONDS
        self._news_later: asyncio.TimerHandle | None = None

    def deliver(self, type: str | None, body: Mapping[str, Any], logger: Logger) -> None:
        """A watch event of a request (type None: seen by a listing)."""
        uid = (body.get("metadata") or {}).get("uid") or ""
        if type == "DELETED":
            follower = self._by_uid.pop(uid, None)
            if follower is not None and follower.task is not None:
                follower.task.cancel()
            self.controller.forget(uid)
            return
        follower = self._by_uid.get(uid)
        if follower is None:
            if not has_work(body):
                return  # finished before this process started: nothing to keep
            follower = self._by_uid[uid] = Follower(uid, kept(body), logger)
        else:
            if follower.wrote is not None and not not_older(_version(body), follower.wrote):
                return  # older than our own last write: already superseded
            if _outside_status(body) != _outside_status(follower.body):
                follower.news = False  # a person's change: step now
                follower.poked.set()
            follower.body = kept(body)
            follower.delivered.set()
        if (follower.task is None or follower.task.done()) and not self._stopping and has_work(body):
            follower.poked.clear()
            follower.task = asyncio.create_task(self._follow(follower), name=f"follow {uid}")

    def pause(self) -> None:
        """Kopf's peering paused this replica (another one with a higher priority is alive): no follower begins
        a step until `resume`; a step under way finishes. Kopf closes the watches then, so a follower would stop
        at its next write anyway, but only after one more step of its own, which could be the one that sees the
        end (tests/reliability/test_replicas.py)."""
        self._not_paused.clear()

    def resume(self) -> None:
        self._not_paused.set()

    async def aclose(self, grace: float = 5.0) -> None:
        """No new step starts; steps under way get `grace` seconds to finish, then are cancelled."""
        self._stopping = True
        if self._news_later is not None:
            self._news_later.cancel()
        live = [f for f in self._by_uid.values() if f.task is not None and not f.task.done()]
        for f in live:
            if not f.stepping and f.task is not None:
                f.task.cancel()  # only waiting: nothing is lost
        tasks = [f.task for f in live if f.task is not None]
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=grace)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)

    # ----------------------------------------------------------------------------------------------

    async def _follow(self, f: Follower) -> None:
        failures = 0
        while True:
            try:
                await self._steps(f)
                break
            except Gone:
                break
            except Exception:  # a bug: say so loudly, and try again later rather than leave the request
                failures += 1
                delay = min(self._retry_max, 2.0**failures)
                f.logger.exception("following the request failed; trying again in %.0fs", delay)
                f.stepping = False
                await asyncio.sleep(delay)
        if self._by_uid.get(f.uid) is f and not has_work(f.body):
            del self._by_uid[f.uid]  # finished: an event of it from now on is a no-op

    async def _steps(self, f: Follower) -> None:
        while not self._stopping:
            await self._until_own_write_delivered(f)
            await self._not_paused.wait()
            async with self._step_slots:
                if self._stopping:
                    return
                if not self._not_paused.is_set():
                    continue  # paused while it waited for its turn
                # Read only now: what was delivered while this step waited for its turn counts.
                delivered = dict(f.body.get("status") or {})
                if f.written is not None and status_changes(delivered, f.written):
                    self._written_by_someone_else(f)
                f.poked.clear()
                f.news = False
                req = request_of(f.body)
                f.stepping = True
                decision = await self.controller.step(req, f.logger)
                decided, known = asyncio.get_running_loop().time(), self.controller.knowledge
                self._news()
                # The write holds the turn: while the API server cannot take it, no step could be persisted.
                wrote = await self._write_changes(f, req, delivered, decision)
                for event in decision.events:
                    self._post(f.body, event.type, event.reason, event.message)
                f.stepping = False
                next_in = decision.next_step_in
                del req, delivered, decision  # a waiting request keeps only its body (and its runtime)
            if next_in is None:
                if wrote:
                    # Ends with the delivery of the write, unless that brings work (a reorder to acknowledge).
                    await self._until_own_write_delivered(f)
                    if has_work(f.body):
                        continue
                return
            # The delay counts from the step's answer, not from after the write: a poll aimed at a DAG's end
            # is not late by the write's round trip.
            await self._sleep(f, decided, next_in, known)

    async def _write_changes(
        self, f: Follower, req: Request, delivered: Mapping[str, Any], decision: Decision
    ) -> bool:
        new = decision.status.to_wire()
        changes = status_changes(delivered, new)
        if not changes:
            return False
        delay = 1.0
        while True:
            try:
                f.wrote = await self._write(req.namespace, req.name, changes)
                f.written = new
                f.delivered.clear()
                return True
            except Gone:
                raise
            except Exception as exc:  # API server down, 5xx, 409, a timeout: the step's outcome is kept
                f.logger.warning(
                    "could not write the status (%s); trying again in %.0fs", _describe(exc), delay
                )
            await asyncio.sleep(delay)
            delay = min(delay * 2, self._retry_max)

    async def _until_own_write_delivered(self, f: Follower) -> None:
        warned = False
        while f.wrote is not None and not not_older(_version(f.body), f.wrote):
            try:
                await asyncio.wait_for(f.delivered.wait(), timeout=self._stall)
            except TimeoutError:
                if not warned:
                    # Usual causes: peering paused this replica (its watch is closed), or the watch is
                    # reconnecting. Nothing is lost: the next delivery lets the step go on.
                    f.logger.warning(
                        "the status written %.0fs ago has not come back through the watch yet; the next step "
                        "waits for it",
                        self._stall,
                    )
                    warned = True
            f.delivered.clear()

    async def _sleep(self, f: Follower, answered: float, seconds: float, known: int) -> None:
        """Until the next step is due, `seconds` after the step's answer, or a person changed the request (a
        cancel annotation). Woken by news, a poll aims again from the same answer (pacing.py rule 5), as does one
        decided on `known` when more is known now (news that came during its write)."""
        loop = asyncio.get_running_loop()
        stale = self.controller.knowledge != known
        f.asleep = True
        try:
            while True:
                if stale:
                    replanned = self.controller.replan(f.uid)
                    seconds = seconds if replanned is None else replanned
                left = answered + seconds - loop.time()
                if left <= 0:
                    return
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(f.poked.wait(), timeout=left)
                if not f.poked.is_set() or not f.news:
                    return  # due, or a person's change
                f.news = False
                f.poked.clear()
                stale = True
        finally:
            f.asleep = False

    def _news(self) -> None:
        """After a step: if it taught the controller something that may move the aim of polls already planned,
        pass it on to the waiting followers, at most every NEWS_SPACING_SECONDS."""
        if self.controller.knowledge == self._knowledge or self._news_later is not None:
            return
        loop = asyncio.get_running_loop()
        wait = self._news_at + NEWS_SPACING_SECONDS - loop.time()
        if wait > 0:
            self._news_later = loop.call_later(wait, self._pass_news_on)
        else:
            self._pass_news_on()

    def _pass_news_on(self) -> None:
        self._news_later = None
        self._news_at = asyncio.get_running_loop().time()
        self._knowledge = self.controller.knowledge
        for f in self._by_uid.values():
            if f.asleep and not f.poked.is_set():
                f.news = True
                f.poked.set()

    def _written_by_someone_else(self, f: Follower) -> None:
        runtime = self.controller.runtimes.find(f.uid)
        if runtime is not None and not runtime.may_have_landed:
            f.logger.info("the status was changed by another writer: looking on the agent before any POST")
            runtime.may_have_landed = True


def kept(body: Mapping[str, Any]) -> dict[str, Any]:
    """What a follower keeps of a delivered body: all of it but metadata.managedFields (the API server's record
    of field ownership, kilobytes per object that nothing here reads), in a dict of its own, so that Kopf's copy
    of the event can go."""
    metadata = {k: v for k, v in (body.get("metadata") or {}).items() if k != "managedFields"}
    return {**{k: v for k, v in body.items() if k != "metadata"}, "metadata": metadata}


def _version(body: Mapping[str, Any]) -> str | None:
    version = (body.get("metadata") or {}).get("resourceVersion")
    return str(version) if version is not None else None


def _describe(exc: BaseException) -> str:
    """The error's kind, never its text (an API answer may quote the request): `ApiError HTTP 409 Conflict`,
    `ConnectError`, `ReadTimeout`."""
    return f"ApiError {exc}" if isinstance(exc, ApiError) else type(exc).__name__
