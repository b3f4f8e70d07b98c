"""The emulated API server's state and its rules: metadata, optimistic concurrency, the status subresource,
finalizers, namespaces, CRDs, and the event history that watches resume from.

Synchronous on purpose: every operation runs to completion between two awaits of the event loop, so no lock
is needed and each change is atomic with respect to watches (as one etcd revision is).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import collections
import copy
import dataclasses
import datetime
import json
import re
import secrets
import uuid
from collections.abc import Callable, Iterator
from typing import Any, Protocol

from obstop.testing.kube import errors, patching, selectors
from obstop.testing.kube.errors import ApiError
from obstop.testing.kube.resources import BUILTIN_RESOURCES, ResourceInfo, crd_status, resources_of_crd

CRD_KEY = ("apiextensions.k8s.io", "customresourcedefinitions")
NAMESPACES_KEY = ("", "namespaces")
INITIAL_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")
INITIAL_EVENTS_END = "k8s.io/initial-events-end"

# Fields that only the server sets: never taken from a client's body.
_SERVER_OWNED_METADATA = (
    "uid",
    "resourceVersion",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "generation",
    "selfLink",
)
_NAME_RE = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
_GENERATE_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"  # as the apiserver's name generator: no vowels


class Admitter(Protocol):
    """What validates custom resources: `obstop.testing.admission.CrdValidator` or a test's stand-in."""

    def admit(
        self, obj: dict[str, Any], old: dict[str, Any] | None = None, subresource: str | None = None
    ) -> dict[str, Any]: ...


AdmissionFactory = Callable[[dict[str, Any]], Admitter | None]


class _CrdAdmission:
    """Adapts `obstop.testing.admission` to this server: its refusals become 422 Status errors."""

    def __init__(self, crd: dict[str, Any]) -> None:
        from obstop.testing import admission  # lazily: written in parallel, optional at import time

        self._module = admission
        self._validator = admission.CrdValidator(crd)
        self._kind = crd.get("spec", {}).get("names", {}).get("kind", "")

    def admit(
        self, obj: dict[str, Any], old: dict[str, Any] | None = None, subresource: str | None = None
    ) -> dict[str, Any]:
        try:
            admitted: dict[str, Any] = self._validator.admit(obj, old=old, subresource=subresource)
        except self._module.AdmissionError as err:
            name = obj.get("metadata", {}).get("name", "")
            status = self._module.to_status_body(err, self._kind, name)
            raise ApiError.from_status(status) from None
        return admitted


def default_admission(crd: dict[str, Any]) -> Admitter | None:
    """The project's CRD validator when it is importable; no validation otherwise (as kmock)."""
    try:
        return _CrdAdmission(crd)
    except ImportError:
        return None


def now_rfc3339() -> str:
    return datetime.datetime.now(tz=datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclasses.dataclass(frozen=True)
class WatchEvent:
    resource_version: int
    type: str  # ADDED, MODIFIED, DELETED
    storage_key: tuple[str, str]
    object: dict[str, Any]  # never mutated after the event is made
    previous: dict[str, Any] | None = None


class Watcher:
    """One open watch: a queue of the events that match its namespace and selectors."""

    def __init__(
        self,
        res: ResourceInfo,
        namespace: str | None,
        labels: tuple[selectors.Requirement, ...],
        fields: tuple[selectors.Requirement, ...],
    ) -> None:
        self.resource = res
        self.namespace = namespace
        self.labels = labels
        self.fields = fields
        self.queue: asyncio.Queue[tuple[str, dict[str, Any]] | None] = asyncio.Queue()
        self.closed = False

    def matches(self, obj: dict[str, Any]) -> bool:
        if self.namespace is not None and obj.get("metadata", {}).get("namespace") != self.namespace:
            return False
        return selectors.matches(obj, self.labels, self.fields)

    def offer(self, event: WatchEvent) -> None:
        """Queue the event as this watch sees it: leaving the selection is DELETED, entering it ADDED."""
        if self.closed or event.storage_key != self.resource.storage_key:
            return
        now_in = self.matches(event.object)
        was_in = event.previous is not None and self.matches(event.previous)
        if event.type == "MODIFIED":
            event_type = (
                "MODIFIED" if now_in and was_in else "ADDED" if now_in else "DELETED" if was_in else ""
            )
        else:
            event_type = event.type if now_in else ""
        if event_type:
            self.queue.put_nowait((event_type, event.object))

    def cut(self) -> None:
        self.closed = True
        self.queue.put_nowait(None)


@dataclasses.dataclass
class _Continue:
    namespace: str
    name: str

    def encode(self) -> str:
        return base64.urlsafe_b64encode(json.dumps([self.namespace, self.name]).encode()).decode()

    @classmethod
    def decode(cls, token: str) -> _Continue:
        try:
            namespace, name = json.loads(base64.urlsafe_b64decode(token.encode()))
        except (ValueError, binascii.Error, TypeError) as exc:
            raise errors.bad_request("invalid continue token") from exc
        return cls(str(namespace), str(name))


def _spec_part(res: ResourceInfo, obj: dict[str, Any]) -> dict[str, Any]:
    """What `generation` tracks: everything but metadata (and status, when it is a subresource)."""
    ignored = {"metadata", "apiVersion", "kind"} | ({"status"} if res.has_status else set())
    return {key: value for key, value in obj.items() if key not in ignored}


class Store:
    def __init__(
        self, *, history_limit: int = 10_000, admission: AdmissionFactory = default_admission
    ) -> None:
        self._resources: dict[tuple[str, str, str], ResourceInfo] = {}
        self._objects: dict[tuple[str, str], dict[tuple[str, str], dict[str, Any]]] = collections.defaultdict(
            dict
        )
        self._revision = 0
        self._history: collections.deque[WatchEvent] = collections.deque()
        self._history_limit = history_limit
        self._compacted = 0  # events at or below this revision are forgotten
        self._watchers: set[Watcher] = set()
        self._admission_factory = admission
        self._admitters: dict[str, tuple[str, Admitter | None]] = {}
        for res in BUILTIN_RESOURCES:
            self._resources[(res.group, res.version, res.plural)] = res
        namespaces = self.resource("", "v1", "namespaces")
        assert namespaces is not None
        for name in INITIAL_NAMESPACES:
            self.create(namespaces, None, {"metadata": {"name": name}})

    # Resources.

    @property
    def revision(self) -> int:
        return self._revision

    def resource(self, group: str, version: str, plural: str) -> ResourceInfo | None:
        return self._resources.get((group, version, plural))

    def resource_for(self, api_version: str, kind: str) -> ResourceInfo:
        """The served resource of a manifest's apiVersion and kind (404 when nothing serves it)."""
        group, _, version = api_version.rpartition("/")
        for res in self._resources.values():
            if (res.group, res.version, res.kind) == (group, version, kind):
                return res
        raise errors.endpoint_not_found(f"no resource serves {api_version} {kind}")

    def served(self) -> list[ResourceInfo]:
        return list(self._resources.values())

    def _register_crd(self, crd: dict[str, Any]) -> None:
        self._unregister_crd(crd["metadata"]["name"])
        for res in resources_of_crd(crd):
            self._resources[(res.group, res.version, res.plural)] = res

    def _unregister_crd(self, crd_name: str) -> None:
        for key, res in list(self._resources.items()):
            if res.crd_name == crd_name:
                del self._resources[key]
        self._admitters.pop(crd_name, None)

    def _admitter(self, res: ResourceInfo) -> Admitter | None:
        if res.crd_name is None:
            return None
        crd = self._objects[CRD_KEY].get(("", res.crd_name))
        if crd is None:
            return None
        revision = crd["metadata"]["resourceVersion"]
        cached = self._admitters.get(res.crd_name)
        if cached is None or cached[0] != revision:
            cached = (revision, self._admission_factory(copy.deepcopy(crd)))
            self._admitters[res.crd_name] = cached
        return cached[1]

    def _admit(
        self, res: ResourceInfo, obj: dict[str, Any], old: dict[str, Any] | None, subresource: str | None
    ) -> dict[str, Any]:
        admitter = self._admitter(res)
        if admitter is None:
            return obj
        return copy.deepcopy(
            admitter.admit(copy.deepcopy(obj), old=copy.deepcopy(old), subresource=subresource)
        )

    # Reading.

    def present(self, res: ResourceInfo, obj: dict[str, Any]) -> dict[str, Any]:
        """A copy for the client, in the requested version (no conversion: only apiVersion differs)."""
        result = copy.deepcopy(obj)
        result["apiVersion"] = res.api_version
        result.setdefault("kind", res.kind)
        return result

    def _key(self, res: ResourceInfo, namespace: str | None, name: str) -> tuple[str, str]:
        return (namespace or "") if res.namespaced else "", name

    def peek(self, res: ResourceInfo, namespace: str | None, name: str) -> dict[str, Any] | None:
        return self._objects[res.storage_key].get(self._key(res, namespace, name))

    def get(self, res: ResourceInfo, namespace: str | None, name: str) -> dict[str, Any]:
        obj = self.peek(res, namespace, name)
        if obj is None:
            raise errors.not_found(res, name)
        return self.present(res, obj)

    def _select(
        self,
        res: ResourceInfo,
        namespace: str | None,
        labels: tuple[selectors.Requirement, ...] = (),
        fields: tuple[selectors.Requirement, ...] = (),
    ) -> Iterator[tuple[tuple[str, str], dict[str, Any]]]:
        for key in sorted(self._objects[res.storage_key]):
            obj = self._objects[res.storage_key][key]
            if res.namespaced and namespace is not None and key[0] != namespace:
                continue
            if selectors.matches(obj, labels, fields):
                yield key, obj

    def list(
        self,
        res: ResourceInfo,
        namespace: str | None,
        *,
        label_selector: str | None = None,
        field_selector: str | None = None,
        limit: int | None = None,
        continue_token: str | None = None,
    ) -> dict[str, Any]:
        labels, fields = _parse_selectors(label_selector, field_selector)
        after = _Continue.decode(continue_token) if continue_token else None
        items: list[dict[str, Any]] = []
        next_token = ""
        for key, obj in self._select(res, namespace, labels, fields):
            if after is not None and key <= (after.namespace, after.name):
                continue
            if limit and len(items) >= limit:
                last = items[-1]["metadata"]
                next_token = _Continue(last.get("namespace", ""), last["name"]).encode()
                break
            items.append(self.present(res, obj))
        metadata: dict[str, Any] = {"resourceVersion": str(self._revision)}
        if next_token:
            metadata["continue"] = next_token
        return {
            "apiVersion": res.api_version,
            "kind": f"{res.kind}List",
            "metadata": metadata,
            "items": items,
        }

    # Watching.

    def watch(
        self,
        res: ResourceInfo,
        namespace: str | None,
        *,
        label_selector: str | None = None,
        field_selector: str | None = None,
        since: str | None = None,
        send_initial_events: bool = False,
    ) -> Watcher:
        """Open a watch; its queue starts with what the client must see before live events."""
        labels, fields = _parse_selectors(label_selector, field_selector)
        watcher = Watcher(res, namespace, labels, fields)
        if send_initial_events or since in (None, "", "0"):
            for _, obj in self._select(res, namespace, labels, fields):
                watcher.queue.put_nowait(("ADDED", obj))
        else:
            try:
                revision = int(str(since))
            except ValueError:
                raise errors.bad_request(f"invalid resource version: {since!r}") from None
            if revision < self._compacted:
                raise errors.gone(f"too old resource version: {revision} ({self._compacted + 1})")
            for event in self._history:
                if event.resource_version > revision:
                    watcher.offer(event)
        self._watchers.add(watcher)
        return watcher

    def close_watch(self, watcher: Watcher) -> None:
        watcher.closed = True
        self._watchers.discard(watcher)

    def cut_watches(self) -> int:
        """End every open watch stream (as an apiserver restart or a load balancer would)."""
        watchers = list(self._watchers)
        for watcher in watchers:
            watcher.cut()
        self._watchers.clear()
        return len(watchers)

    def compact(self) -> None:
        """Forget the event history: watches resuming from any earlier resourceVersion get 410 Gone."""
        self._history.clear()
        self._compacted = self._revision

    def _emit(
        self, event_type: str, res: ResourceInfo, obj: dict[str, Any], previous: dict[str, Any] | None
    ) -> None:
        event = WatchEvent(self._revision, event_type, res.storage_key, obj, previous)
        self._history.append(event)
        while len(self._history) > self._history_limit:
            self._compacted = self._history.popleft().resource_version
        for watcher in list(self._watchers):
            watcher.offer(event)

    def _next_revision(self) -> str:
        self._revision += 1
        return str(self._revision)

    # Writing.

    def create(
        self, res: ResourceInfo, namespace: str | None, body: Any, *, dry_run: bool = False
    ) -> dict[str, Any]:
        if not isinstance(body, dict) or not isinstance(body.get("metadata", {}), dict):
            raise errors.bad_request("the body of the request must be an object with object metadata")
        obj = copy.deepcopy(body)
        meta = obj.setdefault("metadata", {})
        self._check_kind(res, obj)
        if res.namespaced:
            if namespace is None:
                raise ApiError(
                    405, "MethodNotAllowed", "the server does not allow this method on the requested resource"
                )
            if meta.get("namespace") not in (None, "", namespace):
                raise errors.bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request"
                )
            self._check_namespace_open(namespace)
            meta["namespace"] = namespace
        else:
            meta.pop("namespace", None)
        name = meta.get("name") or self._generate_name(res, namespace, meta.get("generateName"))
        if not _NAME_RE.match(name) or len(name) > 253:
            raise errors.invalid(
                res, name, "metadata.name", f'Invalid value: "{name}": must be a lowercase RFC 1123 subdomain'
            )
        if self.peek(res, namespace, name) is not None:
            raise errors.already_exists(res, name)
        for field in _SERVER_OWNED_METADATA:
            meta.pop(field, None)
        meta["name"] = name
        meta["uid"] = str(uuid.uuid4())
        meta["creationTimestamp"] = now_rfc3339()
        meta["generation"] = 1
        obj["apiVersion"] = res.api_version
        obj["kind"] = res.kind
        if res.crd_name is not None and res.has_status:
            obj.pop("status", None)  # as the custom resource strategy: status is set through /status only
        if res.storage_key == NAMESPACES_KEY:
            obj["status"] = {"phase": "Active"}
        if res.storage_key == CRD_KEY:
            obj["status"] = crd_status(obj)
        obj = self._admit(res, obj, None, None)
        if dry_run:
            return self.present(res, obj)
        obj["metadata"]["resourceVersion"] = self._next_revision()
        self._objects[res.storage_key][self._key(res, namespace, name)] = obj
        self._emit("ADDED", res, obj, None)
        if res.storage_key == CRD_KEY:
            self._register_crd(obj)
        return self.present(res, obj)

    def replace(
        self,
        res: ResourceInfo,
        namespace: str | None,
        name: str,
        body: Any,
        *,
        subresource: str | None = None,
        dry_run: bool = False,
    ) -> dict[str, Any]:
        old = self._existing(res, namespace, name, subresource)
        if not isinstance(body, dict) or not isinstance(body.get("metadata", {}), dict):
            raise errors.bad_request("the body of the request must be an object with object metadata")
        if res.crd_name is not None and not body.get("metadata", {}).get("resourceVersion"):
            raise errors.invalid(
                res, name, "metadata.resourceVersion", "Invalid value: 0x0: must be specified for an update"
            )
        return self._update(
            res, namespace, name, old, copy.deepcopy(body), subresource=subresource, dry_run=dry_run
        )

    def patch(
        self,
        res: ResourceInfo,
        namespace: str | None,
        name: str,
        patch_type: str,
        patch: Any,
        *,
        subresource: str | None = None,
        dry_run: bool = False,
    ) -> dict[str, Any]:
        old = self._existing(res, namespace, name, subresource)
        current = self.present(res, old)
        try:
            if patch_type == "json":
                patched = patching.json_patch(current, patch)
            elif patch_type == "merge" or (patch_type == "strategic" and res.crd_name is None):
                # Strategic merge patch for built-ins: approximated as a merge patch (lists are replaced).
                if not isinstance(patch, dict):
                    raise patching.PatchError("a merge patch must be a JSON object")
                patched = patching.merge_patch(current, patch)
            else:
                raise ApiError(
                    415,
                    "UnsupportedMediaType",
                    "the body of the request was in an unknown format - accepted media types include: "
                    "application/json-patch+json, application/merge-patch+json",
                )
        except patching.PatchError as exc:
            raise ApiError(
                422, "Invalid", f"the server rejected our request due to an error in our request: {exc}"
            ) from None
        if not isinstance(patched, dict):
            raise errors.bad_request("the patched object is not an object")
        return self._update(res, namespace, name, old, patched, subresource=subresource, dry_run=dry_run)

    def delete(
        self,
        res: ResourceInfo,
        namespace: str | None,
        name: str,
        *,
        preconditions: dict[str, Any] | None = None,
        dry_run: bool = False,
    ) -> dict[str, Any]:
        old = self._existing(res, namespace, name, None)
        meta = old["metadata"]
        for field, actual in (("uid", meta.get("uid")), ("resourceVersion", meta.get("resourceVersion"))):
            wanted = (preconditions or {}).get(field)
            if wanted is not None and wanted != actual:
                why = f"Precondition failed: {field} in precondition: {wanted}, {field} in object meta: {actual}"
                raise errors.conflict(res, name, why)
        if dry_run:
            return self.present(res, old)
        if meta.get("deletionTimestamp"):
            return self.present(res, old)  # already being deleted: waits for its finalizers
        if meta.get("finalizers") or res.storage_key == NAMESPACES_KEY:
            obj = copy.deepcopy(old)
            obj["metadata"]["deletionTimestamp"] = now_rfc3339()
            obj["metadata"]["deletionGracePeriodSeconds"] = 0
            if res.storage_key == NAMESPACES_KEY:
                obj["status"] = {"phase": "Terminating"}
            obj["metadata"]["resourceVersion"] = self._next_revision()
            self._objects[res.storage_key][self._key(res, namespace, name)] = obj
            self._emit("MODIFIED", res, obj, old)
            if res.storage_key == NAMESPACES_KEY:
                self._empty_namespace(name)
                return self.present(res, self.peek(res, None, name) or obj)
            return self.present(res, obj)
        return self.present(res, self._remove(res, namespace, name))

    def delete_collection(
        self,
        res: ResourceInfo,
        namespace: str | None,
        *,
        label_selector: str | None = None,
        field_selector: str | None = None,
        dry_run: bool = False,
    ) -> dict[str, Any]:
        listed = self.list(res, namespace, label_selector=label_selector, field_selector=field_selector)
        for item in listed["items"]:
            meta = item["metadata"]
            if self.peek(res, meta.get("namespace"), meta["name"]) is not None:
                self.delete(res, meta.get("namespace"), meta["name"], dry_run=dry_run)
        return listed

    # Internals of writing.

    def _existing(
        self, res: ResourceInfo, namespace: str | None, name: str, subresource: str | None
    ) -> dict[str, Any]:
        if subresource is not None and subresource not in res.subresources:
            raise errors.endpoint_not_found(f"{res.qualified_name} {name}/{subresource}")
        old = self.peek(res, namespace, name)
        if old is None:
            raise errors.not_found(res, name)
        return old

    def _check_kind(self, res: ResourceInfo, obj: dict[str, Any]) -> None:
        kind = obj.get("kind")
        if kind and kind != res.kind:
            raise errors.bad_request(
                f"the kind of the object ({kind}) does not match the resource ({res.kind})"
            )

    def _check_namespace_open(self, namespace: str) -> None:
        ns = self._objects[NAMESPACES_KEY].get(("", namespace))
        namespaces = self.resource("", "v1", "namespaces")
        assert namespaces is not None
        if ns is None:
            raise errors.not_found(namespaces, namespace)
        if ns["metadata"].get("deletionTimestamp"):
            raise ApiError(
                403,
                "Forbidden",
                f"unable to create new content in namespace {namespace} because it is being terminated",
                {"name": namespace, "kind": "namespaces"},
            )

    def _generate_name(self, res: ResourceInfo, namespace: str | None, prefix: Any) -> str:
        if not prefix:
            raise errors.invalid(res, "", "metadata.name", "Required value: name or generateName is required")
        for _ in range(100):
            name = f"{str(prefix)[:58]}{''.join(secrets.choice(_GENERATE_ALPHABET) for _ in range(5))}"
            if self.peek(res, namespace, name) is None:
                return name
        raise ApiError(500, "InternalError", "could not generate a unique name")  # pragma: no cover

    def _update(
        self,
        res: ResourceInfo,
        namespace: str | None,
        name: str,
        old: dict[str, Any],
        new: dict[str, Any],
        *,
        subresource: str | None,
        dry_run: bool,
    ) -> dict[str, Any]:
        meta = new.get("metadata")
        if not isinstance(meta, dict):
            raise errors.bad_request("the object has no metadata")
        old_meta = old["metadata"]
        if meta.get("resourceVersion") and meta["resourceVersion"] != old_meta["resourceVersion"]:
            raise errors.conflict(res, name)
        if meta.get("name") not in (None, name):
            raise errors.bad_request(
                f"the name of the object ({meta['name']}) does not match the name on the URL ({name})"
            )
        if res.namespaced and meta.get("namespace") not in (None, "", namespace):
            raise errors.bad_request(
                "the namespace of the provided object does not match the namespace sent on the request"
            )
        self._check_kind(res, new)

        if subresource == "status":
            result = copy.deepcopy(old)
            if "status" in new:
                result["status"] = new["status"]
            else:
                result.pop("status", None)
        else:
            result = new
            for field in (*_SERVER_OWNED_METADATA, "name", "namespace"):
                if field in old_meta:
                    meta[field] = old_meta[field]
                else:
                    meta.pop(field, None)
            result["apiVersion"] = old.get("apiVersion", res.api_version)
            result["kind"] = res.kind
            if res.has_status:
                if "status" in old:
                    result["status"] = old["status"]
                else:
                    result.pop("status", None)
            if old_meta.get("deletionTimestamp"):
                added = set(meta.get("finalizers") or []) - set(old_meta.get("finalizers") or [])
                if added:
                    raise ApiError(
                        422,
                        "Invalid",
                        f'{res.kind} "{name}" is invalid: metadata.finalizers: Forbidden: '
                        "no new finalizers can be added if the object is being deleted",
                    )
        if _spec_part(res, result) != _spec_part(res, old):
            result["metadata"]["generation"] = int(old_meta.get("generation", 1)) + 1
        result = self._admit(res, result, self.present(res, old), subresource)
        if res.storage_key == CRD_KEY:
            result["status"] = crd_status(result)
        result["metadata"]["resourceVersion"] = old_meta["resourceVersion"]
        if result == old:
            return self.present(res, old)  # a no-op: no new revision, no event (as a real server)
        if dry_run:
            return self.present(res, result)
        self._objects[res.storage_key][self._key(res, namespace, name)] = result
        released = result["metadata"].get("deletionTimestamp") and not result["metadata"].get("finalizers")
        if released and (res.storage_key != NAMESPACES_KEY or not self._namespace_has_content(name)):
            # As the real registry: the update that releases the last finalizer is the deletion (one event).
            return self.present(res, self._remove(res, namespace, name))
        result["metadata"]["resourceVersion"] = self._next_revision()
        self._emit("MODIFIED", res, result, old)
        if res.storage_key == CRD_KEY:
            self._register_crd(result)
        return self.present(res, result)

    def _remove(self, res: ResourceInfo, namespace: str | None, name: str) -> dict[str, Any]:
        key = self._key(res, namespace, name)
        old = self._objects[res.storage_key].pop(key)
        obj = copy.deepcopy(old)
        obj["metadata"]["resourceVersion"] = self._next_revision()
        self._emit("DELETED", res, obj, old)
        if res.storage_key == CRD_KEY:
            self._purge_crd(old)
        if res.namespaced:
            self._maybe_finish_namespace(key[0])
        return obj

    def _purge_crd(self, crd: dict[str, Any]) -> None:
        """A deleted CRD stops serving and takes its objects with it (finalizers not awaited: simplified)."""
        crd_name = crd["metadata"]["name"]
        infos = [res for res in self._resources.values() if res.crd_name == crd_name]
        if infos:
            res = infos[0]
            for key in list(self._objects[res.storage_key]):
                self._remove(res, key[0] or None, key[1])
        self._unregister_crd(crd_name)

    def _namespace_has_content(self, namespace: str) -> bool:
        return any(
            key[0] == namespace
            for storage_key, objects in self._objects.items()
            if storage_key != NAMESPACES_KEY
            for key in objects
        )

    def _empty_namespace(self, namespace: str) -> None:
        seen: set[tuple[str, str]] = set()
        for res in list(self._resources.values()):
            if not res.namespaced or res.storage_key in seen:
                continue
            seen.add(res.storage_key)
            for key in [key for key in self._objects[res.storage_key] if key[0] == namespace]:
                if key in self._objects[res.storage_key]:
                    self.delete(res, namespace, key[1])
        self._maybe_finish_namespace(namespace)

    def _maybe_finish_namespace(self, namespace: str) -> None:
        ns = self._objects[NAMESPACES_KEY].get(("", namespace))
        if ns is None or not ns["metadata"].get("deletionTimestamp") or ns["metadata"].get("finalizers"):
            return
        if not self._namespace_has_content(namespace):
            namespaces = self.resource("", "v1", "namespaces")
            assert namespaces is not None
            self._remove(namespaces, None, namespace)


def _parse_selectors(
    label_selector: str | None, field_selector: str | None
) -> tuple[tuple[selectors.Requirement, ...], tuple[selectors.Requirement, ...]]:
    try:
        return selectors.parse_label_selector(label_selector), selectors.parse_field_selector(field_selector)
    except selectors.SelectorError as exc:
        raise errors.bad_request(str(exc)) from None
