"""Reading the password (and CA bundle) Secret named by a request, in the request's namespace only.

The kubernetes client is synchronous; calls run in a worker thread. A Secret is read whole (its annotations
decide where its values may go: agent_policy), and a value is decoded only once that is settled, as SecretStr so
that it cannot leak through a repr or a log line.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import SecretStr

from obstop import __version__


def kubernetes_client() -> Any:
    """The controller's own API client (besides Kopf's): in-cluster service account, else $KUBECONFIG."""
    from kubernetes import client, config

    try:
        config.load_incluster_config()  # type: ignore[no-untyped-call]
    except config.ConfigException:
        config.load_kube_config()  # type: ignore[no-untyped-call]
    api_client = client.ApiClient()
    # Our own calls are then told apart from Kopf's ("kopf/...") in API server audit logs.
    api_client.user_agent = f"obstop/{__version__}"
    return api_client


# With etcd down, kube-apiserver accepts a read and answers nothing for a minute or more: give up sooner, and
# retry with back-off like any other transient fault.
API_TIMEOUT_SECONDS = 15.0


class SecretUnavailable(Exception):
    """The Secret or its key cannot be read now; may resolve once someone creates it (a transient fault)."""


@dataclass(frozen=True)
class SecretData:
    """A Secret as read: where it is, its annotations, and its (still encoded) values."""

    namespace: str
    name: str
    annotations: Mapping[str, str]
    data: Mapping[str, str] = field(repr=False)

    @property
    def ref(self) -> str:
        return f"{self.namespace}/{self.name}"

    def value(self, key: str) -> SecretStr:
        if key not in self.data:
            raise SecretUnavailable(f"Secret {self.ref} has no key {key!r}")
        try:
            return SecretStr(base64.b64decode(self.data[key], validate=True).decode("utf-8"))
        except (binascii.Error, UnicodeDecodeError):
            raise SecretUnavailable(f"Secret {self.ref} key {key!r} is not UTF-8 text") from None


class SecretReader:
    def __init__(self, api: Any) -> None:
        self._api = api  # kubernetes.client.CoreV1Api

    @classmethod
    def from_client(cls, api_client: Any) -> SecretReader:
        from kubernetes import client

        return cls(client.CoreV1Api(api_client))

    async def read(self, namespace: str, name: str) -> SecretData:
        from kubernetes.client.exceptions import ApiException

        try:
            secret = await asyncio.to_thread(self._read_raw, namespace, name)
        except ApiException as exc:
            if exc.status == 404:
                raise SecretUnavailable(f"Secret {namespace}/{name} not found") from None
            if exc.status == 403:
                raise SecretUnavailable(f"not allowed to read Secret {namespace}/{name} (RBAC)") from None
            raise SecretUnavailable(f"cannot read Secret {namespace}/{name}: HTTP {exc.status}") from None
        except Exception as exc:  # connection errors of the API client: the API server may be restarting
            raise SecretUnavailable(f"cannot read Secret {namespace}/{name}: {type(exc).__name__}") from None
        metadata = secret.get("metadata") or {}
        return SecretData(
            namespace, name, dict(metadata.get("annotations") or {}), dict(secret.get("data") or {})
        )

    def _read_raw(self, namespace: str, name: str) -> dict[str, Any]:
        """The Secret as the API server sent it (JSON), without the client's model layer: it is read on every
        step, and building a V1Secret was a share of the controller's CPU for two fields read."""
        response = self._api.read_namespaced_secret(
            name, namespace, _request_timeout=API_TIMEOUT_SECONDS, _preload_content=False
        )
        try:
            body = json.loads(response.data)
        finally:
            response.release_conn()
        if not isinstance(body, dict):
            raise ValueError("the API server's answer is not an object")
        return body
