"""The emulated Kubernetes API server over real HTTP: a kmock handler that serves the `Store`.

kmock (the Kopf ecosystem's HTTP mock) provides the HTTP server, the request parsing and its DSL for any extra
endpoints a test declares (`server.kmock['get /custom'] << {...}`); resource requests and discovery are served
here, because their semantics (resourceVersions, watches, the status subresource) differ from kmock's.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import traceback
from pathlib import Path
from typing import Any

import aiohttp.web
import attrs
import kmock
import yaml

from obstop.testing.kube import errors
from obstop.testing.kube.calls import ApiCall, CallLog, Faults
from obstop.testing.kube.errors import ApiError
from obstop.testing.kube.resources import ResourceInfo
from obstop.testing.kube.store import INITIAL_EVENTS_END, AdmissionFactory, Store, Watcher, default_admission

logger = logging.getLogger(__name__)

PATCH_TYPES = {
    "application/json-patch+json": "json",
    "application/merge-patch+json": "merge",
    "application/strategic-merge-patch+json": "strategic",
    "application/apply-patch+yaml": "apply",
}
SERVER_VERSION = {
    "major": "1",
    "minor": "33",
    "gitVersion": "v1.33.0-obstop-emulator",
    "gitCommit": "0000000000000000000000000000000000000000",
    "gitTreeState": "clean",
    "buildDate": "2025-01-01T00:00:00Z",
    "goVersion": "go1.24.0",
    "compiler": "gc",
    "platform": "linux/amd64",
}
# How often an idle watch checks that its client is still there.
_IDLE_CHECK_SECONDS = 1.0


@dataclasses.dataclass(frozen=True)
class ApiPath:
    """A resource URL, parsed: `/apis/{group}/{version}[/namespaces/{ns}]/{plural}[/{name}[/{subresource}]]`."""

    group: str
    version: str
    plural: str | None = None
    namespace: str | None = None
    name: str | None = None
    subresource: str | None = None
    legacy_watch: bool = False


def parse_api_path(path: str) -> ApiPath | None:
    segments = [segment for segment in path.split("/") if segment]
    if len(segments) >= 2 and segments[0] == "api":
        group, version, rest = "", segments[1], segments[2:]
    elif len(segments) >= 3 and segments[0] == "apis":
        group, version, rest = segments[1], segments[2], segments[3:]
    else:
        return None
    legacy_watch = bool(rest) and rest[0] == "watch"
    if legacy_watch:
        rest = rest[1:]
    namespace: str | None = None
    if len(rest) >= 3 and rest[0] == "namespaces" and rest[2] not in ("status", "finalize"):
        namespace, rest = rest[1], rest[2:]
    if len(rest) > 3:
        return None
    plural, name, subresource = (*rest, None, None, None)[:3]
    return ApiPath(group, version, plural, namespace, name, subresource, legacy_watch)


def _verb(method: str, path: ApiPath, watch: bool) -> str:
    if method == "GET":
        return "watch" if watch else "get" if path.name else "list"
    if method == "DELETE":
        return "delete" if path.name else "deletecollection"
    return {"POST": "create", "PUT": "update", "PATCH": "patch"}.get(method, method.lower())


def _json_response(body: Any, status: int = 200) -> aiohttp.web.Response:
    return aiohttp.web.Response(
        body=json.dumps(body).encode(), status=status, content_type="application/json", charset=None
    )


def _status_response(error: ApiError) -> aiohttp.web.Response:
    return _json_response(error.to_status(), error.code)


@attrs.define(kw_only=True)
class EmulatorHandler(kmock.KubernetesScaffold):
    """The kmock handler: resource requests and discovery from the store, anything else through kmock's DSL."""

    store: Store = attrs.field(factory=Store)
    calls: CallLog = attrs.field(factory=CallLog)
    faults: Faults = attrs.field(default=None)

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        if self.faults is None:
            self.faults = Faults(self.store)

    async def _render_error(self, exc: Exception) -> aiohttp.web.StreamResponse:
        if isinstance(exc, ApiError):
            return _status_response(exc)
        if isinstance(exc, kmock.KubernetesError):
            return _status_response(ApiError(exc.status, exc.reason or "", exc.message or ""))
        logger.error("emulated API server failed:\n%s", "".join(traceback.format_exception(exc)))
        return _status_response(ApiError(500, "InternalError", f"internal error: {type(exc).__name__}"))

    async def __call__(self, raw_request: aiohttp.web.BaseRequest) -> aiohttp.web.StreamResponse:
        """Serve discovery and resources here; any other path goes to kmock (its DSL, then 404)."""
        try:
            discovery = self._discovery(raw_request)
            if discovery is not None:
                return _json_response(discovery)
            path = parse_api_path(raw_request.path)
            if path is None or path.plural is None:
                return await super().__call__(raw_request)
            return await self._serve_resource(raw_request, path)
        except ApiError as exc:
            return _status_response(exc)

    # Discovery.

    def _discovery(self, raw: aiohttp.web.BaseRequest) -> dict[str, Any] | None:
        path = raw.path.rstrip("/") or "/"
        served = self.store.served()
        groups: dict[str, list[str]] = {}
        for res in served:
            if res.group and res.version not in groups.setdefault(res.group, []):
                groups[res.group].append(res.version)
        if path == "/version":
            return dict(SERVER_VERSION)
        if path == "/api":
            address = f"{raw.host}"
            return {
                "kind": "APIVersions",
                "versions": ["v1"],
                "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": address}],
            }
        if path == "/apis":
            return {
                "kind": "APIGroupList",
                "apiVersion": "v1",
                "groups": [_api_group(group, versions) for group, versions in sorted(groups.items())],
            }
        if path == "/":
            paths = ["/api", "/api/v1", "/apis", "/version"]
            paths += [
                f"/apis/{group}/{version}" for group, versions in groups.items() for version in versions
            ]
            return {"paths": sorted(paths)}
        segments = path.strip("/").split("/")
        if segments[0] == "apis" and len(segments) == 2:
            if segments[1] not in groups:
                raise errors.endpoint_not_found(path)
            return {"kind": "APIGroup", "apiVersion": "v1", **_api_group(segments[1], groups[segments[1]])}
        version_path = (
            ("", segments[1])
            if segments[0] == "api" and len(segments) == 2
            else (segments[1], segments[2])
            if segments[0] == "apis" and len(segments) == 3
            else None
        )
        if version_path is None:
            return None
        group, version = version_path
        resources = [res for res in served if (res.group, res.version) == (group, version)]
        if not resources:
            raise errors.endpoint_not_found(path)
        return {
            "kind": "APIResourceList",
            "apiVersion": "v1",
            "groupVersion": f"{group}/{version}" if group else version,
            "resources": [entry for res in resources for entry in res.discovery_entries()],
        }

    # Resources.

    async def _serve_resource(
        self, raw: aiohttp.web.BaseRequest, path: ApiPath
    ) -> aiohttp.web.StreamResponse:
        query = raw.query
        watch = path.legacy_watch or query.get("watch") in ("true", "1")
        verb = _verb(raw.method, path, watch)
        user_agent = raw.headers.get("User-Agent", "")

        def record(code: int) -> None:
            call = ApiCall(
                verb, path.group, path.version, str(path.plural), path.subresource, path.namespace, path.name,
                user_agent, code,
            )  # fmt: skip
            self.calls.append(call)

        res = self.store.resource(path.group, path.version, str(path.plural))
        if res is None:
            record(404)
            raise errors.endpoint_not_found(raw.path)
        probe = ApiCall(
            verb,
            path.group,
            path.version,
            res.plural,
            path.subresource,
            path.namespace,
            path.name,
            user_agent,
            0,
        )
        fault = self.faults.take(probe)
        if fault is not None:
            record(fault.status)
            if verb == "watch" and fault.status == 410:
                return await self._watch_error(raw, fault.status_body(probe))
            return _json_response(fault.status_body(probe), fault.status)
        if watch:
            try:
                watcher = self._open_watch(res, path, query)
            except ApiError as exc:
                if exc.code != 410:
                    record(exc.code)
                    raise
                record(200)
                return await self._watch_error(raw, exc.to_status())
            record(200)
            return await self._stream_watch(raw, res, watcher, query)
        try:
            response = await self._serve_request(raw, res, path, verb)
        except ApiError as exc:
            record(exc.code)
            raise
        record(response.status)
        return response

    async def _serve_request(
        self, raw: aiohttp.web.BaseRequest, res: ResourceInfo, path: ApiPath, verb: str
    ) -> aiohttp.web.StreamResponse:
        query = raw.query
        dry_run = bool(query.getall("dryRun", []))
        namespace = path.namespace if res.namespaced else None
        if path.subresource and verb not in ("get", "update", "patch"):
            raise ApiError(
                405, "MethodNotAllowed", "the server does not allow this method on the requested resource"
            )
        if path.subresource and path.subresource not in res.subresources:
            raise errors.endpoint_not_found(raw.path)
        store = self.store
        if verb == "get":
            return _json_response(store.get(res, namespace, str(path.name)))
        if verb == "list":
            listed = store.list(
                res,
                namespace,
                label_selector=query.get("labelSelector"),
                field_selector=query.get("fieldSelector"),
                limit=_int_param(query.get("limit")),
                continue_token=query.get("continue"),
            )
            return _json_response(listed)
        body = await _read_body(raw)
        if verb == "create":
            if path.name is not None:
                raise ApiError(
                    405, "MethodNotAllowed", "the server does not allow this method on the requested resource"
                )
            return _json_response(store.create(res, namespace, body, dry_run=dry_run), 201)
        name = str(path.name)
        if verb == "update":
            return _json_response(
                store.replace(res, namespace, name, body, subresource=path.subresource, dry_run=dry_run)
            )
        if verb == "patch":
            content_type = raw.headers.get("Content-Type", "").split(";")[0].strip()
            patch_type = PATCH_TYPES.get(content_type, "")
            updated = store.patch(
                res, namespace, name, patch_type, body, subresource=path.subresource, dry_run=dry_run
            )
            return _json_response(updated)
        if verb == "delete":
            preconditions = body.get("preconditions") if isinstance(body, dict) else None
            return _json_response(
                store.delete(res, namespace, name, preconditions=preconditions, dry_run=dry_run)
            )
        if verb == "deletecollection":
            listed = store.delete_collection(
                res,
                namespace,
                label_selector=query.get("labelSelector"),
                field_selector=query.get("fieldSelector"),
                dry_run=dry_run,
            )
            return _json_response(listed)
        raise ApiError(
            405, "MethodNotAllowed", "the server does not allow this method on the requested resource"
        )

    # Watching.

    def _open_watch(self, res: ResourceInfo, path: ApiPath, query: Any) -> Watcher:
        field_selector = query.get("fieldSelector") or ""
        if path.name:
            field_selector = ",".join(filter(None, [field_selector, f"metadata.name={path.name}"]))
        send_initial = query.get("sendInitialEvents") == "true"
        watcher = self.store.watch(
            res,
            path.namespace if res.namespaced else None,
            label_selector=query.get("labelSelector"),
            field_selector=field_selector,
            since=query.get("resourceVersion"),
            send_initial_events=send_initial,
        )
        if send_initial:
            watcher.queue.put_nowait(
                ("BOOKMARK", _bookmark(res, self.store.revision, initial_events_end=True))
            )
        return watcher

    async def _watch_error(
        self, raw: aiohttp.web.BaseRequest, status: dict[str, Any]
    ) -> aiohttp.web.StreamResponse:
        """Errors of a started watch (410 Gone) come as an ERROR event in a 200 stream, as from a real server."""
        response = aiohttp.web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
        await response.prepare(raw)
        await response.write(json.dumps({"type": "ERROR", "object": status}).encode() + b"\n")
        await response.write_eof()
        return response

    async def _stream_watch(
        self, raw: aiohttp.web.BaseRequest, res: ResourceInfo, watcher: Watcher, query: Any
    ) -> aiohttp.web.StreamResponse:
        response = aiohttp.web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
        response.enable_chunked_encoding()
        loop = asyncio.get_running_loop()
        timeout = _int_param(query.get("timeoutSeconds"))
        deadline = loop.time() + timeout if timeout else None
        try:
            await response.prepare(raw)
            while True:
                wait = (
                    _IDLE_CHECK_SECONDS
                    if deadline is None
                    else min(_IDLE_CHECK_SECONDS, deadline - loop.time())
                )
                if wait <= 0:
                    if query.get("allowWatchBookmarks") == "true":
                        await _write_event(response, "BOOKMARK", _bookmark(res, self.store.revision))
                    break
                try:
                    item = await asyncio.wait_for(watcher.queue.get(), wait)
                except TimeoutError:
                    if raw.transport is None or raw.transport.is_closing():
                        break
                    continue
                if item is None:
                    break
                event_type, obj = item
                await _write_event(
                    response, event_type, obj if event_type == "BOOKMARK" else self.store.present(res, obj)
                )
            await response.write_eof()
        except (ConnectionResetError, aiohttp.ClientConnectionResetError):
            pass  # the client went away: nothing to tell it
        finally:
            self.store.close_watch(watcher)
        return response


async def _write_event(response: aiohttp.web.StreamResponse, event_type: str, obj: dict[str, Any]) -> None:
    await response.write(json.dumps({"type": event_type, "object": obj}).encode() + b"\n")


def _bookmark(res: ResourceInfo, revision: int, *, initial_events_end: bool = False) -> dict[str, Any]:
    metadata: dict[str, Any] = {"resourceVersion": str(revision)}
    if initial_events_end:
        metadata["annotations"] = {INITIAL_EVENTS_END: "true"}
    return {"kind": res.kind, "apiVersion": res.api_version, "metadata": metadata}


def _api_group(group: str, versions: list[str]) -> dict[str, Any]:
    entries = [{"groupVersion": f"{group}/{version}", "version": version} for version in versions]
    return {"name": group, "versions": entries, "preferredVersion": entries[0]}


def _int_param(value: str | None) -> int | None:
    if value in (None, ""):
        return None
    try:
        return int(str(value))
    except ValueError:
        raise errors.bad_request(f"invalid integer parameter: {value!r}") from None


async def _read_body(raw: aiohttp.web.BaseRequest) -> Any:
    data = await raw.read()
    if not data:
        return None
    if "protobuf" in raw.headers.get("Content-Type", ""):
        # kubectl's imperative generators (`kubectl create secret ...`) send protobuf; only JSON is served.
        raise ApiError(
            415, "UnsupportedMediaType", "the emulated API server accepts JSON bodies only, not protobuf"
        )
    try:
        if raw.headers.get("Content-Type", "").split(";")[0].strip().endswith("yaml"):
            return yaml.safe_load(data)
        return json.loads(data)
    except (ValueError, yaml.YAMLError):
        raise errors.bad_request("the request body is not valid JSON") from None


class EmulatedApiServer:
    """An in-memory Kubernetes API server on loopback, for Kopf, the `kubernetes` client and kubectl.

    Use in one event loop: `await server.start()` … `await server.stop()` (or `async with`).
    """

    def __init__(
        self, *, history_limit: int = 10_000, admission: AdmissionFactory = default_admission
    ) -> None:
        self.store = Store(history_limit=history_limit, admission=admission)
        self.kmock = EmulatorHandler(store=self.store)
        self._server: kmock.Server | None = None

    @property
    def calls(self) -> CallLog:
        return self.kmock.calls

    @property
    def faults(self) -> Faults:
        return self.kmock.faults

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("the emulated API server is not started")
        return str(self._server.url).rstrip("/")

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        if self._server is not None:
            raise RuntimeError("the emulated API server is already started")
        await self.kmock.__aenter__()
        server = kmock.Server(self.kmock, host=host, port=port or None, user_agent="")
        try:
            await server.__aenter__()
        except BaseException:
            await self.kmock.__aexit__(None, None, None)
            raise
        self._server = server
        return self.url

    async def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        self.store.cut_watches()
        await asyncio.sleep(0)  # let the watch handlers see the cut and end their streams
        try:
            await server.__aexit__(None, None, None)
        finally:
            await self.kmock.__aexit__(None, None, None)

    async def __aenter__(self) -> EmulatedApiServer:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    def write_kubeconfig(self, path: str | Path, *, namespace: str = "default") -> Path:
        return write_kubeconfig(path, self.url, namespace=namespace)

    def apply(self, manifest: dict[str, Any]) -> dict[str, Any]:
        """Create an object straight in the store (no HTTP, not recorded), e.g. a CRD before a test starts."""
        res = self.store.resource_for(manifest.get("apiVersion", ""), manifest.get("kind", ""))
        namespace = manifest.get("metadata", {}).get("namespace") or ("default" if res.namespaced else None)
        return self.store.create(res, namespace, manifest)


def write_kubeconfig(path: str | Path, url: str, *, namespace: str = "default") -> Path:
    """A kubeconfig for plain HTTP with a token user (the emulator accepts any token)."""
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "obstop-emulator", "cluster": {"server": url}}],
        "users": [{"name": "obstop-emulator", "user": {"token": "emulator-accepts-any-token"}}],
        "contexts": [
            {
                "name": "obstop-emulator",
                "context": {"cluster": "obstop-emulator", "user": "obstop-emulator", "namespace": namespace},
            }
        ],
        "current-context": "obstop-emulator",
        "preferences": {},
    }
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(yaml.safe_dump(config, sort_keys=False))
    return target
